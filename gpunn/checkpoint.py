"""Checkpoints: one .npz of plain arrays plus a JSON header. No pickle anywhere (allow_pickle=False), so a
checkpoint from the internet cannot run code. Written atomically; readable on every device."""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import gpunn
from gpunn.atomic import atomic_writer
from gpunn.errors import CheckpointError

FORMAT = "gpunn-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    header: dict
    weights: list[np.ndarray]
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # anything else (e.g. the epoch's order)

    @property
    def architecture(self) -> list[dict]:
        return self.header["architecture"]


def save_checkpoint(
    path: str | Path,
    model,
    header: dict | None = None,
    optimizer=None,
    arrays: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write model weights (+ optimizer state, extra arrays, header fields) to `path` atomically."""
    path = Path(path)
    full_header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "gpunn_version": gpunn.__version__,
        "architecture": model.describe(),
        "dtype": model.backend.dtype_name,
        "written_on": model.backend.device,
        **(header or {}),
    }
    payload = {"header": np.frombuffer(json.dumps(full_header).encode(), dtype=np.uint8)}
    for index, weight in enumerate(model.get_weights()):
        payload[f"param.{index}"] = weight
    if optimizer is not None:
        for key, value in optimizer.state_dict(model.backend).items():
            payload[f"optim.{key}"] = value
    for key, value in (arrays or {}).items():
        payload[f"array.{key}"] = np.asarray(value)
    with atomic_writer(path) as fh:
        np.savez(fh, **payload)
    return path


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint; anything wrong is one CheckpointError naming the file.

    Nothing is read blindly: the header comes first (size-capped), its architecture fixes the shape of
    every parameter, and every member's declared shape and size are checked against it before any of
    its data is read. Members the format does not define are refused, not skipped.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there")
    try:
        with zipfile.ZipFile(path) as archive:
            return _read(path, archive)
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zipfile.LargeZipFile) as exc:
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: {exc})"
        ) from None


def _read(path: Path, archive: zipfile.ZipFile) -> Checkpoint:
    members = {info.filename: info for info in archive.infolist()}
    for name, info in members.items():
        if not MEMBER.fullmatch(name):
            raise CheckpointError(f"{path}: unexpected member {name!r}: not a gpunn checkpoint")
        if info.file_size > MAX_DEFLATE_RATIO * max(info.compress_size, 1) + 1024:
            raise CheckpointError(f"{path}: member {name!r} claims an impossible size")
    if "header.npy" not in members:
        raise CheckpointError(f"{path}: not a gpunn checkpoint (no readable header)")
    if members["header.npy"].file_size > MAX_HEADER_BYTES:
        raise CheckpointError(f"{path}: header larger than {MAX_HEADER_BYTES} bytes: not a gpunn checkpoint")
    try:
        header = json.loads(_array(archive, members["header.npy"], None).tobytes().decode())
    except (ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: not a gpunn checkpoint (no readable header)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gpunn checkpoint")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {header.get('version')} is not {FORMAT_VERSION}; "
            f"it was written by gpunn {header.get('gpunn_version')}"
        )
    check_header_fields(path, header)
    shapes = _parameter_shapes(path, header)
    if header.get("dtype") not in ("float32", "float64"):
        raise CheckpointError(f"{path}: dtype {header.get('dtype')!r} is not float32 or float64")
    weights, optimizer_state, arrays = [], {}, {}
    for index, shape in enumerate(shapes):
        name = f"param.{index}.npy"
        if name not in members:
            raise CheckpointError(f"{path}: parameter {index} is missing")
        weights.append(_array(archive, members[name], shape))
    for name, info in members.items():
        key = name.removesuffix(".npy")
        if key.startswith("param.") and int(key.split(".")[1]) >= len(shapes):
            raise CheckpointError(f"{path}: parameter {key} is not in the architecture")
        if key.startswith("optim."):
            optimizer_state[key.removeprefix("optim.")] = _array(archive, info, _optim_shape(key, shapes))
        elif key == "array.order":
            arrays["order"] = _array(archive, info, "order")
    checkpoint = Checkpoint(header, weights, optimizer_state, arrays)
    for weight in checkpoint.weights:
        if weight.dtype.kind != "f" or not np.all(np.isfinite(weight)):
            raise CheckpointError(f"{path}: weights must be finite floats")
    return checkpoint


# ---- the header's fields: each one's type, checked at load, so no reader meets a malformed value ----------
def count(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("not a whole number >= 0")
    return value


def number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError("not a number")
    return value


def flag(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError("not a boolean")
    return value


def text(value) -> str:
    if not isinstance(value, str):
        raise ValueError("not a string")
    return value


def mapping(value) -> dict:
    if not isinstance(value, dict):
        raise ValueError("not an object")
    return value


def names(value) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise ValueError("not a list of strings")
    return value


def optional(convert):
    return lambda value: None if value is None else convert(value)


def _settings(value) -> dict:
    """The run's settings (their values are checked by TrainConfig where a run is resumed): an object whose
    dataset, which evaluate and predict read, is a name."""
    mapping(value)
    if "dataset" in value:
        text(value["dataset"])
    return value


def _provenance(value) -> dict:
    """gpunn.data.provenance.record(): {} or {"dir": folder, "files": {file name: sha256}}."""
    mapping(value)
    if "dir" in value:
        text(value["dir"])
    files = value.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ValueError("'files' is not an object of file name: sha256")
    return value


def _objects(value) -> list[dict]:
    if not isinstance(value, list) or not all(isinstance(record, dict) for record in value):
        raise ValueError("not a list of objects")
    return value


HEADER_FIELDS = {  # key: (check, what it must be); a field may be absent (weights-only files have few)
    "gpunn_version": (text, "a version string"),
    "written_on": (optional(text), "a device name"),
    "config": (_settings, "the run's settings"),
    "data": (optional(_provenance), "an object or null"),
    "classes": (optional(names), "a list of class names"),
    "epoch": (count, "a count"),
    "step_in_epoch": (count, "a count"),
    "loss_sum": (number, "a number"),
    "correct": (count, "a count"),
    "history": (_objects, "a list of per-epoch metrics"),
    "rng_state": (mapping, "a NumPy bit generator state"),
    "best_val_loss": (optional(number), "a number or null"),
    "best_epoch": (count, "a count"),
    "stopped_early": (flag, "true or false"),
    "metrics": (mapping, "an object of one epoch's metrics"),
}


def malformed(path, key: str, what: str, value, exc: Exception) -> CheckpointError:
    """The one message for a header field of the wrong kind."""
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return CheckpointError(
        f"{path}: malformed checkpoint header: {key!r} must be {what}, got {shown} ({exc}); the file is "
        "damaged or not from gpunn train: use another checkpoint, or start a new run"
    )


def check_header_fields(path, header: dict) -> None:
    for key, (check, what) in HEADER_FIELDS.items():
        if key in header:
            try:
                check(header[key])
            except (TypeError, ValueError) as exc:
                raise malformed(path, key, what, header[key], exc) from None


MEMBER = re.compile(
    r"header\.npy|param\.\d{1,4}\.npy|optim\.steps\.npy|optim\.[a-z_]{1,32}\.\d{1,4}\.npy|array\.order\.npy"
)
MAX_DEFLATE_RATIO = 1032
MAX_HEADER_BYTES = 64 << 20  # a header holds the history: 64 MiB is thousands of epochs
MAX_ORDER = 1 << 26  # the epoch's sample order: 67M samples


def _parameter_shapes(path: Path, header: dict) -> list[tuple[int, ...]]:
    """The shape of every parameter the header's architecture declares, as each layer describes its own
    (checked to chain and bounded) before any weight is read."""
    from gpunn.nn.layers import LAYER_TYPES, layer_from_description

    architecture = header.get("architecture")
    if not isinstance(architecture, list) or not architecture:
        raise CheckpointError(f"{path}: the header has no architecture: not a gpunn checkpoint")
    shapes, width = [], None
    for description in architecture:
        kind = description.get("type") if isinstance(description, dict) else None
        if kind not in LAYER_TYPES:
            raise CheckpointError(
                f"{path}: unknown layer type {kind!r} (this gpunn knows {', '.join(LAYER_TYPES)}); "
                "it may come from a newer gpunn"
            )
        try:
            layer = layer_from_description(description)
            width = layer.output_features(width)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        shapes += [shape for _, shape in layer.parameter_shapes()]
    if not shapes:
        raise CheckpointError(f"{path}: the architecture has no layer with weights")
    from gpunn.nn.model import MAX_PARAMETERS

    if sum(int(np.prod(s)) for s in shapes) > MAX_PARAMETERS:
        raise CheckpointError(f"{path}: the architecture declares more than {MAX_PARAMETERS:,} parameters")
    return shapes


def _optim_shape(key: str, shapes: list[tuple[int, ...]]):
    if key == "optim.steps":
        return ()
    index = int(key.rsplit(".", 1)[1])
    return shapes[index] if index < len(shapes) else "missing"


def _array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, expected) -> np.ndarray:
    """One member as an array, after its .npy header was checked: `expected` is its shape, None for the
    checkpoint header (1-D uint8), or "order" (1-D integers, bounded)."""
    from numpy.lib import format as npy

    with archive.open(info) as fh:
        version = npy.read_magic(fh)
        shape, fortran, dtype = (
            npy.read_array_header_1_0(fh) if version == (1, 0) else npy.read_array_header_2_0(fh)
        )
        name = info.filename
        if dtype.hasobject or fortran:
            raise ValueError(f"member {name} holds objects or Fortran order")
        if expected is None:
            ok = dtype == np.uint8 and len(shape) == 1
        elif expected == "order":
            ok = dtype.kind in "iu" and len(shape) == 1 and shape[0] <= MAX_ORDER
        elif expected == "missing":
            ok = False
        else:
            ok = tuple(shape) == tuple(expected) and dtype.kind in "fi"
        if not ok:
            raise ValueError(f"member {name} declares {dtype} {shape}, which the architecture does not allow")
        count = math.prod(shape)  # exact: a declared (2**70,) must not overflow int64
        if fh.tell() + count * dtype.itemsize != info.file_size:
            raise ValueError(f"member {name}: its size does not match the shape it declares")
        data = fh.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise ValueError(f"member {name} is truncated")
        array = np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        if fh.read(1):  # reading to the end also makes zipfile check the CRC
            raise ValueError(f"member {name} has bytes after its data")
    return array


def model_from_checkpoint(checkpoint: Checkpoint, device=None, dtype: str | None = None):
    """The Sequential a loaded checkpoint describes, with its weights, on `device`."""
    from gpunn.nn.model import Sequential

    model = Sequential.from_description(checkpoint.architecture, device, dtype or checkpoint.header["dtype"])
    model.set_weights(checkpoint.weights)
    dataset = trained_on(checkpoint)
    if dataset is not None:  # so that model.save() records it again
        header = checkpoint.header
        model.trained_on = {"dataset": dataset, "classes": header.get("classes"), "data": header.get("data")}
    return model


def classifier_from_checkpoint(checkpoint: Checkpoint, path, device=None):
    """model_from_checkpoint for the faces that read its outputs as softmax class scores (evaluate, predict,
    export, serve): a checkpoint whose header says its outputs are something else (a scikit-learn
    regressor's values, a multilabel classifier's logistic outputs) is refused, naming what loads it."""
    outputs = checkpoint.header.get("outputs", "softmax")
    if outputs != "softmax":
        kind = checkpoint.header.get("sklearn", {}).get("kind", "model")
        loader = "MLPRegressor" if kind == "regressor" else "MLPClassifier"
        raise CheckpointError(
            f"{path}: this scikit-learn {kind}'s outputs are {outputs}, not class probabilities: "
            f"load it with gpunn.sklearn.{loader}.load"
        )
    return model_from_checkpoint(checkpoint, device)


def trained_on(checkpoint: Checkpoint) -> str | None:
    """The dataset a model was trained on: its run's settings, or what Model.save() recorded; None: unknown."""
    config = checkpoint.header.get("config")
    name = config.get("dataset") if isinstance(config, dict) else checkpoint.header.get("dataset")
    return name if isinstance(name, str) else None


def load_model(path: str | Path, device=None, dtype: str | None = None):
    """Rebuild the model of any gpunn checkpoint (a file or a run folder) on any device."""
    return model_from_checkpoint(load_checkpoint(path), device, dtype)


def class_names(checkpoint: Checkpoint, classes: int) -> tuple[str, ...]:
    """The names of a model's `classes` outputs: recorded by the run, else its dataset's, else 0..C-1."""
    from gpunn.data.sources import SOURCES

    recorded = checkpoint.header.get("classes")
    if isinstance(recorded, list) and len(recorded) == classes and all(isinstance(n, str) for n in recorded):
        return tuple(recorded)
    source = SOURCES.get(trained_on(checkpoint) or "mnist")
    if source is not None and len(source.class_names) == classes:
        return source.class_names
    return tuple(str(i) for i in range(classes))


def architecture_summary(architecture: list[dict]) -> str:
    """'784-128-64-10 relu' from a model description (each layer supplies its own part)."""
    from gpunn.nn.layers import layer_from_description, summary_of

    return summary_of([layer_from_description(description) for description in architecture])
