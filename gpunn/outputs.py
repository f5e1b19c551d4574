"""The files a command writes for a person (plots, pictures, ONNX exports, downloads) never replace a file
that command did not create.

A run's own files (RUN_FILES, in a folder that holds a run) are never replaced by any other command; any
other existing file only when the person said so (`--force`, `force=True`). The check comes before any
work, and the write itself lands only where no file is (atomic_writer(replace=False)), so a file that
appears meanwhile is not lost either.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from gpunn.atomic import atomic_writer
from gpunn.errors import Options, OutputExistsError

# written by `gpunn train` into its run folder; checkpoint.npz or metrics.jsonl mean a run that saved a position
RUN_FILES = ("config.json", "checkpoint.npz", "metrics.jsonl", "best.npz")
SAVED_RUN_FILES = ("checkpoint.npz", "metrics.jsonl")
# written by `gpunn tune` into its tune folder (the one holding tune.json): never replaced by another command
TUNE_FILES = ("tune.json", "best.json", "best.txt", "study.db")


def holds_run(folder: Path) -> bool:
    """The folder holds a run that saved its position (config.json alone: a run that never did)."""
    return any((Path(folder) / name).exists() for name in SAVED_RUN_FILES)


def is_run_file(path: Path) -> bool:
    path = Path(path)
    return path.name in RUN_FILES and any((path.parent / name).exists() for name in RUN_FILES)


def check_output(path: str | os.PathLike, force: bool = False) -> Path:
    """`path` if this command may write it; else one OutputExistsError naming the file (and the flag)."""
    path = Path(path)
    if path.is_dir():
        raise OutputExistsError(f"{path} is a folder: give the path of a file to write")
    if is_run_file(path):
        raise OutputExistsError(
            f"{path} is a file of the run in {path.parent}, which no other command replaces: choose another path"
        )
    if path.name in TUNE_FILES and (path.parent / "tune.json").exists():
        raise OutputExistsError(
            f"{path} is a file of the tune in {path.parent}, which no other command replaces: choose another path"
        )
    if os.path.lexists(path) and not force:
        raise OutputExistsError(
            Options(
                lambda n: f"{path} already exists: choose another path, or add {n('force')} to replace it"
            )
        )
    return path


@contextlib.contextmanager
def new_file(path: str | os.PathLike, force: bool = False, mode: str = "wb") -> Iterator:
    """check_output, then an atomic write that replaces nothing unless `force` (and never a run's file)."""
    path = check_output(path, force)
    try:
        with atomic_writer(path, mode, replace=force) as fh:
            yield fh
    except FileExistsError:  # it appeared while we were writing
        check_output(path, force=False)
        raise
