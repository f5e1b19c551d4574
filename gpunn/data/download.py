"""Downloads that cannot poison the cache: each file streams into a temp file beside its final place,
its SHA-256 is checked, and only then is it fsynced and renamed in. Mirrors are tried in turn."""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from gpunn.atomic import install
from gpunn.errors import DataError

CHUNK = 1 << 16
DEFAULT_TIMEOUT = 30.0


def mirrors_for(source) -> tuple[str, ...]:
    """GPUNN_DATA_MIRRORS (comma-separated base URLs) replaces the built-in list, e.g. for a local mirror."""
    env = os.environ.get("GPUNN_DATA_MIRRORS")
    return tuple(u.strip() for u in env.split(",") if u.strip()) if env else source.mirrors


def _progress(total: int | None, label: str):
    """A tqdm bar on a TTY, nothing otherwise (logs stay clean)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=label, leave=False)


def _fetch_to(url: str, fh, timeout: float, label: str) -> str:
    """Stream `url` into the open file `fh`; return the SHA-256 of what arrived."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        bar = _progress(expected, label)
        received = 0
        try:
            while chunk := response.read(CHUNK):
                fh.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
    if expected is not None and received != expected:
        raise DataError(f"truncated: received {received} of {expected} bytes")
    return digest.hexdigest()


def _describe(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    if isinstance(exc, http.client.IncompleteRead):
        return f"truncated: received {len(exc.partial)} bytes, {exc.expected} more expected"
    return str(exc) or type(exc).__name__


def download_file(
    file_name: str,
    sha256: str,
    dest_dir: Path,
    mirrors: tuple[str, ...],
    timeout: float = DEFAULT_TIMEOUT,
    replace: bool = True,
) -> Path:
    """Fetch `file_name` from the first mirror that serves it with the right checksum into `dest_dir`.

    replace=False: a file that is already there (or appears meanwhile) is kept, FileExistsError."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / file_name
    failures = []
    for base in mirrors:
        url = base.rstrip("/") + "/" + file_name
        fd, temp_name = tempfile.mkstemp(prefix=f".{file_name}.", suffix=".part", dir=dest_dir)
        try:
            with os.fdopen(fd, "wb") as fh:
                got = _fetch_to(url, fh, timeout, file_name)
                if got != sha256:
                    raise DataError(f"checksum mismatch (sha256 {got[:12]}..., expected {sha256[:12]}...)")
                fh.flush()
                os.fsync(fh.fileno())
            install(temp_name, final, replace)
            return final
        except FileExistsError:
            raise
        except (OSError, http.client.HTTPException, DataError, ValueError) as exc:
            failures.append(f"{url}: {_describe(exc)}")
        finally:
            if os.path.exists(temp_name):
                os.unlink(temp_name)
    raise DataError(f"could not download {file_name}; " + "; ".join(failures))
