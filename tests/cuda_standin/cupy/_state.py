"""Process state of the stand-in: virtual devices, the current device of each thread, memory pools and
the counters tests read. CuPy citations are to github.com/cupy/cupy (main, v14 line)."""

from __future__ import annotations

import os
import threading
import weakref

DEVICE_COUNT = int(os.environ.get("GPUNN_STANDIN_DEVICES", "2"))
DEVICE_MEMORY = 16 << 30  # what memGetInfo reports as each virtual device's total

# Whether the virtual devices can reach each other's memory (what runtime.deviceCanAccessPeer answers, and so
# whether CuPy's _check_peer_access refuses an operand of another device or enables peer access with a
# PerformanceWarning). Off by default: GPUs on different PCIe root complexes, or without P2P, have none;
# GPUNN_STANDIN_PEER_ACCESS=1 gives every pair access, as NVLink-connected GPUs have. Tests switch it.
peer_access = os.environ.get("GPUNN_STANDIN_PEER_ACCESS") == "1"

# cupy/_core/core.pyx line 121: `_is_ump_enabled = (int(os.environ.get('CUPY_ENABLE_UMP', '0')) != 0)`, read
# once at import; is_ump_supported also asks cudaDevAttrPageableMemoryAccess, which the virtual devices have.
ump_enabled = int(os.environ.get("CUPY_ENABLE_UMP", "0")) != 0


def ump_wraps(obj, dtype, ndmin: int) -> bool:
    """cupy/_core/core.pyx _try_skip_h2d_copy: with UMP a NumPy array is used in place (no copy) when its
    dtype stays, CuPy supports it, and it is C- or F-contiguous."""
    import numpy as np

    return (
        ump_enabled
        and isinstance(obj, np.ndarray)
        and (dtype is None or np.dtype(dtype) == obj.dtype)
        and obj.dtype.kind in "biuf"
        and (obj.flags.c_contiguous or obj.flags.f_contiguous)
        and ndmin <= obj.ndim
    )


# cupy/cuda/memory.pyx:40 ALLOCATION_UNIT_SIZE = 512 and _round_size (line 1042): every allocation is
# rounded up to a multiple of 512 bytes.
ALLOCATION_UNIT_SIZE = 512


class Counters:
    """What a GPU profile would show: kernel launches, device-to-host reads (each one waits for the
    device: a synchronisation), explicit synchronize() calls, and host-to-device copies."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.launches = 0
        self.d2h_reads = 0
        self.synchronizes = 0
        self.h2d_copies = 0

    @property
    def syncs(self) -> int:
        return self.d2h_reads + self.synchronizes

    def snapshot(self) -> dict:
        return {
            "launches": self.launches,
            "syncs": self.syncs,
            "d2h_reads": self.d2h_reads,
            "h2d_copies": self.h2d_copies,
        }


counters = Counters()

# The CUDA runtime keeps the current device per host thread (cudaSetDevice); a new thread starts on 0.
# cupy/cuda/device.pyx: Device.use() -> runtime.setDevice, Device.__enter__/__exit__ push/pop a
# per-thread stack (_ThreadLocalStack).
_thread = threading.local()


def get_device_id() -> int:
    return getattr(_thread, "device", 0)


def set_device_id(device_id: int) -> None:
    check_device_id(device_id)
    _thread.device = device_id


def check_device_id(device_id: int) -> None:
    if not 0 <= device_id < DEVICE_COUNT:
        from cupy.cuda.runtime import CUDARuntimeError

        raise CUDARuntimeError("cudaErrorInvalidDevice: invalid device ordinal")


def device_stack() -> list:
    if not hasattr(_thread, "stack"):
        _thread.stack = []
    return _thread.stack


def round_size(size: int) -> int:
    return (size + ALLOCATION_UNIT_SIZE - 1) // ALLOCATION_UNIT_SIZE * ALLOCATION_UNIT_SIZE


class SingleDevicePool:
    """cupy/cuda/memory.pyx SingleDeviceMemoryPool: used_bytes() = bytes of live allocations (line 1454),
    total_bytes() = bytes acquired from the device (used + cached free blocks, line 1461); a freed array
    returns its block to the pool, which keeps it until free_all_blocks() (line 1400). A request takes
    the smallest cached block that fits and splits off the rest (the arena's best-fit bins)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._used = 0
        self._total = 0
        self._free: list[int] = []
        # frees staged without the lock, drained under it: a free runs from a GC finalizer, possibly while
        # malloc holds the lock in the same thread (cupy/cuda/memory.pyx _Arena._add_pending_free_atomic and
        # _Arena._append_to_free_list's "lock free" _pending_free list, for the same reason)
        self._pending: list[int] = []

    def _drain(self) -> None:
        while self._pending:
            size = self._pending.pop()
            self._used -= size
            self._free.append(size)

    def malloc(self, nbytes: int) -> int:
        size = round_size(nbytes)
        with self._lock:
            self._drain()
            fits = [b for b in self._free if b >= size]
            if fits:
                block = min(fits)
                self._free.remove(block)
                if block > size:
                    self._free.append(block - size)
            else:
                self._total += size
            self._used += size
        return size

    def release(self, size: int) -> None:
        self._pending.append(size)  # atomic under the GIL; never takes the lock

    def used_bytes(self) -> int:
        with self._lock:
            self._drain()
            return self._used

    def free_bytes(self) -> int:
        with self._lock:
            self._drain()
            return self._total - self._used

    def total_bytes(self) -> int:
        return self._total

    def free_all_blocks(self) -> None:
        with self._lock:
            self._drain()
            self._total -= sum(self._free)
            self._free.clear()


pools = [SingleDevicePool() for _ in range(DEVICE_COUNT)]


class Memory:
    """One device allocation (cupy.cuda.memory.MemoryPointer): its device, its pool block and the host
    buffer that plays the device memory. Views share it; the block returns to the pool when the last
    array using it is gone."""

    _next_ptr = 0x7F0000000000

    def __init__(self, device_id: int, nbytes: int):
        self.device_id = device_id
        self.size = pools[device_id].malloc(nbytes) if nbytes else 0
        Memory._next_ptr += max(self.size, ALLOCATION_UNIT_SIZE)
        self.ptr = Memory._next_ptr
        if self.size:
            weakref.finalize(self, pools[device_id].release, self.size)


# ---- asynchronous streams ------------------------------------------------------------------------------
# A launch (kernel, fill, copy) returns before it runs, as on a GPU: it is queued on the calling thread's
# current stream of the current device and runs later, in stream order, when something waits for it: a
# read-back to the host (ndarray.get), a stream, event or device synchronize, a stream waiting on an event,
# or a full queue (the host blocks once the driver's launch queue is full). Until then its outputs hold what
# they held before (np.empty's garbage, or the last value), so code that reads device memory outside CuPy
# without waiting (a CUDA-aware MPI reading a buffer's pointer) sees stale data, as it would on a GPU.
# Between streams the CUDA rules hold: the legacy default stream (CuPy's Stream.null) waits for all work
# issued before on the device's blocking streams, and a blocking stream's work waits for the default
# stream's work issued before it (CUDA Runtime API, "stream synchronization behavior"); a non-blocking
# stream waits for nothing but the events it is told to wait on (cudaStreamWaitEvent).
MAX_PENDING = 1024  # launches a queue holds before the host blocks (the driver's launch queue depth is
# not documented; about a thousand pending launches is what profiles show)

_queue_lock = threading.RLock()  # one runner at a time: the host's view of "the device"


class Queue:
    """The work of one stream on one device: `issued` launches so far, the first `done` of them run."""

    def __init__(self, device_id: int, blocking: bool, is_default: bool):
        from collections import deque

        self.device_id, self.blocking, self.is_default = device_id, blocking, is_default
        self.pending = deque()
        self.issued = self.done = 0

    def implicit_waits(self) -> list:
        """What a launch issued now on this stream waits for besides its own stream's earlier work."""
        if self.is_default:
            return [(q, q.issued) for q in device_queues(self.device_id) if q is not self and q.blocking]
        if self.blocking:
            default = queue(self.device_id, None)
            return [(default, default.issued)]
        return []

    def enqueue(self, work, waits=()) -> int:
        with _queue_lock:
            self.pending.append((self.implicit_waits() + list(waits), work))
            self.issued += 1
            if len(self.pending) > MAX_PENDING:
                self.run_until(self.done + 1)
            return self.issued

    def run_until(self, position: int) -> None:
        """Run this stream's work up to launch number `position` (and what that work waits for)."""
        with _queue_lock:
            while self.done < position:
                waits, work = self.pending.popleft()
                try:
                    for other, other_position in waits:
                        other.run_until(other_position)
                    if work is not None:
                        work()
                finally:
                    self.done += 1

    def synchronize(self) -> None:
        self.run_until(self.issued)


_queues: dict = {}
PER_THREAD_DEFAULT_STREAM = 2  # cupy_backends/cuda/api/runtime.pxd line 118: streamPerThread = 2


def queue(device_id: int, stream) -> Queue:
    """The queue of `stream` (a stand-in cuda.Stream; None or the null stream: the legacy default stream)."""
    is_default = stream is None or stream.ptr == 0
    per_thread = stream is not None and stream.ptr == PER_THREAD_DEFAULT_STREAM  # a stream per host thread
    key = (device_id, 0 if is_default else ("ptds", threading.get_ident()) if per_thread else id(stream))
    with _queue_lock:
        if key not in _queues:
            _queues[key] = Queue(device_id, is_default or not stream.non_blocking, is_default)
        return _queues[key]


def device_queues(device_id: int) -> list:
    with _queue_lock:
        return [q for (device, _), q in _queues.items() if device == device_id]


def current_streams() -> dict:
    """This thread's current stream per device (cupy/cuda/stream.pyx _ThreadLocal.current_stream)."""
    if not hasattr(_thread, "streams"):
        _thread.streams = {}
    return _thread.streams


def stream_stack() -> list:
    """This thread's `with stream:` blocks, innermost last: (device, the stream each replaced there)."""
    if not hasattr(_thread, "stream_stack"):
        _thread.stream_stack = []
    return _thread.stream_stack


def current_queue(device_id: int | None = None) -> Queue:
    """The calling thread's current stream on `device_id` (default: the current device)."""
    device_id = get_device_id() if device_id is None else device_id
    return queue(device_id, current_streams().get(device_id))


def launch(work) -> None:
    """Queue `work` (a function of no arguments writing device memory) on the current stream."""
    current_queue().enqueue(work)


def wait_for_current_stream(device_id: int | None = None) -> None:
    """What a blocking read-back does: the current stream's work so far (with what it waits for) runs."""
    q = current_queue(device_id)
    q.run_until(q.enqueue(None))


def synchronize_device(device_id: int) -> None:
    """cudaDeviceSynchronize: every stream of the device runs dry."""
    for q in device_queues(device_id):
        q.synchronize()
