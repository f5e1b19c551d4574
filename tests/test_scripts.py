"""The benchmark and gpu-check scripts keep working (a smoke: nothing here asserts speed)."""

from __future__ import annotations

import json
import statistics
from importlib.util import find_spec
from pathlib import Path

import pytest
from script_modules import run_script

from gpunn.backend.cuda_probe import cuda_status

pytestmark = pytest.mark.subprocess  # runs scripts/ as processes (gpu-check, bench, accuracy)

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_runs_each_worker_alone_and_summarises_its_recorded_times(tmp_path):
    out = tmp_path / "bench.json"
    done = run_script("bench.py", "--quick", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    expected = {"gpunn numpy", "gpunn train epoch", "classic numpy (float64)", "sklearn MLPClassifier"}
    expected |= {"pytorch eager cpu"} if find_spec("torch") else set()
    expected |= {"jax jit cpu"} if find_spec("jax") else set()
    assert set(result["rows"]) == expected
    rounds = result["rounds"]
    assert len(rounds) == 2 and all(set(r) == expected for r in rounds)
    first, second = (list(r) for r in rounds)
    assert second == first[1:] + first[:1]  # round 2 runs the same list rotated by one
    workers = [w for r in rounds for w in r.values()]
    assert len({w["pid"] for w in workers}) == len(workers)  # every measurement in a process of its own
    for w in workers:
        assert len(w["epochs_s"]) == 2 and all(t > 0 for t in w["epochs_s"])
        assert w["threads"]["threadpools"] and "OMP_NUM_THREADS" in w["threads"]["env"]
        assert w["versions"]["numpy"] and w["peak_rss_mb"] > 0
    for name, row in result["rows"].items():  # the rows and ratios come from the recorded times
        every = [t for r in rounds for t in r[name]["epochs_s"]]
        assert row["epoch_s"]["median"] == pytest.approx(statistics.median(every))
        assert (row["epoch_s"]["min"], row["epoch_s"]["max"]) == (min(every), max(every))
    ours = [statistics.median(r["gpunn numpy"]["epochs_s"]) for r in rounds]
    for name in expected - {"gpunn numpy"}:
        theirs = [statistics.median(r[name]["epochs_s"]) for r in rounds]
        per_round = result["ratios"][f"gpunn numpy / {name}"]["per_round"]
        assert per_round == pytest.approx([a / b for a, b in zip(ours, theirs, strict=True)])
    # the GEMMs gpunn does per sample: forward and dW of 784x128, 128x64, 64x10, dX of the last two only
    flops = 2 * (2 * (784 * 128 + 128 * 64 + 64 * 10) + (128 * 64 + 64 * 10))
    roof = result["roofline"]
    assert roof["gemm_gflop_per_epoch"] == pytest.approx(flops * result["setup"]["samples_per_epoch"] / 1e9)
    peak_times = [roof["gemm_gflop_per_epoch"] / r["gpunn numpy"]["sgemm_peak_gflops"] for r in rounds]
    assert roof["gpunn numpy / sgemm peak"]["per_round"] == pytest.approx(
        [a / b for a, b in zip(ours, peak_times, strict=True)]
    )
    gemms = [statistics.median(r["gpunn numpy"]["own_gemms_epoch_s"]) for r in rounds]
    assert roof["gpunn numpy / own gemms"]["per_round"] == pytest.approx(
        [a / b for a, b in zip(ours, gemms, strict=True)]
    )
    assert "versions: " in done.stdout and "gpunn numpy / own gemms" in done.stdout
    table = run_script("bench.py", "--table", str(out))
    assert table.returncode == 0 and "| gpunn: the `train_step`" in table.stdout
    again = run_script("bench.py", "--quick", "--out", out)  # an existing file is replaced only with --force
    assert again.returncode == 1 and again.stderr.strip().endswith("or --out another file")
    assert "Traceback" not in again.stderr and json.loads(out.read_text()) == result


def test_sklearn_compare_quick_scores_both_libraries_alike(tmp_path):
    out = tmp_path / "compare.json"
    done = run_script("sklearn_compare.py", "--quick", "--seeds", "0", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    tasks = json.loads(out.read_text())["tasks"]
    assert {"digits", "breast_cancer", "tfidf_text", "regression"} <= set(tasks)
    for name, row in tasks.items():  # float64 data: the same training, so the same score up to rounding
        assert row["gpunn"]["mean"] == pytest.approx(row["scikit-learn"]["mean"], abs=0.01), name
        assert row["gpunn"]["mean_fit_seconds"] > 0


@pytest.mark.skipif(cuda_status(0)[0], reason="this checks the report of a machine without a usable GPU")
def test_gpu_check_without_a_gpu_reports_why_and_fails(tmp_path):
    done = run_script("gpu-check", "--quick", "--out-dir", str(tmp_path), cwd=ROOT)
    assert done.returncode == 1
    report = json.loads(next(tmp_path.glob("gpu-check-*.json")).read_text())
    parts = report["parts"]
    assert parts["gpunn info"]["ok"] and parts["bench"]["ok"]  # the CPU parts still report fine
    assert not parts["pytest -m gpu"]["ok"] and not parts["cpu-vs-gpu parity"]["ok"]
    assert not report["gpu"]["usable"] and report["gpu"]["reason"]
    assert "failed" in (next(tmp_path.glob("gpu-check-*.txt")).read_text().splitlines()[-1])


def test_accuracy_reports_the_validation_chosen_epoch(tmp_path):
    out = tmp_path / "accuracy.json"
    done = run_script(
        "accuracy.py",
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
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(out.read_text())["recipes"]["classic"]["runs"]
    assert run["epochs"] == 20 or run["epochs"] == run["best_epoch"] + 3  # ran out or stopped early
    assert json.loads(out.read_text())["recipes"]["classic"]["mean"] == run["chosen_test_accuracy"]
    assert f"epoch {run['best_epoch']} chosen on validation" in done.stdout
