"""cupy.cuda.runtime of the stand-in (cupy_backends/cuda/api/runtime.pyx)."""

from __future__ import annotations

from cupy import _state


class CUDARuntimeError(RuntimeError):
    pass


def getDeviceCount() -> int:
    return _state.DEVICE_COUNT


def getDevice() -> int:
    return _state.get_device_id()


def setDevice(device: int) -> None:
    _state.set_device_id(int(device))


def deviceSynchronize() -> None:
    _state.counters.synchronizes += 1
    _state.synchronize_device(_state.get_device_id())


def deviceCanAccessPeer(device: int, peer: int) -> int:
    """1 where the virtual machine's devices have peer access (cupy._state.peer_access), else 0."""
    _state.check_device_id(device)
    _state.check_device_id(peer)
    return int(device == peer or _state.peer_access)


def memGetInfo() -> tuple[int, int]:
    """(free, total) bytes of the current device: total minus what its memory pool holds."""
    pool = _state.pools[_state.get_device_id()]
    return _state.DEVICE_MEMORY - pool.total_bytes(), _state.DEVICE_MEMORY


def getDeviceProperties(device: int) -> dict:
    _state.check_device_id(device)
    return {"name": b"gpunn CuPy stand-in", "totalGlobalMem": _state.DEVICE_MEMORY, "major": 9, "minor": 0}


def runtimeGetVersion() -> int:
    return 13000


def driverGetVersion() -> int:
    return 13000
