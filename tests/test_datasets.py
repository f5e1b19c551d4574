"""Datasets: real MNIST/Fashion-MNIST files (when present), digits offline, verify, load memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from idx_files import idx_bytes, images, write

from gpunn.backend import get_backend
from gpunn.data import load_dataset
from gpunn.errors import DataError

ROOT = Path(__file__).resolve().parents[1]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_files_shapes_and_counts(data_root, name):
    train = load_dataset(name, "train", data_dir=data_root)
    test = load_dataset(name, "test", data_dir=data_root / name)  # the dataset folder itself works too
    assert train.images.shape == (60000, 28, 28) and test.images.shape == (10000, 28, 28)
    assert train.images.dtype == np.uint8 and test.images.dtype == np.uint8
    assert train.features.shape == (60000, 784) and np.shares_memory(train.features, train.images)
    counts = np.bincount(test.labels, minlength=10).tolist()
    assert counts == (MNIST_TEST_COUNTS if name == "mnist" else [1000] * 10)
    assert len(test.class_names) == 10


def test_verify_reports_ok_on_the_official_files(data_root):
    result = subprocess.run(
        [sys.executable, "-m", "gpunn", "data", "verify", "--data-dir", str(data_root / "mnist")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout
    assert "4 passed, 0 failed" in result.stdout and "sha256 matches" in result.stdout
    assert "[980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]" in result.stdout


def test_loading_mnist_adds_at_most_70_mb(data_root):
    script = ROOT / "scripts" / "measure_load_memory.py"
    out = subprocess.run(
        [sys.executable, str(script), str(data_root)], capture_output=True, text=True, check=True
    )
    measured = json.loads(out.stdout)
    assert measured["added_peak_rss_mb"] <= 70, measured


def test_verify_flags_a_wrong_file(tmp_path):
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(5)), gz=True)
    result = subprocess.run(
        [sys.executable, "-m", "gpunn", "data", "verify", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "not the official mnist file" in result.stdout and "missing" in result.stdout


def test_a_bad_file_in_data_dir_is_a_data_error_naming_it(tmp_path):
    write(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(images())[:-3], gz=True)
    write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(3)), gz=True)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: truncated"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_missing_files_in_an_explicit_folder_do_not_go_to_the_network(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUNN_DATA_MIRRORS", "http://127.0.0.1:9/")
    with pytest.raises(DataError, match=r"not found in .* \(data_dir=\)"):  # from Python: the keyword
        load_dataset("mnist", "test", data_dir=tmp_path)
    monkeypatch.setenv("GPUNN_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match=r"\(GPUNN_DATA_DIR\)"):
        load_dataset("mnist", "test")


def test_unknown_names_and_splits():
    with pytest.raises(DataError, match="choose from mnist, fashion-mnist, digits"):
        load_dataset("cifar")
    with pytest.raises(DataError, match="train or test"):
        load_dataset("digits", "valid")


def test_digits_split_is_fixed_stratified_and_disjoint():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test")
    again = load_dataset("digits", "test")
    assert len(train) + len(test) == 1797 and len(test) == 360
    np.testing.assert_array_equal(test.images, again.images)
    test_counts = np.bincount(test.labels, minlength=10)
    assert test_counts.min() >= 35 and test_counts.max() <= 37  # ~36 per class: stratified
    assert train.images.dtype == np.uint8 and train.images.max() == 255
    train_rows = {row.tobytes() for row in train.features}
    overlap = sum(row.tobytes() in train_rows for row in test.features)
    assert overlap < 10  # only the few genuinely duplicated digits can coincide


def test_scaling_to_unit_interval_happens_in_the_backend(backend):
    pixels = np.array([[0, 51, 255]], dtype=np.uint8)
    scaled = backend.to_host(backend.scale_images(backend.from_host(pixels)))
    np.testing.assert_allclose(scaled, [[0.0, 0.2, 1.0]], rtol=1e-6)
    assert scaled.dtype == np.dtype(get_backend("cpu", backend.dtype_name).dtype)


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "case",
    [
        "bad magic",
        "dtype code",
        "truncated payload",
        "extra bytes",
        "label out of range",
        "corrupt gzip",
        "empty",
        "directory",
    ],
)
def test_every_bad_file_is_one_line_and_non_zero_from_the_cli(tmp_path, case):
    import gzip
    import subprocess
    import sys

    from idx_files import labels

    pics = images(4, 28, 28)
    good = {
        "train-images-idx3-ubyte.gz": idx_bytes(pics),
        "train-labels-idx1-ubyte.gz": idx_bytes(labels(4)),
        "t10k-images-idx3-ubyte.gz": idx_bytes(pics),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(labels(4)),
    }
    for name, data in good.items():
        write(tmp_path / name, data, gz=True)
    target = tmp_path / (
        "train-labels-idx1-ubyte.gz" if case == "label out of range" else "train-images-idx3-ubyte.gz"
    )
    broken = {
        "bad magic": lambda: write(target, b"\x12\x34" + idx_bytes(pics)[2:], gz=True),
        "dtype code": lambda: write(target, idx_bytes(pics, dtype_code=0x0C), gz=True),
        "truncated payload": lambda: write(target, idx_bytes(pics)[:-5], gz=True),
        "extra bytes": lambda: write(target, idx_bytes(pics) + b"\x00", gz=True),
        "label out of range": lambda: write(target, idx_bytes(np.array([1, 2, 12, 3])), gz=True),
        "corrupt gzip": lambda: target.write_bytes(gzip.compress(idx_bytes(pics))[:40] + b"\xff" * 64),
        "empty": lambda: target.write_bytes(b""),
        "directory": lambda: (target.unlink(), target.mkdir()),
    }
    broken[case]()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpunn",
            "train",
            "--data-dir",
            str(tmp_path),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and target.name in lines[0] and "Traceback" not in done.stderr, done.stderr
