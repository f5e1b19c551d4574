"""Builders of IDX files for the tests: good ones and every kind of broken one."""

from __future__ import annotations

import gzip
import struct

import numpy as np


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08, dims=None, zero_bytes: bytes = b"\x00\x00") -> bytes:
    dims = array.shape if dims is None else dims
    header = zero_bytes + bytes([dtype_code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    return header + array.astype(np.uint8).tobytes()


def write(path, data: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def images(n=3, rows=4, cols=5, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, rows, cols), dtype=np.uint8)


def labels(n=3, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 10, n, dtype=np.uint8)
