"""One writer per run folder: a run claims its folder before writing anything into it.

The claim is an exclusive flock on the folder itself (no lock file: a refused run changes no byte of a
folder that already exists, and the kernel drops the lock when its process dies, so a crashed or killed
run never leaves a folder stuck). A new run also needs a folder that holds no run yet: one without a saved
position (checkpoint.npz, metrics.jsonl). A folder whose run stopped before its first save (config.json
alone, after a SIGKILL in epoch 1) is reused by the next run there, as `--resume` of it says. Default folder
names are created with an atomic mkdir and made unique with a -2, -3, ... suffix when taken.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from gpunn.errors import Options, RunFolderError
from gpunn.outputs import holds_run


def unique_folder(parent: Path, stem: str) -> Path:
    """Create and return parent/stem, or parent/stem-2, -3, ...: mkdir is atomic, so no two callers share one."""
    parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        candidate = parent / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise RunFolderError(f"{parent}: no free folder name starting with {stem}; choose a folder yourself")


def default_run_folder(dataset: str, parent: Path = Path("runs")) -> Path:
    return unique_folder(parent, f"{dataset}-{time.strftime('%Y%m%d-%H%M%S')}")


def remove_stale_temp_files(folder: Path) -> None:
    """Temp files of atomic writes that a SIGKILL cut short (only safe while holding the claim)."""
    for temp in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            temp.unlink()


def _holds_run(folder: Path) -> RunFolderError:
    return RunFolderError(
        Options(
            lambda n: (
                f"{folder} already holds a run: continue it with {n('resume', folder)} "
                f"or choose another {n('out')}"
            )
        )
    )


@contextlib.contextmanager
def claim(folder: Path, resuming: bool, created: bool = False) -> Iterator[Path]:
    """Hold `folder` exclusively for one run; refuse a new run in a folder that already holds one.

    A folder created for this run (here, or by the caller: `created`) is removed if it is still empty
    when the run ends, so a run that failed early leaves nothing behind."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(
            Options(lambda n: f"{folder} is a file, not a folder: choose another {n('out')}")
        )
    if not resuming and holds_run(folder):
        raise _holds_run(folder)
    created = created or not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(
                Options(
                    lambda n: (
                        f"{folder} is being written by another gpunn process right now: wait for it to "
                        f"finish{'' if resuming else ', or choose another ' + n('out')}"
                    )
                )
            ) from None
        if not resuming and holds_run(folder):  # another run finished in it between the check and the lock
            raise _holds_run(folder)
        yield folder
    finally:
        if created:  # a run that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        os.close(fd)  # closing the descriptor releases the lock
