"""Where a run's data came from: recorded in its config.json and checkpoint, used again on resume/evaluate.

A run that trained on `--data-dir D` must not forget D: `gpunn train --resume`, `gpunn evaluate` and the
hint printed after Ctrl-C would otherwise look in the cache (and try to download, failing offline).
The SHA-256 of every file is kept too, so data that changed since is refused instead of used silently.
"""

from __future__ import annotations

from pathlib import Path

from gpunn.errors import DataError, Options


def record(*datasets) -> dict:
    """{"dir": folder of the files, "files": {file name: sha256}}; {"arrays": {split: fingerprint}} for arrays
    given in memory; {} for built-in data (digits)."""
    arrays = {d.split: d.fingerprint for d in datasets if getattr(d, "fingerprint", None)}
    if arrays:
        return {"arrays": arrays}
    files = {Path(f["path"]).name: f["sha256"] for d in datasets for f in d.files.values()}
    if not files:
        return {}
    first = next(f["path"] for d in datasets for f in d.files.values())
    return {"dir": str(Path(first).parent), "files": files}


def where_to_load(dataset: str, saved: dict | None, given, run) -> tuple[str, str | None]:
    """(dataset for load_dataset, its data_dir) of a run that recorded `saved`: what was `given` (--data-dir)
    first, else the folder the run recorded. A recorded folder that is gone is an error saying so and
    naming --data-dir (given its new place, the files' checksums still have to match), never a quiet
    read of other files; only the cache, which a download refills, may be gone."""
    from gpunn.data.arrays import ARRAYS
    from gpunn.data.datasets import cache_dir
    from gpunn.data.sources import DATASET_NAMES

    if dataset == ARRAYS:  # no file to read again: the arrays lived in the Python process that trained
        raise DataError(
            Options(
                lambda n: (
                    f"{run} was trained on arrays given to gpunn.train(data=...): there is no file to read "
                    f"its test data from; name one with {n('dataset')} (a dataset or a folder of IDX files)"
                )
            )
        )
    recorded = saved.get("dir") if saved else None
    if dataset not in DATASET_NAMES:  # a folder of IDX files: the folder is the dataset
        if given is not None:
            return str(given), None
        for folder in (dataset, recorded):
            if folder and Path(folder).is_dir():
                return str(folder), None
        raise _moved(dataset, run)
    if given is not None or not recorded:
        return dataset, given
    if Path(recorded).is_dir():
        return dataset, recorded
    if Path(recorded) in (cache_dir() / dataset, cache_dir()):
        return dataset, None
    raise _moved(recorded, run)


def _moved(folder, run) -> DataError:
    return DataError(
        Options(
            lambda n: (
                f"the data folder {folder} that {run} was trained on is gone (moved or deleted?): "
                f"give its new place with {n('data_dir')} (its files must be the same)"
            )
        )
    )


def check_unchanged(saved: dict | None, run, *datasets) -> None:
    """Refuse data whose files (or in-memory arrays) differ from the ones the run recorded."""
    for dataset in datasets:
        expected = (saved or {}).get("arrays", {}).get(dataset.split)
        given = getattr(dataset, "fingerprint", None)
        if expected is not None and given != expected:
            raise DataError(
                f"the {dataset.split} arrays are not the ones run {run} was trained on (fingerprint "
                f"{(given or 'none')[:12]}..., recorded {expected[:12]}...): resume it with the same arrays"
            )
    if not saved or not saved.get("files"):
        return
    for dataset in datasets:
        for info in dataset.files.values():
            name = Path(info["path"]).name
            expected = saved["files"].get(name)
            if expected is not None and expected != info["sha256"]:
                raise DataError(
                    f"{info['path']} is not the file run {run} was trained on (sha256 {info['sha256'][:12]}..., "
                    f"recorded {expected[:12]}... from {saved.get('dir')}): point the data folder at the "
                    "original files"
                )
