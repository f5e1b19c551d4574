"""`gpunn evaluate / predict / sweep / plot` from the command line."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest
from idx_files import idx_bytes

from gpunn.data import load_dataset
from gpunn.training.run import train

pytestmark = pytest.mark.subprocess  # gpunn evaluate/predict/sweep/plot as processes


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "gpunn", *args], capture_output=True, text=True, env=os.environ
    )


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "digits"
    result = train(out=out, dataset="digits", epochs=10, batch_size=32, verbose=False)
    return out, result


def test_evaluate_prints_accuracy_per_class_and_confusion(digits_run):
    out, result = digits_run
    run = cli("evaluate", str(out), "--device", "strict")
    assert run.returncode == 0, run.stderr
    assert f"accuracy {result.test_accuracy:.2%} on 360 samples" in run.stdout
    assert "per-class accuracy" in run.stdout and "confusion matrix" in run.stdout
    rows = [
        line for line in run.stdout.splitlines() if line.strip().split()[:1] and line.split()[0].isdigit()
    ]
    confusion_rows = [r for r in rows if len(r.split()) == 11]
    assert sum(int(v) for r in confusion_rows for v in r.split()[1:]) == 360


def test_predict_npy_and_idx_inputs(digits_run, tmp_path):
    out, _ = digits_run
    test = load_dataset("digits", "test")
    np.save(tmp_path / "three.npy", test.images[:3])
    (tmp_path / "two.idx.gz").write_bytes(gzip.compress(idx_bytes(test.images[3:5])))
    np.save(tmp_path / "floats.npy", test.images[5].astype(np.float32) / 255)
    run = cli(
        "predict",
        str(out),
        str(tmp_path / "three.npy"),
        str(tmp_path / "two.idx.gz"),
        str(tmp_path / "floats.npy"),
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 6
    predicted = [int(line.split(": ")[1].split()[0]) for line in lines]
    assert sum(p == t for p, t in zip(predicted, test.labels[:6], strict=True)) >= 5
    assert all(line.count("%") == 3 for line in lines)  # top-3 with probabilities


def test_predict_png(digits_run, tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="Pillow (the image extra) is not installed")
    out, _ = digits_run
    test = load_dataset("digits", "test")
    Image.fromarray(test.images[0]).save(tmp_path / "digit.png")
    run = cli("predict", str(out), str(tmp_path / "digit.png"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{tmp_path / 'digit.png'}: {test.labels[0]} (")


@pytest.mark.parametrize(
    "content, message",
    [
        (np.zeros((2, 5, 5), dtype=np.uint8), "cannot be read as rows of 64"),
        (np.full((1, 64), 3.0), "in \\[0, 1\\]"),
        (np.array(["a"]), "expected numbers"),
    ],
)
def test_predict_bad_inputs_are_one_line(digits_run, tmp_path, content, message):
    out, _ = digits_run
    np.save(tmp_path / "bad.npy", content)
    run = cli("predict", str(out), str(tmp_path / "bad.npy"))
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    import re

    assert re.search(message, run.stderr)


def test_sweep_runs_each_value_and_prints_a_table(tmp_path):
    run = cli(
        "sweep",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--lr",
        "0.01,0.1",
        "--hidden",
        "32/16,16",
        "--out",
        str(tmp_path / "sw"),
    )
    assert run.returncode == 0, run.stderr
    table = run.stdout[run.stdout.index("setting") :].splitlines()
    assert len([line for line in table if "%" in line]) == 4
    assert len(list((tmp_path / "sw").iterdir())) >= 4


def test_plot_writes_a_png_or_names_the_extra(digits_run, tmp_path):
    out, _ = digits_run
    run = cli("plot", str(out), "--output", str(tmp_path / "c.png"))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert run.returncode == 1 and "gpunn[plot]" in run.stderr
        return
    assert run.returncode == 0 and (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_of_a_folder_without_metrics(tmp_path):
    run = cli("plot", str(tmp_path))
    assert run.returncode == 1 and "no metrics.jsonl" in run.stderr


def test_a_png_of_another_size_names_both_sizes(tmp_path):
    Image = pytest.importorskip("PIL.Image", reason="Pillow (the image extra) is not installed")
    from gpunn.cli.predict_inputs import read_inputs
    from gpunn.errors import DataError

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(path)
    with pytest.raises(DataError) as refused:
        read_inputs(path, 784)
    assert (
        str(refused.value)
        == f"{path}: the image is 64x64, expected 28x28 (the model's 784 inputs): resize it first"
    )
