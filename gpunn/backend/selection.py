"""Which device to use: argument > use_device() > GPUNN_DEVICE > cpu, resolved at first use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from gpunn.backend.base import Backend
from gpunn.backend.spec import DeviceSpec, parse_device, parse_dtype

_context_device: ContextVar[DeviceSpec | None] = ContextVar("gpunn_device", default=None)
_backends: dict[tuple[str, int, str], Backend] = {}


@contextmanager
def use_device(device: str | DeviceSpec) -> Iterator[DeviceSpec]:
    """Make `device` the default inside the block; nests, and restores the outer one on any exit."""
    token = _context_device.set(parse_device(device))
    try:
        yield _context_device.get()
    finally:
        _context_device.reset(token)


@dataclass(frozen=True)
class Selection:
    """A resolved backend and a sentence saying how it was chosen."""

    backend: Backend
    requested: DeviceSpec
    source: str
    reason: str

    def describe(self) -> str:
        how = f"from {self.source}"
        if self.requested.kind == "auto":
            how += f"; auto: {self.reason}"
        return f"{self.backend.device} ({how})"


def requested_device(device: str | DeviceSpec | None = None) -> tuple[DeviceSpec, str]:
    """The device asked for and where the request came from, without touching any hardware."""
    if device is not None:
        return parse_device(device), "argument"
    context = _context_device.get()
    if context is not None:
        return context, "use_device()"
    env = os.environ.get("GPUNN_DEVICE")
    if env is not None:
        return parse_device(env, origin="GPUNN_DEVICE"), "GPUNN_DEVICE"
    return DeviceSpec("cpu"), "default"


def requested_dtype(dtype: str | None = None) -> str:
    if dtype is not None:
        return parse_dtype(dtype)
    env = os.environ.get("GPUNN_DTYPE")
    return parse_dtype(env, origin="GPUNN_DTYPE") if env is not None else "float32"


def select(device: str | DeviceSpec | None = None, dtype: str | None = None) -> Selection:
    """Resolve a device request to a backend; cuda that cannot work raises DeviceUnavailableError."""
    from gpunn.backend import cuda_probe

    spec, source = requested_device(device)
    dtype_name = requested_dtype(dtype)
    reason = ""
    resolved = spec
    if spec.kind == "auto":
        usable, why = cuda_probe.cuda_status(0)
        resolved = DeviceSpec("cuda", 0) if usable else DeviceSpec("cpu")
        reason = f"chose cuda:0 ({why})" if usable else f"chose cpu because CUDA is unusable: {why}"
    return Selection(_backend_for(resolved, dtype_name), spec, source, reason)


def get_backend(device: str | DeviceSpec | None = None, dtype: str | None = None) -> Backend:
    """The backend for `device` (see `select` for the precedence); one cached instance per device+dtype."""
    return select(device, dtype).backend


def _backend_for(spec: DeviceSpec, dtype_name: str) -> Backend:
    key = (spec.kind, spec.index, dtype_name)
    if key not in _backends:
        if spec.kind == "cpu":
            from gpunn.backend.numpy_backend import NumpyBackend

            _backends[key] = NumpyBackend(dtype_name)
        elif spec.kind == "strict":
            from gpunn.backend.strict_backend import StrictBackend

            _backends[key] = StrictBackend(dtype_name)
        else:
            from gpunn.backend.cupy_backend import CupyBackend

            _backends[key] = CupyBackend(spec.index, dtype_name)
    return _backends[key]
