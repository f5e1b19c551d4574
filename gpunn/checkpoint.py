"""Checkpoints: one .npz of plain arrays plus a JSON header. No pickle anywhere (allow_pickle=False), so a
checkpoint from the internet cannot run code. Written atomically; readable on every device."""

from __future__ import annotations

import json
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
    """Read and validate a checkpoint; anything wrong is one CheckpointError naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.npz"
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint there")
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {key: archive[key] for key in archive.files}  # read all: CRC errors surface here
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, zipfile.LargeZipFile) as exc:
        raise CheckpointError(
            f"{path}: corrupt or truncated checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    try:
        header = json.loads(contents.pop("header").tobytes().decode())
    except (KeyError, ValueError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: not a gpunn checkpoint (no readable header)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a gpunn checkpoint")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {header.get('version')} is not {FORMAT_VERSION}; "
            f"it was written by gpunn {header.get('gpunn_version')}"
        )
    count = sum(key.startswith("param.") for key in contents)
    weights = []
    for index in range(count):
        if f"param.{index}" not in contents:
            raise CheckpointError(f"{path}: parameter {index} is missing")
        weights.append(contents[f"param.{index}"])
    optimizer_state = {k.removeprefix("optim."): v for k, v in contents.items() if k.startswith("optim.")}
    arrays = {k.removeprefix("array."): v for k, v in contents.items() if k.startswith("array.")}
    checkpoint = Checkpoint(header, weights, optimizer_state, arrays)
    _check_shapes(path, checkpoint)
    return checkpoint


def _check_shapes(path: Path, checkpoint: Checkpoint) -> None:
    expected = []
    for layer in checkpoint.architecture:
        if layer.get("type") == "Dense":
            expected += [(layer["in"], layer["out"]), (layer["out"],)]
    found = [tuple(w.shape) for w in checkpoint.weights]
    if found != expected:
        raise CheckpointError(f"{path}: weights of shapes {found} do not match the architecture's {expected}")
    for weight in checkpoint.weights:
        if weight.dtype.kind != "f" or not np.all(np.isfinite(weight)):
            raise CheckpointError(f"{path}: weights must be finite floats")


def architecture_summary(architecture: list[dict]) -> str:
    """'784-128-64-10 relu' from a model description."""
    sizes = [layer["in"] for layer in architecture if layer["type"] == "Dense"]
    sizes.append([layer["out"] for layer in architecture if layer["type"] == "Dense"][-1])
    activations = sorted({layer["type"].lower() for layer in architecture if layer["type"] != "Dense"})
    return "-".join(map(str, sizes)) + (f" {'/'.join(activations)}" if activations else "")
