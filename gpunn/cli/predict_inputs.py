"""Inputs and outputs of `gpunn predict` (and `gpunn serve`): .npy arrays, IDX files and PNG images read as
(N, features) rows; the model and class names of a checkpoint; top-k classes as text.

The model expects what it was trained on: MNIST-style images, a white (high) digit on a black (0)
background. A dark digit on a light background is detected by its bright border and refused, since the
model would give it a confident wrong answer; `invert=True` (--invert) flips such images.

A PNG with transparency (strokes in the alpha channel over a transparent background, as drawing apps save
them) is read the way an image viewer shows it where the strokes are visible: composited over a white page
when the strokes are dark (then it is a dark digit on light, refused or flipped by --invert as above), over
a black page when they are light (then it is MNIST's white on black already). Never the colour channels
alone, in which the background of such a file is usually as black as the strokes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpunn.data.idx import read_idx
from gpunn.errors import DataError


def _png(path: Path, features: int) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise DataError(f'{path}: reading PNG needs Pillow: pip install "gpunn[image]"') from None
    try:
        with Image.open(path) as image:  # reads the header only: the size is known before any decoding
            width, height = image.size
            if width * height == features:
                return composited(image)[None]
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None
    raise DataError(
        f"{path}: the image is {width}x{height}, expected {_side(features)} (the model's {features} inputs): "
        "resize it first"
    )


def composited(image) -> np.ndarray:
    """(H, W) uint8 grey levels of a PIL image as a viewer shows it: transparency over the page colour that
    the strokes stand out against (white under dark strokes, black under light ones)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not has_alpha:
        return np.asarray(image.convert("L"), dtype=np.uint8)
    grey_alpha = np.asarray(image.convert("RGBA").convert("LA"), dtype=np.float64)
    grey, alpha = grey_alpha[..., 0], grey_alpha[..., 1] / 255.0
    ink = alpha.sum()
    strokes = (grey * alpha).sum() / ink if ink else 255.0  # the visible pixels' mean grey level
    page = 255.0 if strokes < 127.5 else 0.0
    return np.rint(grey * alpha + page * (1.0 - alpha)).astype(np.uint8)


def _side(features: int) -> str:
    side = round(features**0.5)
    return f"{side}x{side}" if side * side == features else f"{features} values"


def _npy(path: Path) -> np.ndarray:
    """np.load after checking the header: the declared shape must fit the file (no giant allocations)."""
    from numpy.lib import format as npy

    try:
        with open(path, "rb") as fh:
            version = npy.read_magic(fh)
            shape, _, dtype = (
                npy.read_array_header_1_0(fh) if version == (1, 0) else npy.read_array_header_2_0(fh)
            )
            data_bytes = path.stat().st_size - fh.tell()
        if dtype.hasobject or int(np.prod(shape, dtype=object)) * dtype.itemsize != data_bytes:
            raise ValueError(f"its header declares {dtype} {shape}, which does not match the file's size")
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npy array of numbers ({exc})") from None


def _inverted_rows(rows: np.ndarray, features: int) -> list[int]:
    """Rows whose border is mostly bright: a dark digit on a light background."""
    side = round(features**0.5)
    if side * side != features or side < 3:
        return []
    images = rows.reshape(len(rows), side, side).astype(np.float64)
    border = np.concatenate(
        [images[:, 0, :], images[:, -1, :], images[:, 1:-1, 0], images[:, 1:-1, -1]], axis=1
    )
    bright = 127.5 if rows.dtype == np.uint8 else 0.5
    return np.flatnonzero(border.mean(axis=1) > bright).tolist()


def read_inputs(path: str | Path, features: int, invert: bool = False) -> np.ndarray:
    """Rows of `features` values: uint8 pixels, or floats already in [0, 1]; `invert` flips dark-on-light."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    suffix = path.name.lower()
    if suffix.endswith(".npy"):
        array = _npy(path)
    elif suffix.endswith(".png"):
        array = _png(path, features)
    else:
        array = read_idx(path)
    if array.dtype.kind not in "uif" or array.size == 0 or array.ndim == 0:
        raise DataError(f"{path}: expected numbers, got an array of {array.dtype} with {array.size} values")
    flat_rows = array.ndim <= 2 and array.shape[-1] == features  # (features,) or (N, features)
    images = array.ndim in (2, 3) and array.shape[-1] * array.shape[-2] == features  # (H, W) or (N, H, W)
    if not (flat_rows or images):
        raise DataError(f"{path}: shape {array.shape} cannot be read as rows of {features} values")
    rows = array.reshape(-1, features)
    if rows.dtype != np.uint8:
        rows = rows.astype(np.float64)
        if not np.all(np.isfinite(rows)) or rows.min() < 0 or rows.max() > 1:
            raise DataError(
                f"{path}: float inputs must be finite and in [0, 1] (or save uint8 pixels 0..255)"
            )
    if invert:
        return 255 - rows if rows.dtype == np.uint8 else 1.0 - rows
    inverted = _inverted_rows(rows, features)
    if inverted:
        which = "" if len(rows) == 1 else f" (rows {', '.join(map(str, inverted[:5]))})"
        raise DataError(
            f"{path}: looks like a dark digit on a light background{which}; the model expects a white digit "
            "on black, like MNIST: invert the image, or pass --invert"
        )
    return rows


def load_predictor(checkpoint_path: str | Path, device: str | None = None):
    """(model on `device`, class names) of a checkpoint or run folder."""
    from gpunn.checkpoint import class_names, classifier_from_checkpoint, load_checkpoint

    checkpoint = load_checkpoint(checkpoint_path)
    model = classifier_from_checkpoint(checkpoint, checkpoint_path, device)
    return model, class_names(checkpoint, model.out_features)


def top_classes(probabilities: np.ndarray, names, k: int) -> list[tuple[str, float, str]]:
    """The k likeliest classes of one row as (name, probability, 'name (p%)'), the likeliest first."""
    top = np.argsort(probabilities, kind="stable")[::-1][:k]
    return [(names[i], float(probabilities[i]), f"{names[i]} ({probabilities[i]:.1%})") for i in top]
