"""Your own arrays as a training set: `gpunn.train(data=(X, y), test=(X_test, y_test))`.

X: rows of features (N, F) or images (N, H, W), as a NumPy array, a pandas DataFrame or any DLPack-capable
host array (a PyTorch CPU tensor, a JAX array); uint8 pixels (scaled on the device, as the built-in
datasets are) or finite floats (used as they are). y: integer or string labels; the classes are the
training labels' sorted unique values, and the test labels must be among them. Each set is fingerprinted
(SHA-256 of its shape, dtype and bytes) so a resume can tell the same arrays from others.
"""

from __future__ import annotations

import hashlib

import numpy as np

from gpunn.backend import dlpack
from gpunn.data.datasets import Dataset
from gpunn.errors import DataError

ARRAYS = "arrays"  # the run's dataset name when it trains on arrays


def _host(array, what: str) -> np.ndarray:
    """A NumPy array of a NumPy / pandas / DLPack host array (no copy where it can)."""
    if hasattr(array, "to_numpy") and not isinstance(array, np.ndarray):  # pandas DataFrame / Series
        array = array.to_numpy()
    if dlpack.is_foreign_array(array):
        view = dlpack.host_view(array)
        if view is None:
            raise DataError(
                f"{what} is {dlpack.describe(array)}: gpunn.train reads arrays from host memory; move it "
                "first (x.cpu() for a PyTorch tensor)"
            )
        array = view
    try:
        return np.asarray(array)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} cannot be read as an array ({exc})") from None


def features(X, what: str) -> np.ndarray:
    """(N, H, W) images or (N, 1, F) rows: uint8 as they are, floats checked finite."""
    x = _host(X, what)
    if x.ndim not in (2, 3) or x.shape[0] == 0 or 0 in x.shape:
        raise DataError(
            f"{what} must be rows (N, features) or images (N, height, width), got shape {x.shape}"
        )
    if x.dtype != np.uint8:
        if x.dtype.kind != "f":
            raise DataError(f"{what} must hold uint8 pixels or floats, got {x.dtype}")
        if not np.all(np.isfinite(x)):
            raise DataError(f"{what} contains NaN or infinite values")
    return np.ascontiguousarray(x if x.ndim == 3 else x.reshape(x.shape[0], 1, x.shape[1]))


def fingerprint(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def datasets_from_arrays(data, test) -> tuple[Dataset, Dataset]:
    """(train, test) Datasets of `data=(X, y)` and `test=(X_test, y_test)`."""
    pairs = []
    for name, pair in (("data", data), ("test", test)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise DataError(f"{name} must be a pair (X, y) of features and labels, got {type(pair).__name__}")
        x = features(pair[0], f"{name}'s X")
        y = _host(pair[1], f"{name}'s y")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DataError(f"{name}'s y must be one label per row of X ({x.shape[0]}), got shape {y.shape}")
        if y.dtype.kind not in "iuUSOb":
            raise DataError(f"{name}'s y must hold integer or string labels, got {y.dtype}")
        pairs.append((x, y))
    (x_train, y_train), (x_test, y_test) = pairs
    if np.prod(x_train.shape[1:]) != np.prod(x_test.shape[1:]):
        raise DataError(f"test's X rows are {x_test.shape[1:]} but data's are {x_train.shape[1:]}")
    x_test = x_test.reshape(x_test.shape[:1] + x_train.shape[1:])  # rows of images' width: the images' shape
    classes, labels = np.unique(y_train, return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"data's y has {len(classes)} class: a classifier needs at least two")
    unknown = np.setdiff1d(y_test, classes)
    if unknown.size:
        raise DataError(f"test's y has the label {unknown[0]!r}, which data's y does not have")
    names = tuple(str(c) for c in classes)
    return (
        Dataset(
            ARRAYS,
            "train",
            x_train,
            labels.astype(np.int64),
            names,
            fingerprint=fingerprint(x_train, y_train),
        ),
        Dataset(
            ARRAYS,
            "test",
            x_test,
            np.searchsorted(classes, y_test).astype(np.int64),
            names,
            fingerprint=fingerprint(x_test, y_test),
        ),
    )
