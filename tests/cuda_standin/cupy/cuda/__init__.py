"""cupy.cuda of the stand-in: devices, the runtime, streams, memory pools, NCCL (absent)."""

from __future__ import annotations

from cupy import _state
from cupy.cuda import compiler, driver, memory, nccl, runtime  # noqa: F401
from cupy.cuda.memory import MemoryPool, OutOfMemoryError  # noqa: F401
from cupy.cuda.runtime import CUDARuntimeError  # noqa: F401


def is_available() -> bool:
    return runtime.getDeviceCount() > 0


def get_device_id() -> int:
    return _state.get_device_id()


class Device:
    """cupy/cuda/device.pyx Device: `id`; use() makes it current for this thread (runtime.setDevice);
    `with Device(i):` switches and restores through a per-thread stack (__enter__/__exit__)."""

    def __init__(self, device=None):
        self.id = _state.get_device_id() if device is None else int(device)

    def __int__(self):
        return self.id

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self):
        return hash(self.id)

    def __repr__(self):
        return f"<CUDA Device {self.id}>"

    def use(self):
        runtime.setDevice(self.id)
        return self

    def __enter__(self):
        _state.device_stack().append(_state.get_device_id())
        runtime.setDevice(self.id)
        return self

    def __exit__(self, *exc):
        runtime.setDevice(_state.device_stack().pop())

    def synchronize(self):
        """cudaDeviceSynchronize on this device: all its streams' queued work runs."""
        _state.check_device_id(self.id)
        _state.counters.synchronizes += 1
        _state.synchronize_device(self.id)

    @property
    def compute_capability(self) -> str:
        return "90"


class Stream:
    """cupy/cuda/stream.pyx Stream: launches queued in order on one device and run later (see
    cupy._state, "asynchronous streams"). The current stream is per thread and per device
    (stream.pyx _ThreadLocal.current_stream[device_id]); Stream.null, the legacy default stream, is
    every device's default (device_id -1: the current device)."""

    null: Stream

    def __init__(self, null=False, non_blocking=False, ptds=False, priority=None):
        # stream.pyx Stream.__init__: the null stream is ptr 0, the per-thread default stream
        # runtime.streamPerThread (2, one stream per host thread); both device_id -1 (the current device)
        self.device_id = -1 if null or ptds else _state.get_device_id()
        self.non_blocking = bool(non_blocking)
        self.ptr = 0 if null else 2 if ptds else id(self)

    def _device(self) -> int:
        return _state.get_device_id() if self.device_id == -1 else self.device_id

    def _queue(self):
        return _state.queue(self._device(), self)

    def synchronize(self):
        _state.counters.synchronizes += 1
        self._queue().synchronize()

    def use(self):
        _state.current_streams()[self._device()] = self
        return self

    def __enter__(self):
        # stream.pyx _ThreadLocal.push_stream: a per-thread stack of (device, the stream it replaced)
        device = self._device()
        _state.stream_stack().append((device, get_current_stream(device)))
        return self.use()

    def __exit__(self, *exc):
        device, previous = _state.stream_stack().pop()
        _state.current_streams()[device] = previous

    def record(self, event=None):
        event = event or Event()
        event.record(self)
        return event

    def wait_event(self, event):
        """cudaStreamWaitEvent: this stream's later work waits for the work recorded before the event."""
        if event._recorded is not None:
            self._queue().enqueue(None, waits=[event._recorded])

    @property
    def done(self) -> bool:
        q = self._queue()
        return q.done == q.issued


class Event:
    """cupy/cuda/stream.pyx Event: a position in a stream's queue."""

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        self._recorded = None

    def record(self, stream=None):
        stream = stream or get_current_stream()
        q = stream._queue()
        self._recorded = (q, q.issued)

    def synchronize(self):
        _state.counters.synchronizes += 1
        if self._recorded is not None:
            q, position = self._recorded
            q.run_until(position)

    @property
    def done(self) -> bool:
        return self._recorded is None or self._recorded[0].done >= self._recorded[1]


Stream.null = Stream(null=True)
Stream.ptds = Stream(ptds=True)


def get_current_stream(device_id=None):
    device = _state.get_device_id() if device_id is None else device_id
    return _state.current_streams().get(device, Stream.null)
