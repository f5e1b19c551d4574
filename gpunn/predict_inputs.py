"""Inputs and outputs of `gpunn predict` (and `gpunn serve`): .npy arrays, IDX files and PNG images read as
(N, features) rows; the model and class names of a checkpoint; top-k classes as text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpunn.data.idx import read_idx
from gpunn.errors import DataError


def _png(path: Path) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f'{path}: reading PNG needs Pillow: pip install "gpunn[image]"') from None
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)[None]
    except OSError as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def _npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array of numbers ({exc})") from None


def read_inputs(path: str | Path, features: int) -> np.ndarray:
    """Rows of `features` values: uint8 pixels, or floats already in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    suffix = path.name.lower()
    if suffix.endswith(".npy"):
        array = _npy(path)
    elif suffix.endswith(".png"):
        array = _png(path)
    else:
        array = read_idx(path)
    if array.dtype.kind not in "uif" or array.size == 0:
        raise DataError(f"{path}: expected numbers, got an array of {array.dtype} with {array.size} values")
    flat_rows = array.ndim <= 2 and array.shape[-1] == features  # (features,) or (N, features)
    images = array.ndim in (2, 3) and array.shape[-1] * array.shape[-2] == features  # (H, W) or (N, H, W)
    if not (flat_rows or images):
        raise DataError(f"{path}: shape {array.shape} cannot be read as rows of {features} values")
    rows = array.reshape(-1, features)
    if rows.dtype == np.uint8:
        return rows
    rows = rows.astype(np.float64)
    if not np.all(np.isfinite(rows)) or rows.min() < 0 or rows.max() > 1:
        raise DataError(f"{path}: float inputs must be finite and in [0, 1] (or save uint8 pixels 0..255)")
    return rows


def load_predictor(checkpoint_path: str | Path, device: str | None = None):
    """(model on `device`, class names) of a checkpoint or run folder."""
    from gpunn.checkpoint import load_checkpoint
    from gpunn.data.sources import SOURCES
    from gpunn.nn.model import Sequential

    checkpoint = load_checkpoint(checkpoint_path)
    model = Sequential.from_description(checkpoint.architecture, device, checkpoint.header["dtype"])
    model.set_weights(checkpoint.weights)
    dataset = checkpoint.header.get("config", {}).get("dataset", "mnist")
    names = SOURCES[dataset].class_names if dataset in SOURCES else tuple(str(i) for i in range(10))
    return model, names


def top_classes(probabilities: np.ndarray, names, k: int) -> list[tuple[str, float, str]]:
    """The k likeliest classes of one row as (name, probability, 'name (p%)'), the likeliest first."""
    top = np.argsort(probabilities, kind="stable")[::-1][:k]
    return [(names[i], float(probabilities[i]), f"{names[i]} ({probabilities[i]:.1%})") for i in top]
