"""Downloads against a local HTTP server on 127.0.0.1: fallback, checksums, atomic rename, offline help."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from gpunn.data import download as download_module
from gpunn.data.datasets import load_dataset
from gpunn.data.download import download_file
from gpunn.errors import DataError, cli_message

PAYLOAD = bytes(range(256)) * 400
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Mirror(BaseHTTPRequestHandler):
    """/good/, /corrupt/, /truncated/, /missing/ and /hang/ behave as their names say; /real/ serves files."""

    files: dict[str, bytes] = {}
    hits: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode, _, name = self.path.strip("/").partition("/")
        self.hits.append(mode)
        body = self.files.get(name, PAYLOAD) if mode in ("good", "real") else PAYLOAD
        if mode == "missing" or (mode == "real" and name not in self.files):
            self.send_error(404)
            return
        if mode == "hang":
            time.sleep(2.0)
            return
        if mode == "corrupt":
            body = body[:100] + b"X" + body[101:]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "truncated" else body)


@pytest.fixture
def mirror():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Mirror)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Mirror.hits = []
    Mirror.files = {}
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_falls_back_through_bad_mirrors_to_a_good_one(mirror, tmp_path):
    bases = [f"{mirror}/{mode}/" for mode in ("missing", "hang", "corrupt", "truncated", "good")]
    path = download_file("file.gz", SHA, tmp_path, tuple(bases), timeout=0.5)
    assert path.read_bytes() == PAYLOAD
    assert Mirror.hits == ["missing", "hang", "corrupt", "truncated", "good"]
    assert leftovers(tmp_path) == ["file.gz"]  # no temp files left behind


def test_all_mirrors_bad_leaves_nothing_and_names_each(mirror, tmp_path):
    bases = tuple(f"{mirror}/{mode}/" for mode in ("corrupt", "truncated", "missing", "hang"))
    with pytest.raises(DataError) as err:
        download_file("file.gz", SHA, tmp_path, bases, timeout=0.5)
    message = str(err.value)
    assert "checksum mismatch" in message and "truncated" in message and "404" in message
    assert "timed out" in message
    assert leftovers(tmp_path) == []


def test_a_failed_download_keeps_the_file_already_there(mirror, tmp_path):
    (tmp_path / "file.gz").write_bytes(b"what was saved before")
    with pytest.raises(DataError):
        download_file("file.gz", SHA, tmp_path, (f"{mirror}/corrupt/",), timeout=0.5)
    assert (tmp_path / "file.gz").read_bytes() == b"what was saved before"


def test_the_file_appears_only_by_rename_after_the_checksum(mirror, tmp_path, monkeypatch):
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((src, dst, hashlib.sha256(open(src, "rb").read()).hexdigest(), os.path.exists(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(download_module.os, "replace", spy)
    download_file("file.gz", SHA, tmp_path, (f"{mirror}/corrupt/", f"{mirror}/good/"), timeout=0.5)
    assert len(renames) == 1  # the corrupt copy was never renamed in
    src, dst, digest, existed = renames[0]
    assert os.path.dirname(src) == str(tmp_path) and src.endswith(".part")
    assert str(dst) == str(tmp_path / "file.gz") and digest == SHA and not existed


def test_offline_message_says_how_to_get_the_files(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("GPUNN_DATA_DIR", raising=False)
    monkeypatch.setenv("GPUNN_DATA_MIRRORS", f"{mirror}/missing/")
    with pytest.raises(DataError) as err:
        load_dataset("mnist", "test")
    message = cli_message(err.value)  # as the CLI prints it; from Python the options are keywords
    for hint in ("gpunn data download", "--data-dir", "GPUNN_DATA_DIR", "--dataset digits"):
        assert hint in message
    assert "data_dir=" in str(err.value) and "dataset='digits'" in str(err.value)
    assert leftovers(tmp_path / "gpunn" / "mnist") == []


def test_cli_download_then_verify_with_real_files(mirror, tmp_path, data_root):
    for name in os.listdir(data_root / "mnist"):
        if name.endswith(".gz"):
            Mirror.files[name] = (data_root / "mnist" / name).read_bytes()
    env = {
        **os.environ,
        "XDG_CACHE_HOME": str(tmp_path),
        "GPUNN_DATA_MIRRORS": f"{mirror}/missing/,{mirror}/real/",
    }
    env.pop("GPUNN_DATA_DIR", None)
    run = [sys.executable, "-m", "gpunn", "data"]
    result = subprocess.run([*run, "download", "--dataset", "mnist"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("downloaded, checksum OK") == 4
    again = subprocess.run([*run, "download", "--dataset", "mnist"], capture_output=True, text=True, env=env)
    assert again.stdout.count("already present") == 4
    verify = subprocess.run([*run, "verify"], capture_output=True, text=True, env=env)
    assert verify.returncode == 0 and "4 passed, 0 failed" in verify.stdout
    assert len(load_dataset("mnist", "test", data_dir=tmp_path / "gpunn")) == 10000


def test_cli_download_offline_is_one_line_and_non_zero(mirror, tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "GPUNN_DATA_MIRRORS": f"{mirror}/missing/"}
    result = subprocess.run(
        [sys.executable, "-m", "gpunn", "data", "download"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
