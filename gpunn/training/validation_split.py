"""--val-size: a stratified validation set held out of the training set, drawn with the run's seed.

The test set is only ever reported; choices (early stopping, the best checkpoint, a sweep's ranking) are
made on this split. The draw uses its own generator (scikit-learn's, seeded with the run's seed), so the
weights and the batch order of a run do not depend on whether it holds out a validation set.
"""

from __future__ import annotations

import numpy as np

from gpunn.data.datasets import Dataset
from gpunn.training.validate import fail


def check_val_size(train_set: Dataset, val_size: int) -> None:
    """A stratified split needs one image of each class on both sides."""
    n = len(train_set)
    classes = len(np.unique(train_set.labels))
    if val_size and not classes <= val_size <= n - classes:
        raise fail(
            lambda name: (
                f"{name('val_size', val_size)} does not fit {train_set.name}'s {n} training images: choose "
                f"between {classes} (one per class) and {n - classes}"
            )
        )


def split_validation(train_set: Dataset, val_size: int, seed: int) -> tuple[Dataset, Dataset]:
    """(train without the validation rows, validation rows), both keeping the original row order."""
    from sklearn.model_selection import train_test_split

    check_val_size(train_set, val_size)
    n = len(train_set)
    keep, held = train_test_split(
        np.arange(n), test_size=val_size, stratify=train_set.labels, random_state=seed
    )
    return _rows(train_set, np.sort(keep), "train"), _rows(train_set, np.sort(held), "validation")


def _rows(data: Dataset, rows: np.ndarray, split: str) -> Dataset:
    return Dataset(
        data.name, split, data.images[rows], data.labels[rows], data.class_names, data.files, data.fingerprint
    )
