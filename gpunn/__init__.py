"""gpunn: a small neural-network toolkit whose same code trains an MLP on NumPy (CPU) or CuPy (GPU).

Importing gpunn never imports CuPy or touches CUDA: the device is resolved at first use. It does not even
import NumPy: the backend names load on first use, so the `gpunn` command starts inside its own error
handling (a Ctrl-C during start-up is one line, not a traceback).
"""

__version__ = "0.1.0"

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

_BACKEND_NAMES = ("Backend", "get_backend", "parse_device", "select", "use_device")


def __getattr__(name: str):
    """`gpunn.train(...)`, `gpunn.nn` and `gpunn.data` load on first use, keeping `import gpunn` light."""
    if name in _BACKEND_NAMES:
        import gpunn.backend

        return getattr(gpunn.backend, name)
    if name == "train":
        from gpunn.training.run import train

        return train
    if name in ("StopTraining", "STOP"):
        import gpunn.training.callbacks

        return getattr(gpunn.training.callbacks, name)
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
    "STOP",
    "ShapeError",
    "StopTraining",
    "TrainingDivergedError",
    "__version__",
    "train",
    "get_backend",
    "parse_device",
    "select",
    "use_device",
]
