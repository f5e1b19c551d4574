"""load_dataset(name, split): host arrays of uint8 images and integer labels, plus class names.

Where files come from, first match wins: the `data_dir` argument (the CLI's --data-dir), GPUNN_DATA_DIR,
the cache ($XDG_CACHE_HOME/gpunn or ~/.cache/gpunn), then a download into the cache. A folder given
explicitly is authoritative: files missing there are an error, not a reason to go to the network.
A folder may hold the files itself or a subfolder named after the dataset (mnist/, fashion-mnist/).

Any other dataset is a folder given as the name: the four IDX files (EMNIST letters, KMNIST, your own),
its classes counted from the labels of both splits, labels starting at 1 shifted to 0-based (the names
keep the original labels), and class names, when wanted, one per line in CLASS_NAMES_FILE there.

Images stay uint8 (N, rows, cols) until batching; Backend.scale_images turns them into [0, 1] floats.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpunn.data.download import download_file, mirrors_for
from gpunn.data.idx import read_idx
from gpunn.data.sources import DATASET_NAMES, FILES, SOURCES
from gpunn.errors import DataError, Options

DIGITS_IMAGES = 1797  # scikit-learn's bundled 8x8 digits
DIGITS_TEST_SIZE = 360  # 20% of them, stratified, seed 0
CLASS_NAMES_FILE = "classes.txt"


@dataclass
class Dataset:
    name: str
    split: str
    images: np.ndarray  # (N, rows, cols) uint8 (floats for your own arrays: see gpunn/data/arrays.py)
    labels: np.ndarray  # (N,) int64
    class_names: tuple[str, ...]
    files: dict[str, dict] = field(default_factory=dict)  # kind -> {"path", "sha256"}: where it came from
    fingerprint: str | None = None  # SHA-256 of arrays given in memory (they have no files)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def features(self) -> np.ndarray:
        """(N, rows * cols) uint8 (or floats): a view, no copy."""
        return self.images.reshape(len(self.images), -1)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpunn"


def is_folder_dataset(name) -> bool:
    """A dataset given as a folder of IDX files rather than by one of DATASET_NAMES."""
    return name not in DATASET_NAMES and Path(name).is_dir()


def _check_name(name: str) -> None:
    if name not in DATASET_NAMES and not is_folder_dataset(name):
        raise DataError(
            f"unknown dataset {name!r}: choose from {', '.join(DATASET_NAMES)}, or give a folder holding "
            "the four IDX files"
        )


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}: choose train or test")


def find_in(folder: Path, name: str, file_name: str) -> Path | None:
    """The file (.gz or raw) in `folder` or `folder/name`, if there."""
    for directory in (folder, folder / name):
        for candidate in (file_name, file_name.removesuffix(".gz")):
            if (directory / candidate).exists():
                return directory / candidate
    return None


def offline_help(name: str, n) -> str:
    """How to get `name` without a network; `n` names the options (gpunn.errors.Options)."""
    return (
        f"get the {name} files with `gpunn data download --dataset {name}` on a connected machine and copy "
        f"{cache_dir() / name} here, or point {n('data_dir')} / GPUNN_DATA_DIR at a folder with the four IDX "
        f".gz files; {n('dataset', 'digits')} needs no files at all"
    )


def locate(name: str, split: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> dict:
    """Paths of the images and labels files for `split`, downloading into the cache if allowed."""
    source = SOURCES[name]
    explicit = data_dir if data_dir is not None else os.environ.get("GPUNN_DATA_DIR")
    paths = {}
    for kind in ("images", "labels"):
        file_name = FILES[(split, kind)]
        if explicit:
            found = find_in(Path(explicit), name, file_name)
            if found is None:
                raise DataError(
                    Options(
                        lambda n, file_name=file_name: (
                            f"{file_name} not found in {explicit} "
                            f"({n('data_dir') if data_dir is not None else 'GPUNN_DATA_DIR'}) nor in its "
                            f"{name}/ subfolder"
                        )
                    )
                )
        else:
            found = find_in(cache_dir(), name, file_name)
            if found is None and not download:
                raise DataError(
                    Options(
                        lambda n: f"{name} is not in the cache {cache_dir() / name}; {offline_help(name, n)}"
                    )
                )
            if found is None:
                try:
                    found = download_file(
                        file_name, source.sha256[file_name], cache_dir() / name, mirrors_for(source)
                    )
                except DataError as exc:
                    why = str(exc)
                    raise DataError(
                        Options(
                            lambda n, why=why: (
                                f"{name} is not available offline ({why}); {offline_help(name, n)}"
                            )
                        )
                    ) from None
        paths[kind] = found
    return paths


def load_dataset(
    name: str, split: str = "train", data_dir: str | os.PathLike | None = None, download: bool = True
) -> Dataset:
    """Images (uint8) and labels (int64) of `name` ('mnist', 'fashion-mnist', 'digits' or a folder of IDX
    files) and `split`."""
    _check_name(name)
    _check_split(split)
    if name == "digits":
        return load_digits(split)
    if is_folder_dataset(name):
        return load_folder(Path(name), split)
    paths = locate(name, split, data_dir, download)
    files = _fingerprints(paths)
    for kind, path in paths.items():
        _check_identity(path, files[kind]["sha256"], name, split, kind)
    images, labels = _read_pair(paths)
    class_names = SOURCES[name].class_names
    if labels.size and int(labels.max()) >= len(class_names):
        raise DataError(f"{paths['labels']}: label {int(labels.max())} is outside [0, {len(class_names)})")
    return Dataset(name, split, images, labels, class_names, files)


def _fingerprints(paths: dict) -> dict:
    return {kind: {"path": str(path.resolve()), "sha256": sha256_of(path)} for kind, path in paths.items()}


def _read_pair(paths: dict) -> tuple[np.ndarray, np.ndarray]:
    """(images, int64 labels) of one split, checked to match and to hold at least one pixel."""
    images = read_idx(paths["images"], "images")
    labels = read_idx(paths["labels"], "labels").astype(np.int64)
    if len(images) != len(labels):
        raise DataError(
            f"{paths['images']} has {len(images)} images but {paths['labels']} has {len(labels)} labels"
        )
    if len(images) == 0 or images[0].size == 0:
        raise DataError(
            f"{paths['images']} holds no usable images (shape {images.shape}): a dataset needs at least one "
            "image of at least one pixel"
        )
    return images, labels


def load_folder(folder: Path, split: str) -> Dataset:
    """A dataset of any IDX files: classes counted from both splits' labels, 1-based labels shifted to 0."""
    paths = {key: find_in(folder, "", file_name) for key, file_name in FILES.items()}
    missing = [FILES[key].removesuffix(".gz") for key, path in paths.items() if path is None]
    if missing:
        raise DataError(
            f"{folder}: {', '.join(missing)} (or .gz) missing; a dataset folder holds all four of "
            f"{', '.join(f.removesuffix('.gz') for f in FILES.values())}"
        )
    both = np.concatenate([read_idx(paths[(s, "labels")], "labels") for s in ("train", "test")])
    first = 1 if both.size and int(both.min()) == 1 else 0  # EMNIST letters: 1..26
    count = int(both.max()) + 1 - first if both.size else 0
    if count < 2:
        raise DataError(f"{folder}: the labels name {count} class(es); a classifier needs at least two")
    mine = {kind: paths[(split, kind)] for kind in ("images", "labels")}
    images, labels = _read_pair(mine)
    return Dataset(
        folder.name, split, images, labels - first, _class_names(folder, first, count), _fingerprints(mine)
    )


def _class_names(folder: Path, first: int, count: int) -> tuple[str, ...]:
    """Names from CLASS_NAMES_FILE (one per line), else the original labels as text."""
    path = folder / CLASS_NAMES_FILE
    if not path.is_file():
        return tuple(str(first + i) for i in range(count))
    try:
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: unreadable ({exc}); it should be UTF-8 text, one class name per line"
        ) from None
    if len(names) != count:
        raise DataError(
            f"{path}: {len(names)} names for {count} classes (labels {first}..{first + count - 1}): "
            "give one name per line, in label order"
        )
    return names


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _official_files() -> dict[str, tuple[str, str]]:
    """sha256 -> (dataset, file name without .gz) of every official file."""
    return {
        digest: (source.name, file_name.removesuffix(".gz"))
        for source in SOURCES.values()
        for file_name, digest in source.sha256.items()
    }


def _check_identity(path: Path, digest: str, name: str, split: str, kind: str) -> None:
    """An official file of another dataset, split or kind is refused; files of unknown origin are allowed."""
    known = _official_files().get(digest)
    wanted = (name, FILES[(split, kind)].removesuffix(".gz"))
    if known is None or known == wanted:
        return
    other = next(key for key, file_name in FILES.items() if file_name.removesuffix(".gz") == known[1])
    raise DataError(
        f"{path} is the official {known[0]} {other[0]} {other[1]} file, not the {name} {split} {kind}: "
        f"check which folder the data comes from and that train and test files are not swapped"
    )


def load_digits(split: str) -> Dataset:
    """scikit-learn's bundled 8x8 digits (pixels 0..16 rescaled to uint8 0..255), a fixed stratified split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    _check_split(split)
    digits = sk_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=0
    )
    x, y = (train_x, train_y) if split == "train" else (test_x, test_y)
    names = tuple(str(d) for d in digits.target_names)
    return Dataset("digits", split, np.ascontiguousarray(x), y, names)
