"""The benchmark and gpu-check scripts keep working (a smoke: nothing here asserts speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpunn.backend.cuda_probe import cuda_status

pytestmark = pytest.mark.subprocess  # runs scripts/ as processes (gpu-check, bench, accuracy)

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_writes_every_cpu_row(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert {"gpunn numpy", "classic numpy (float64)", "sklearn MLPClassifier"} <= set(result["rows"])
    assert all(row["epoch_s"] > 0 and len(row["epochs_s"]) == 2 for row in result["rows"].values())
    # the GEMMs gpunn does per sample: forward and dW of 784x128, 128x64, 64x10, dX of the last two only
    flops = 2 * (2 * (784 * 128 + 128 * 64 + 64 * 10) + (128 * 64 + 64 * 10))
    assert result["gemm_gflop_per_epoch"] == round(flops * result["samples_per_epoch"] / 1e9, 3)
    rate = result["gemm_gflops"]
    assert result["roofline_epoch_s"] == pytest.approx(
        flops * result["samples_per_epoch"] / (rate * 1e9), rel=1e-2
    )
    assert result["versions"]["numpy"] and any(key.startswith("blas") for key in result["versions"])
    assert "roofline" in done.stdout and "x gpunn numpy" in done.stdout and "versions: " in done.stdout


def test_sklearn_compare_quick_scores_both_libraries_alike(tmp_path):
    out = tmp_path / "compare.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "sklearn_compare.py"),
            "--quick",
            "--seeds",
            "0",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    tasks = json.loads(out.read_text())["tasks"]
    assert {"digits", "breast_cancer", "tfidf_text", "regression"} <= set(tasks)
    for name, row in tasks.items():  # float64 data: the same training, so the same score up to rounding
        assert row["gpunn"]["mean"] == pytest.approx(row["scikit-learn"]["mean"], abs=0.01), name
        assert row["gpunn"]["mean_fit_seconds"] > 0


@pytest.mark.skipif(cuda_status(0)[0], reason="this checks the report of a machine without a usable GPU")
def test_gpu_check_without_a_gpu_reports_why_and_fails(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu-check"), "--quick", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 1
    report = json.loads(next(tmp_path.glob("gpu-check-*.json")).read_text())
    parts = report["parts"]
    assert parts["gpunn info"]["ok"] and parts["bench"]["ok"]  # the CPU parts still report fine
    assert not parts["pytest -m gpu"]["ok"] and not parts["cpu-vs-gpu parity"]["ok"]
    assert not report["gpu"]["usable"] and report["gpu"]["reason"]
    assert "failed" in (next(tmp_path.glob("gpu-check-*.txt")).read_text().splitlines()[-1])


def test_accuracy_reports_the_validation_chosen_epoch(tmp_path):
    out = tmp_path / "accuracy.json"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "accuracy.py"),
            "--dataset",
            "digits",
            "--recipes",
            "classic",
            "--seeds",
            "0",
            "--val-size",
            "200",
            "--early-stopping",
            "3",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(out.read_text())["recipes"]["classic"]["runs"]
    assert run["epochs"] == 20 or run["epochs"] == run["best_epoch"] + 3  # ran out or stopped early
    assert json.loads(out.read_text())["recipes"]["classic"]["mean"] == run["chosen_test_accuracy"]
    assert f"epoch {run['best_epoch']} chosen on validation" in done.stdout
