"""gpunn: a small neural-network toolkit whose same code trains an MLP on NumPy (CPU) or CuPy (GPU).

Importing gpunn never imports CuPy or touches CUDA: the device is resolved at first use.
"""

__version__ = "0.1.0"

from gpunn.backend import Backend, get_backend, parse_device, select, use_device  # noqa: E402
from gpunn.errors import (  # noqa: E402
    CheckpointError,
    DataError,
    DeviceMismatchError,
    DeviceUnavailableError,
    DTypeMismatchError,
    GpunnError,
    InvalidDeviceError,
    ShapeError,
    TrainingDivergedError,
)


def __getattr__(name: str):
    """`gpunn.train(...)`, `gpunn.nn` and `gpunn.data` load on first use, keeping `import gpunn` light."""
    if name == "train":
        from gpunn.training import train

        return train
    if name in ("nn", "data"):
        import importlib

        return importlib.import_module(f"gpunn.{name}")
    raise AttributeError(f"module 'gpunn' has no attribute {name!r}")


__all__ = [
    "Backend",
    "CheckpointError",
    "DTypeMismatchError",
    "DataError",
    "DeviceMismatchError",
    "DeviceUnavailableError",
    "GpunnError",
    "InvalidDeviceError",
    "ShapeError",
    "TrainingDivergedError",
    "__version__",
    "train",
    "get_backend",
    "parse_device",
    "select",
    "use_device",
]
