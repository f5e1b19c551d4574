"""The errors gpunn raises on purpose: the CLI prints any of them as one line and exits non-zero."""


class GpunnError(Exception):
    """Base class: an expected failure with a message meant for the user."""

    exit_code = 1


class InvalidDeviceError(GpunnError, ValueError):
    """A device or dtype spec that does not parse."""

    exit_code = 2


class DeviceUnavailableError(GpunnError, RuntimeError):
    """The requested device is valid but cannot run here (no CuPy, no driver, no GPU, ...)."""


class DeviceMismatchError(GpunnError, TypeError):
    """An array from one side of the host/device line was handed to the other side."""


class DTypeMismatchError(GpunnError, TypeError):
    """Arrays of different floating dtypes were mixed."""


class ShapeError(GpunnError, ValueError):
    """Input of the wrong shape, or with NaN/inf, or labels outside the classes."""


class DataError(GpunnError, ValueError):
    """A data file that is missing, corrupt or not what it claims to be."""


class CheckpointError(GpunnError, ValueError):
    """A checkpoint that is corrupt, truncated or does not match the model."""


class TrainingDivergedError(GpunnError, RuntimeError):
    """The loss became NaN or infinite."""
