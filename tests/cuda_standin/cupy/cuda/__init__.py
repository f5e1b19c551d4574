"""cupy.cuda of the stand-in: devices, the runtime, streams, memory pools, NCCL (absent)."""

from __future__ import annotations

from cupy import _state
from cupy.cuda import compiler, memory, nccl, runtime  # noqa: F401
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
        _state.check_device_id(self.id)
        _state.counters.synchronizes += 1

    @property
    def compute_capability(self) -> str:
        return "90"


class Stream:
    """cupy/cuda/stream.pyx Stream: work queued in order on one device; the stand-in runs each operation
    when it is issued, so a stream only tracks which one is current (per thread) and counts syncs."""

    null: Stream

    def __init__(self, null=False, non_blocking=False, ptr=None):
        self.device_id = _state.get_device_id()
        self.ptr = 0 if null else id(self)

    def synchronize(self):
        _state.counters.synchronizes += 1

    def use(self):
        _state._thread.stream = self
        return self

    def __enter__(self):
        self._previous = get_current_stream()
        return self.use()

    def __exit__(self, *exc):
        self._previous.use()

    def record(self, event=None):
        return Event()

    def wait_event(self, event):
        return None


class Event:
    def synchronize(self):
        _state.counters.synchronizes += 1

    def record(self, stream=None):
        return None


Stream.null = Stream(null=True)


def get_current_stream(device_id=None):
    return getattr(_state._thread, "stream", Stream.null)
