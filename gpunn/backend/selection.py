"""Which device to use: argument > use_device() > GPUNN_DEVICE > cpu, resolved at first use."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from gpunn.backend.base import Backend
from gpunn.backend.spec import DeviceSpec, parse_device, parse_dtype
from gpunn.errors import InvalidDeviceError

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
        if self.reason:
            how += f"; auto: {self.reason}" if self.requested.kind == "auto" else f"; {self.reason}"
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
    spec, source = requested_device(device)
    resolved, reason = _resolve_auto(spec)
    return Selection(_backend_for(resolved, requested_dtype(dtype)), spec, source, reason)


def select_for_local_rank(
    device: str | DeviceSpec | None, dtype: str | None, local_rank: int, local_size: int
) -> Selection:
    """The backend of one rank of a distributed run, which needs a GPU of its own.

    `auto` is resolved first. A bare `cuda` (or an `auto` that chose CUDA) takes local rank modulo the
    visible device count, so a scheduler that shows each rank one GPU gives each rank its own cuda:0. An
    explicit `cuda:N` is kept when this host runs one rank, and refused when several local ranks would
    share it (NCCL cannot put two ranks on one GPU). cpu and strict are unchanged.
    """
    from gpunn.backend import cuda_probe

    spec, source = requested_device(device)
    resolved, reason = _resolve_auto(spec)
    if resolved.kind == "cuda" and resolved.index_given:
        if local_size > 1:
            raise InvalidDeviceError(
                f"device {resolved} (from {source}) would put all {local_size} ranks on this host on one "
                "GPU, which NCCL refuses; ask for `cuda` or `auto` to give each local rank its own GPU "
                "(local rank modulo the visible devices), or run one rank per host"
            )
        reason = f"{resolved} kept as asked (one rank on this host)"
    elif resolved.kind == "cuda":
        visible = cuda_probe.visible_devices()
        resolved = DeviceSpec("cuda", local_rank % visible if visible else 0)
        mapping = f"local rank {local_rank} of {local_size} -> {resolved} ({visible} visible)"
        reason = f"{reason}; {mapping}" if reason else mapping
    return Selection(_backend_for(resolved, requested_dtype(dtype)), spec, source, reason)


def _resolve_auto(spec: DeviceSpec) -> tuple[DeviceSpec, str]:
    """`auto` becomes a bare cuda when cuda:0 passes the probe, else cpu; with the reason why."""
    from gpunn.backend import cuda_probe

    if spec.kind != "auto":
        return spec, ""
    usable, why = cuda_probe.cuda_status(0)
    if usable:
        return DeviceSpec("cuda", 0), f"chose cuda ({why})"
    return DeviceSpec("cpu"), f"chose cpu because CUDA is unusable: {why}"


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
