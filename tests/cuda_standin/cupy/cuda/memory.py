"""cupy.cuda.memory of the stand-in: MemoryPool dispatches to the current device's pool, as
cupy/cuda/memory.pyx MemoryPool.used_bytes/total_bytes/free_all_blocks do (lines 1637-1690)."""

from __future__ import annotations

from cupy import _state


class OutOfMemoryError(MemoryError):
    pass


class MemoryPool:
    def _pool(self):
        return _state.pools[_state.get_device_id()]

    def used_bytes(self) -> int:
        return self._pool().used_bytes()

    def free_bytes(self) -> int:
        return self._pool().free_bytes()

    def total_bytes(self) -> int:
        return self._pool().total_bytes()

    def free_all_blocks(self, stream=None) -> None:
        self._pool().free_all_blocks()

    def set_limit(self, size=None, fraction=None) -> None:
        return None


class PinnedMemoryPool:
    def free_all_blocks(self) -> None:
        return None

    def n_free_blocks(self) -> int:
        return 0


_default_pool = MemoryPool()
_default_pinned_pool = PinnedMemoryPool()
