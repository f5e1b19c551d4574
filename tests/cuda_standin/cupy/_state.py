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
