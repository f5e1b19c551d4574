"""One parser for device and dtype specs, shared by the API, GPUNN_DEVICE/GPUNN_DTYPE and the CLI flags."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gpunn.errors import InvalidDeviceError

VALID_DEVICES = "cpu, cuda, cuda:N (N = 0, 1, ...), auto, strict"
VALID_DTYPES = ("float32", "float64")
_CUDA_INDEX = re.compile(r"cuda:([0-9]+)")


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed device request: kind is cpu, cuda, auto or strict; index only matters for cuda.

    `index_given` tells `cuda:0` (a pinned GPU) from a bare `cuda`, which a distributed run maps to one
    GPU per local rank; it does not take part in equality.
    """

    kind: str
    index: int = 0
    index_given: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.kind == "cuda" else self.kind


def parse_device(value: object, origin: str = "device") -> DeviceSpec:
    """Parse 'cpu', 'cuda', 'cuda:N', 'auto' or 'strict' (case and surrounding spaces ignored)."""
    if isinstance(value, DeviceSpec):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("cpu", "auto", "strict"):
        return DeviceSpec(text)
    if text == "cuda":
        return DeviceSpec("cuda", 0)
    match = _CUDA_INDEX.fullmatch(text or "")
    if match:
        return DeviceSpec("cuda", int(match.group(1)), index_given=True)
    raise InvalidDeviceError(f"invalid {origin} {value!r}: valid values are {VALID_DEVICES}")


def parse_dtype(value: object, origin: str = "dtype") -> str:
    """Parse 'float32' or 'float64' (case and surrounding spaces ignored)."""
    text = value.strip().lower() if isinstance(value, str) else getattr(value, "name", None)
    if text in VALID_DTYPES:
        return text
    raise InvalidDeviceError(f"invalid {origin} {value!r}: valid values are {', '.join(VALID_DTYPES)}")
