"""The IDX format (LeCun's MNIST files), read from .gz or raw, with every malformation a DataError.

Header: two zero bytes, a dtype code (0x08 = uint8), the number of dims, then each dim as big-endian
uint32. The payload must hold exactly prod(dims) bytes. Memory is only ever allocated for a payload size
the file can back: the raw file's size, or the uncompressed size in the gzip trailer (capped at deflate's 1032:1 ratio).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from gpunn.errors import DataError

IMAGES_MAGIC = 0x00000803
LABELS_MAGIC = 0x00000801
UINT8_CODE = 0x08
MAX_DEFLATE_RATIO = 1032
_KIND_MAGIC = {"images": IMAGES_MAGIC, "labels": LABELS_MAGIC}


def _fail(path: Path, what: str) -> DataError:
    return DataError(f"{path}: {what}")


def _gzip_uncompressed_size(path: Path, raw_size: int) -> int:
    """The ISIZE field of the gzip trailer: the uncompressed length modulo 2**32."""
    with open(path, "rb") as fh:
        fh.seek(raw_size - 4)
        return struct.unpack("<I", fh.read(4))[0]


def _open(path: Path):
    """(stream, payload bytes available after the stream's start or None when unknown)."""
    if not path.exists():
        raise _fail(path, "file not found")
    if path.is_dir():
        raise _fail(path, "is a directory, not an IDX file")
    size = path.stat().st_size
    if size == 0:
        raise _fail(path, "file is empty")
    with open(path, "rb") as fh:
        is_gzip = fh.read(2) == b"\x1f\x8b"
    if not is_gzip:
        return open(path, "rb"), size
    if size < 18:
        raise _fail(path, "corrupt gzip: too short to hold a gzip header and trailer")
    # deflate inflates at most 1032-fold, so a trailer claiming more than that is a lie
    return gzip.open(path, "rb"), min(_gzip_uncompressed_size(path, size), MAX_DEFLATE_RATIO * size)


def _read_exact(stream, path: Path, n: int, what: str) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise _fail(path, f"truncated: {what} needs {n} bytes, found {len(data)}")
    return data


def _read_into(stream, view: memoryview, chunk: int = 1 << 20) -> int:
    """Fill `view` in 1 MiB steps: GzipFile.readinto of a large buffer builds a same-size temporary."""
    filled = 0
    while filled < len(view):
        got = stream.readinto(view[filled : filled + chunk])
        if not got:
            break
        filled += got
    return filled


def read_idx(path: str | os.PathLike, kind: str | None = None) -> np.ndarray:
    """Read an IDX file of uint8 into a NumPy array; `kind` ('images'/'labels') also checks the magic."""
    path = Path(path)
    try:
        stream, available = _open(path)
        with stream:
            return _parse(stream, available, path, kind)
    except DataError:
        raise
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, struct.error) as exc:
        raise _fail(path, f"unreadable or corrupt ({type(exc).__name__}: {exc})") from None


def _parse(stream, available: int, path: Path, kind: str | None) -> np.ndarray:
    magic = _read_exact(stream, path, 4, "the header")
    if magic[:2] != b"\x00\x00":
        raise _fail(path, f"bad magic number 0x{magic.hex()}: not an IDX file")
    if magic[2] != UINT8_CODE:
        raise _fail(path, f"dtype code 0x{magic[2]:02x} is not 0x08 (uint8)")
    ndim = magic[3]
    value = int.from_bytes(magic, "big")
    if kind is not None and value != _KIND_MAGIC[kind]:
        raise _fail(path, f"magic 0x{value:08x} is not 0x{_KIND_MAGIC[kind]:08x} ({kind})")
    if ndim == 0:
        raise _fail(path, "header declares zero dimensions")
    dims = struct.unpack(f">{ndim}I", _read_exact(stream, path, 4 * ndim, "the dimension list"))
    payload = int(np.prod(dims, dtype=object))
    total = 4 + 4 * ndim + payload
    if total >= 2**32:
        raise _fail(path, f"dims {dims} declare {payload} bytes: larger than any IDX file can be")
    if total > available:
        raise _fail(path, f"truncated: dims {dims} need {payload} payload bytes, the file holds fewer")
    data = np.empty(payload, dtype=np.uint8)
    got = _read_into(stream, memoryview(data))
    if got != payload:
        raise _fail(path, f"truncated: dims {dims} need {payload} payload bytes, found {got}")
    if stream.read(1):
        raise _fail(path, f"extra bytes after the {payload}-byte payload declared by dims {dims}")
    data = data.reshape(dims)  # the magic already fixed ndim: 3 for images, 1 for labels
    return data
