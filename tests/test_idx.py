"""The IDX reader: good files round-trip; every malformation is a DataError naming the file."""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from idx_files import idx_bytes, images, labels, write

from gpunn.data.idx import read_idx
from gpunn.errors import DataError


@pytest.mark.parametrize("gz", [False, True])
def test_good_files_round_trip(tmp_path, gz):
    pics, tags = images(), labels()
    np.testing.assert_array_equal(read_idx(write(tmp_path / "i", idx_bytes(pics), gz), "images"), pics)
    got = read_idx(write(tmp_path / "l", idx_bytes(tags), gz), "labels")
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, tags)


def bad_cases():
    pics, tags = images(), labels()
    good = idx_bytes(pics)
    return {
        "bad magic": (idx_bytes(pics, zero_bytes=b"\x12\x34"), "images", "bad magic"),
        "dtype code": (idx_bytes(pics, dtype_code=0x0D), "images", "dtype code 0x0d"),
        "truncated payload": (good[:-7], "images", "truncated"),
        "extra bytes": (good + b"\x00\x01", "images", "extra bytes"),
        "labels magic for images": (idx_bytes(tags), "images", "magic 0x00000801"),
        "wrong dims for labels": (idx_bytes(pics.reshape(3, 20)), "labels", "magic 0x00000802"),
        "wrong dims for images": (idx_bytes(pics.reshape(3, 20)), "images", "magic 0x00000802"),
        "header only": (good[:6], "images", "truncated"),
        "huge dims": (idx_bytes(pics[:0], dims=(60000, 28, 28)), "images", "truncated"),
        "zero dims": (b"\x00\x00\x08\x00", None, "zero dimensions"),
    }


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case", list(bad_cases()))
def test_malformed_files_raise_data_error_with_the_name(tmp_path, case, gz):
    data, kind, message = bad_cases()[case]
    path = write(tmp_path / f"bad-{case.replace(' ', '_')}", data, gz)
    with pytest.raises(DataError, match=message) as err:
        read_idx(path, kind)
    assert str(path) in str(err.value)


def test_corrupt_gzip(tmp_path):
    good = gzip.compress(idx_bytes(images()), mtime=0)
    broken = good[:12] + bytes(b ^ 0xFF for b in good[12:30]) + good[30:]
    path = write(tmp_path / "corrupt.gz", broken)
    with pytest.raises(DataError, match="corrupt") as err:
        read_idx(path, "images")
    assert "corrupt.gz" in str(err.value)


def test_truncated_gzip(tmp_path):
    good = gzip.compress(idx_bytes(images(50)), mtime=0)
    with pytest.raises(DataError, match="truncated.gz"):
        read_idx(write(tmp_path / "truncated.gz", good[: len(good) // 2]), "images")


def test_empty_file_directory_and_missing(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_idx(write(tmp_path / "empty", b""))
    (tmp_path / "adir").mkdir()
    with pytest.raises(DataError, match="adir: is a directory"):
        read_idx(tmp_path / "adir")
    with pytest.raises(DataError, match="nothere: file not found"):
        read_idx(tmp_path / "nothere")


def lying_gzip_trailer(data: bytes, claimed: int) -> bytes:
    blob = gzip.compress(data, mtime=0)
    return blob[:-4] + struct.pack("<I", claimed)


@pytest.mark.parametrize(
    "blob",
    [
        idx_bytes(images(1), dims=(60000, 28, 28)),  # header claims 47 MB, 20 bytes follow
        lying_gzip_trailer(idx_bytes(images(1), dims=(60000, 28, 28)), 47_040_016),  # trailer lies too
    ],
    ids=["raw", "gzip-with-lying-trailer"],
)
def test_lying_headers_do_not_allocate_the_claimed_size(tmp_path, blob):
    path = write(tmp_path / "liar", blob)
    tracemalloc.start()
    try:
        with pytest.raises(DataError):
            read_idx(path, "images")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the raw file's size bounds the payload; a gzip file can inflate at most 1032-fold (deflate's limit)
    assert peak < 2_000_000


SEED_FILES = [idx_bytes(images(2, 3, 3)), idx_bytes(labels(6))]


def _read_bytes(blob: bytes):
    fd, name = tempfile.mkstemp()
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        tracemalloc.start()
        try:
            result = read_idx(Path(name))
            peak = tracemalloc.get_traced_memory()[1]
        except DataError:
            return None, 0
        finally:
            tracemalloc.stop()
        return result, peak
    finally:
        os.unlink(name)


def _mutate(seed_index: int, gz: bool, edits: list, cut: int | None):
    blob = bytearray(gzip.compress(SEED_FILES[seed_index], mtime=0) if gz else SEED_FILES[seed_index])
    for position, value in edits:
        if blob:
            blob[position % len(blob)] = value
    if cut is not None:
        blob = blob[: cut % (len(blob) + 1)]
    return bytes(blob)


FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_raise_data_error(blob):
    result, peak = _read_bytes(blob)
    if result is not None:
        assert result.nbytes <= len(blob)


@pytest.mark.slow
@FUZZ
@given(
    st.integers(0, 1),
    st.booleans(),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    st.one_of(st.none(), st.integers(0, 10_000)),
)
def test_fuzz_mutated_files_only_raise_data_error(seed_index, gz, edits, cut):
    blob = _mutate(seed_index, gz, edits, cut)
    result, peak = _read_bytes(blob)
    if result is not None:
        payload_bound = len(gzip.decompress(blob)) if gz else len(blob)
        assert result.nbytes <= payload_bound
        assert peak <= payload_bound + (1 << 20) + 65536
