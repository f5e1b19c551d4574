"""Turn a drawn digit into what an MNIST model expects, the way MNIST itself was made.

MNIST's digits were scaled so the longer side of their bounding box is 20 pixels (aspect ratio kept,
anti-aliased), then placed in a 28x28 field so their centre of mass sits at the field's centre. A drawing
that skips this looks nothing like the training data, and the model guesses.
"""

from __future__ import annotations

import math

import numpy as np

FIELD = 28
BOX = 20
CENTRE = (FIELD - 1) / 2  # 13.5: the centre of pixel indices 0..27


def _area_matrix(source: int, target: int) -> np.ndarray:
    """(target, source) weights of an area (box-filter) resize along one axis: rows sum to 1."""
    edges = np.arange(target + 1) * (source / target)
    starts, ends = edges[:-1, None], edges[1:, None]
    pixels = np.arange(source)[None, :]
    overlap = np.clip(np.minimum(ends, pixels + 1) - np.maximum(starts, pixels), 0, None)
    return overlap / (source / target)


def _round(value: float) -> int:
    return math.floor(value + 0.5)  # halves go up, on every platform


def mnist_like(ink: np.ndarray) -> np.ndarray:
    """(H, W) ink intensities (0 = paper, 255 = full ink) -> (28, 28) uint8, MNIST-style.

    Crop to the ink's bounding box, area-resize so the longer side is 20 pixels, then place it so the
    centre of mass lands on pixel 13.5 (clamped so nothing leaves the field). No ink: all zeros.
    """
    ink = np.asarray(ink, dtype=np.float64)
    if ink.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {ink.shape}")
    out = np.zeros((FIELD, FIELD), dtype=np.uint8)
    rows, columns = np.nonzero(ink > 0)
    if not len(rows):
        return out
    crop = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    height, width = crop.shape
    scale = BOX / max(height, width)
    new_height, new_width = max(1, _round(height * scale)), max(1, _round(width * scale))
    box = _area_matrix(height, new_height) @ crop @ _area_matrix(width, new_width).T
    mass = box.sum()
    centre_row = (box.sum(axis=1) @ np.arange(new_height)) / mass
    centre_column = (box.sum(axis=0) @ np.arange(new_width)) / mass
    top = min(max(_round(CENTRE - centre_row), 0), FIELD - new_height)
    left = min(max(_round(CENTRE - centre_column), 0), FIELD - new_width)
    out[top : top + new_height, left : left + new_width] = np.clip(np.rint(box), 0, 255)
    return out
