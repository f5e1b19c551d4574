"""The seam between the NN code and the hardware. Nothing here imports CuPy until cuda is asked for."""

from gpunn.backend.base import Backend
from gpunn.backend.selection import (
    Selection,
    get_backend,
    requested_device,
    requested_dtype,
    select,
    select_for_local_rank,
    use_device,
)
from gpunn.backend.spec import VALID_DEVICES, VALID_DTYPES, DeviceSpec, parse_device, parse_dtype

__all__ = [
    "Backend",
    "DeviceSpec",
    "Selection",
    "VALID_DEVICES",
    "VALID_DTYPES",
    "get_backend",
    "parse_device",
    "parse_dtype",
    "requested_device",
    "requested_dtype",
    "select",
    "select_for_local_rank",
    "use_device",
]
