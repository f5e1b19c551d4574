"""Output that never ends a run with a traceback: OSErrors as one line, a closed stdout as silence."""

from __future__ import annotations

import errno
import os
import sys

_FIXES = {
    errno.EACCES: "choose a folder you can write (or fix its permissions)",
    errno.EPERM: "choose a folder you can write (or fix its permissions)",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.ENOSPC: "the disk is full: free some space or choose another folder",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder where a file is needed: choose a file path",
    errno.ENAMETOOLONG: "shorten the path",
    errno.ENOENT: "check the path",
    errno.EEXIST: "choose another path",
}


def describe_os_error(exc: OSError) -> str:
    """'PATH: Permission denied; choose a folder you can write ...' from any OSError."""
    where = exc.filename if exc.filename is not None else None
    what = exc.strerror or str(exc) or type(exc).__name__
    fix = _FIXES.get(exc.errno, "check the path and the disk")
    return (f"{where}: " if where is not None else "") + f"{what}; {fix}"


def quiet_stdout() -> None:
    """Point stdout at /dev/null, so later prints and the exit-time flush of a closed pipe stay silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass
    sys.stdout = open(os.devnull, "w")  # lives as long as the process
