"""The errors gpunn raises on purpose: the CLI prints any of them as one line and exits non-zero."""


class GpunnError(Exception):
    """Base class: an expected failure with a message meant for the user.

    told_elsewhere: set on the ranks other than rank 0 of a distributed run when every rank raised the same
    error at the same point; rank 0 alone tells the user, the others exit with the code and say nothing.
    """

    exit_code = 1
    told_elsewhere = False


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
    """The loss became NaN or infinite, or blew up far above chance level."""


class TrackingError(GpunnError):
    """A logger that cannot log: its package is not installed, or its store or folder cannot be used."""

    exit_code = 2


class Options:
    """A message that names options: `epochs=` when raised to Python code, `--epochs` from the CLI.

    `render` gets a namer: name("epochs") -> "epochs=" / "--epochs"; name("resume", "runs/a") ->
    "resume='runs/a'" / "--resume runs/a". str() is the Python form; the CLI prints .cli().
    """

    def __init__(self, render):
        self.render = render

    def __str__(self) -> str:
        return self.render(keyword_name)

    def cli(self) -> str:
        return self.render(flag_name)


_UNSET = object()


def keyword_name(key: str, value=_UNSET) -> str:
    if value is _UNSET:
        return f"{key}="
    return f"{key}={value!r}" if isinstance(value, (int, float)) else f"{key}={str(value)!r}"


def flag_name(key: str, value=_UNSET) -> str:
    flag = "--" + key.replace("_", "-")
    return flag if value is _UNSET else f"{flag} {value}"


def cli_message(exc: BaseException) -> str:
    """The one line the CLI prints for `exc`: options named as flags."""
    first = exc.args[0] if len(exc.args) == 1 else None
    return first.cli() if isinstance(first, Options) else str(exc)


class ConfigError(GpunnError, ValueError):
    """A setting that is not valid (wrong type, out of range, not allowed when resuming)."""

    exit_code = 2


class RunFolderError(GpunnError):
    """The run folder cannot be claimed: it holds another run, or another process is writing it."""

    exit_code = 3


class TrainingStalledError(GpunnError, RuntimeError):
    """The loss stayed at chance level (ln of the number of classes): the model is not learning."""


class TrainingInterrupted(GpunnError):
    """SIGINT/SIGTERM arrived: the state was saved; exit 130 or 143 as a shell expects."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + signum


class DistributedError(GpunnError):
    """A distributed run that cannot start: not launched by mpiexec, or no MPI library."""

    exit_code = 2


class RanksDisagreeError(DistributedError):
    """The ranks of a distributed run were started with different settings or data: every rank raises it."""


class OutOfMemoryError(GpunnError, MemoryError):
    """An allocation failed (host or device): the size asked for and what to make smaller, in one line."""


def out_of_memory(exc: MemoryError) -> OutOfMemoryError:
    """The one-line form of any MemoryError (NumPy's names the size it asked for, CuPy's too)."""
    what = " ".join(str(exc).split()) or "an allocation failed"
    return OutOfMemoryError(
        Options(
            lambda n: f"out of memory: {what}; choose a smaller model ({n('hidden')}) or {n('batch_size')}"
        )
    )


class ExportError(GpunnError):
    """A model or option that the ONNX export cannot write."""

    exit_code = 2


class OutputExistsError(GpunnError):
    """A file to write is already there: a run's own file, or one the person did not ask to replace."""

    exit_code = 1
