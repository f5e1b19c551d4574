"""`gpunn data verify`: checksums, IDX structure, shapes and label counts of a folder's files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpunn.data.datasets import find_in, sha256_of
from gpunn.data.idx import read_idx
from gpunn.data.sources import FILES, SOURCES
from gpunn.errors import DataError


def identify(folder: Path) -> list[str]:
    """Datasets present in `folder`: in subfolders by name, or directly (told apart by checksum)."""
    names = [name for name in SOURCES if (folder / name).is_dir()]
    direct = find_in(folder, "", FILES[("test", "labels")])
    if direct is not None and direct.parent == folder:
        digest = sha256_of(direct)
        matches = [name for name, source in SOURCES.items() if source.sha256.get(direct.name) == digest]
        names += matches or ["mnist"]  # unknown content: check against MNIST and report the mismatch
    return list(dict.fromkeys(names))


def verify_dataset(folder: Path, name: str) -> list[tuple[bool, str]]:
    """(ok, line) for each file of `name` found in `folder` or `folder/name`."""
    source = SOURCES[name]
    results = []
    for (split, kind), file_name in FILES.items():
        path = find_in(folder, name, file_name)
        if path is None:
            results.append((False, f"{name} {split} {kind}: {file_name} missing in {folder}"))
            continue
        digest = sha256_of(path)
        if digest != source.sha256.get(path.name):
            results.append((False, f"{path}: sha256 {digest[:16]}... is not the official {name} file"))
            continue
        try:
            array = read_idx(path, kind)
        except DataError as exc:
            results.append((False, str(exc)))
            continue
        expected = source.sizes[split]
        if len(array) != expected:
            results.append((False, f"{path}: {len(array)} items, expected {expected}"))
            continue
        detail = f"shape {tuple(array.shape)}"
        if kind == "labels":
            detail += f", label counts {np.bincount(array, minlength=len(source.class_names)).tolist()}"
        results.append((True, f"{path}: OK (sha256 matches, {detail})"))
    return results


def verify_folder(folder: str | Path, dataset: str | None = None) -> list[tuple[bool, str]]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a directory")
    names = [dataset] if dataset else identify(folder)
    if not names:
        raise DataError(
            f"{folder}: no MNIST or Fashion-MNIST files found (nor mnist/ or fashion-mnist/ subfolders)"
        )
    return [result for name in names for result in verify_dataset(folder, name)]
