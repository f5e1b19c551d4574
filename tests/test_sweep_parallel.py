"""`gpunn sweep --jobs K` and `--index I`: the same results as the sequential sweep, every run reported."""

from __future__ import annotations

import json

import pytest
from test_train import gpunn_cli
from threadpoolctl import threadpool_limits

from gpunn.cli.sweep import run_sweep
from gpunn.cli.sweep_parallel import cores
from gpunn.training.config import ConfigError

pytestmark = pytest.mark.subprocess  # sweeps in worker processes

GRID = {"dataset": ["digits"], "epochs": [2], "lr": [0.05, 0.2], "activation": ["relu", "tanh"]}
TIMING = ("seconds", "samples_per_second")


def metrics(folder):
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def test_parallel_and_indexed_runs_equal_the_sequential_sweep(tmp_path, capsys):
    # bit-equal given the same BLAS thread count (float32 GEMMs split over more threads round differently)
    with threadpool_limits(max(1, cores() // 2), user_api="blas"):
        sequential = run_sweep(GRID, tmp_path / "seq")
        (only,) = run_sweep(GRID, tmp_path / "one", index=3)
    parallel = run_sweep(GRID, tmp_path / "par", jobs=2)
    output = capsys.readouterr().out
    assert "4 combinations in 2 processes" in output
    for number in range(1, 5):
        assert f"[{number}/4] " in output and f"({number}/4 done)" in output
    assert [row[0] for row in parallel] == [row[0] for row in sequential]
    for seq, par in zip(sequential, parallel, strict=True):
        assert par[3].name == seq[3].name and par[1] == seq[1]
        assert metrics(par[3]) == metrics(seq[3])
        assert (par[3] / "checkpoint.npz").exists()
    assert only[3].name == sequential[2][3].name and metrics(only[3]) == metrics(sequential[2][3])
    assert len(list((tmp_path / "one").iterdir())) == 1  # no other run, no plot


@pytest.mark.parametrize(
    "jobs, index, message",
    [
        (0, None, "--jobs must be an integer >= 1"),
        (1, 5, "--index must lie in 1..4"),
        (2, 1, "leave out --jobs"),
    ],
)
def test_bad_jobs_or_index_fail_before_any_run(tmp_path, jobs, index, message):
    with pytest.raises(ConfigError, match=message):
        run_sweep(GRID, tmp_path / "s", jobs=jobs, index=index)
    assert not (tmp_path / "s").exists()


def test_cli_bad_index_is_one_line(tmp_path):
    result = gpunn_cli(
        "sweep", "--dataset", "digits", "--lr", "0.1,0.2", "--index", "0", "--out", str(tmp_path)
    )
    assert result.returncode == 2 and "--index must lie in 1..2" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_combination_that_diverges_is_a_failed_row_and_the_others_still_run(tmp_path, capsys):
    grid = {"dataset": ["digits"], "epochs": [2], "lr": [1e6, 0.1], "val_size": [100]}
    diverged, trained = run_sweep(grid, tmp_path / "sw", jobs=1)
    assert "loss became nan" in diverged.failure and "--lr" in diverged.failure
    assert diverged.test_accuracy is None and not (diverged.folder / "checkpoint.npz").exists()
    assert trained.failure is None and trained.test_accuracy > 0.5  # ran after the failure
    assert (trained.folder / "best.npz").exists()
    table = [line for line in capsys.readouterr().out.split("setting", 1)[1].splitlines() if "lr=" in line]
    assert table[0].startswith("lr=0.1 ") and "%" in table[0]  # finished runs first, ranked
    assert table[1].startswith("lr=1000000.0  failed: loss became nan")


def test_cli_sweep_with_a_failed_combination_exits_1_after_the_whole_table(tmp_path):
    run = gpunn_cli(
        "sweep",
        "--dataset",
        "digits",
        "--epochs",
        "1",
        "--lr",
        "1e6,0.1",
        "--jobs",
        "2",
        "--out",
        str(tmp_path / "sw"),
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == "gpunn: 1 of 2 combination(s) failed (see the table)"
    assert "[1/2] lr=1000000.0: failed: loss became nan" in run.stdout
    assert "(2/2 done)" in run.stdout and "lr=0.1 " in run.stdout.split("setting", 1)[1]
