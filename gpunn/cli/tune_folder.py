"""A tune folder: OUT/tune.json names the study and its storage (null: OUT/study.db), and records the
setup its trials share; OUT/trial-NNNN are the trials' run folders, OUT/best.json the best of them.

A folder is taken for a tune only when it is new, empty, or the tune folder of the same study (a rerun
continues it; several processes may share it): anything else is refused before anything is made.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from gpunn.cli.tune_storage import (
    DEFAULT_FILE,
    StorageSpec,
    check_reachable,
    default_storage,
    open_storage,
    optuna_module,
    optuna_quiet,
)
from gpunn.errors import GpunnError, RunFolderError

TUNE_FILE = "tune.json"  # marks a tune folder: the study's name and storage, the setup its trials share


def is_tune_folder(folder: Path) -> bool:
    return (Path(folder) / TUNE_FILE).is_file()


def load_study_of(folder: Path):
    """The study of a tune folder, read from the storage its tune.json names (nothing is created)."""
    from gpunn.cli.tune_storage import parse_storage

    optuna = optuna_module(f"{folder}, a tune folder,")
    saved = _read_marker(Path(folder) / TUNE_FILE)
    spec = default_storage(Path(folder)) if saved.get("storage") is None else parse_storage(saved["storage"])
    with optuna_quiet(optuna):
        storage = open_storage(spec, create=False)
        try:
            return optuna.load_study(study_name=saved["study"], storage=storage)
        except KeyError:
            raise GpunnError(
                f"{spec.url} holds no study {saved['study']!r} (the one {folder}/{TUNE_FILE} names)"
            ) from None


def check_folder(out: Path | None, storage: StorageSpec | None, study: str) -> None:
    """OUT is new, empty, or the tune folder of this same study; checked before anything is made."""
    if storage is not None:
        check_reachable(storage)
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file: choose a folder")
    marker = out / TUNE_FILE
    if marker.is_file():
        _check_same_study(out, _read_marker(marker), storage, study)
    elif out.is_dir() and not all(_tune_file_being_written(entry) for entry in out.iterdir()):
        raise RunFolderError(f"--out {out} already holds files and is no tune folder: choose another --out")


def _tune_file_being_written(entry: Path) -> bool:
    """The temp file of another process's atomic write of tune.json (gpunn.atomic.atomic_writer's name):
    a process that starts with it in the folder is joining a tune that is being set up, not a foreign folder."""
    return entry.name.startswith(f".{TUNE_FILE}.") and entry.name.endswith(".tmp")


def _read_marker(marker: Path) -> dict:
    try:
        saved = json.loads(marker.read_text())
        if not isinstance(saved, dict) or not isinstance(saved.get("study"), str):
            raise ValueError("no study name")
    except (ValueError, OSError) as exc:
        raise RunFolderError(f"{marker} is damaged ({exc}): choose another --out") from None
    return saved


def _check_same_study(out: Path, saved: dict, storage: StorageSpec | None, study: str) -> None:
    asked = None if storage is None else storage.url
    if saved["study"] != study or saved.get("storage") != asked:
        where = "--storage " + saved["storage"] if saved.get("storage") else "the folder's own study.db"
        raise RunFolderError(
            f"{out} is the tune folder of study {saved['study']!r} in {where}: continue it with "
            f"--study {saved['study']}"
            + (f" --storage {saved['storage']}" if saved.get("storage") else "")
            + ", or choose another --out"
        )


@contextlib.contextmanager
def tune_folder(out: Path | None, storage: StorageSpec | None, study: str, setup: dict):
    """Create the tune folder (a new runs/tune-<time> without --out) and its tune.json, or join it.

    The body opens the study; if that fails, what this process made (the folder, tune.json, the default
    study.db) is taken away again, so a storage that cannot be opened leaves nothing behind."""
    from gpunn.atomic import atomic_writer
    from gpunn.training.runlock import unique_folder

    new_folder = out is None or not out.exists()
    new_parent = out is None and not Path("runs").exists()
    if out is None:
        out = unique_folder(Path("runs"), f"tune-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    marker = out / TUNE_FILE
    text = json.dumps({"study": study, "storage": None if storage is None else storage.url, "setup": setup})
    made = []
    try:
        try:
            # two processes starting at once: one writes tune.json, the other checks it names this study
            with atomic_writer(marker, "w", replace=False) as fh:
                fh.write(text + "\n")
            made.append(marker)
            if storage is None and not (out / DEFAULT_FILE).exists():
                made.append(out / DEFAULT_FILE)
        except FileExistsError:
            _check_same_study(out, _read_marker(marker), storage, study)
        yield out
    except BaseException:
        for path in made:
            with contextlib.suppress(OSError):
                path.unlink()
        for folder in [out] * new_folder + [out.parent] * new_parent:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
