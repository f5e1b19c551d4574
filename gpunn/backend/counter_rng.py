"""A counter-based generator: uniform uint32 bits from (key, element index), computed on the device.

Each element's bits are a pure function of its index and a key, using only integer operations of the
Array API (uint32 multiply, xor, shift), so NumPy, array-api-strict and CuPy give the same bits, nothing
is drawn on the host and copied over, and no generator state needs saving: a resumed run recomputes the
same masks from the step number. The mixing is MurmurHash3's 32-bit finaliser (fmix32), applied twice.
"""

from __future__ import annotations

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # 2^32 / golden ratio: spreads consecutive indices before mixing


def fmix32(h):
    """MurmurHash3's finaliser on a uint32 array (or a Python int < 2^32): an avalanche bijection."""
    h = h ^ (h >> 16)
    h = _mul(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def _mul(h, constant: int):
    return (h * constant) & _MASK32 if isinstance(h, int) else h * constant  # uint32 arrays wrap


def stream_key(*words: int) -> int:
    """One 32-bit key from several non-negative integers (seed, stream, step), mixed on the host.

    A Python int: passed to device kernels as a scalar argument, never as an uploaded array.
    """
    key = 0
    for word in words:
        for part in (word & _MASK32, (word >> 32) & _MASK32):
            key = fmix32((key ^ part) * _GOLDEN & _MASK32 ^ 0x5BD1E995)
    return key


def random_bits(backend, count: int, key: int, first: int = 0):
    """`count` uint32 values, uniform over [0, 2^32), for element indices first..first+count-1 under `key`."""
    if first + count > 2**32:
        raise ValueError(f"the counter-based generator indexes at most 2^32 elements, asked for {first + count}")
    uint32 = backend.xp.uint32
    index = backend.astype(backend.arange(count), uint32) + first
    return fmix32(fmix32(index * _GOLDEN + key) ^ fmix32(key ^ 0x68E31DA4))
