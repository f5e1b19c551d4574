"""`gpunn sweep --jobs K` and `--index I`: the same results as the sequential sweep, every run reported."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_train import gpunn_cli
from threadpoolctl import threadpool_limits

from gpunn.checkpoint import load_checkpoint
from gpunn.cli.main import build_parser
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


# ---- signals and dying workers: a real sweep in a session of its own, watched from outside ----------------

HANG_GUARD = 180  # seconds; every wait below ends long before unless something hangs


def session_processes(session: int) -> list[str]:
    """'pid command' of every process in the session (Linux /proc: pid (comm) state ppid pgrp session ...)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:  # it just ended
                continue
            if int(stat.rsplit(")", 1)[1].split()[3]) == session:
                found.append(f"{entry} {cmdline}")
    return found


def assert_session_ends(session: int) -> None:
    """Every process of the session ends within the guard; any left is killed before the test fails."""
    try:
        wait_for(lambda: not session_processes(session), "every process of the sweep's session to end")
    except AssertionError:
        raise AssertionError(f"left behind: {kill_session(session)}") from None


def wait_for(condition, what: str):
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


def start_sweep(tmp_path, *grid, jobs: int):
    out = tmp_path / "sw"
    command = [sys.executable, "-m", "gpunn", "sweep", "--dataset", "digits", *grid, "--out", str(out)]
    sweep = subprocess.Popen(
        [*command, "--jobs", str(jobs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own session and process group, as a shell job has
    )
    return sweep, out


def finish(sweep) -> tuple[str, str]:
    try:
        return sweep.communicate(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:  # a hang (or orphans holding its pipes): leave nothing behind
        kill_session(sweep.pid)
        sweep.communicate(timeout=HANG_GUARD)
        raise


def kill_session(session: int) -> list[str]:
    left = session_processes(session)
    for process in left:
        with contextlib.suppress(OSError):
            os.kill(int(process.split()[0]), signal.SIGKILL)
    return left


def folder_of(out: Path, number: int) -> Path:
    (folder,) = out.glob(f"{number:02d}-*")
    return folder


# combination 1 trains 2 epochs, 2-4 train 400 (minutes): the signal finds 1 done and 2 (and 3) training
LONG_GRID = ["--epochs", "2,400,401,402"]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the session's processes from /proc")
@pytest.mark.parametrize(
    "signum, to_group, jobs",
    [(signal.SIGTERM, False, 2), (signal.SIGINT, True, 2), (signal.SIGTERM, False, 1)],
    ids=["sigterm-to-the-sweep", "sigint-to-its-process-group", "sigterm-to-a-sequential-sweep"],
)
def test_a_signalled_sweep_stops_every_worker_keeps_the_finished_and_says_how_to_go_on(
    tmp_path, signum, to_group, jobs
):
    sweep, out = start_sweep(tmp_path, *LONG_GRID, jobs=jobs)
    training = range(2, 2 + jobs)  # the combinations running when the signal comes
    try:
        wait_for(lambda: all(list(out.glob(f"{n:02d}-*/checkpoint.npz")) for n in training), "the long runs")
        (os.killpg if to_group else os.kill)(sweep.pid, signum)
    finally:
        stdout, stderr = finish(sweep)
    assert_session_ends(sweep.pid)

    assert sweep.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr
    name = signal.Signals(signum).name
    assert stderr.splitlines()[-1] == (
        f"gpunn: error: {name} received: 1 of 4 combination(s) finished; the table names the command "
        "that continues or runs each of the other 3"
    )
    table = stdout.split("setting", 1)[1].splitlines()[1:]
    assert table[0].startswith("epochs=2 ") and "%" in table[0]
    for number, line in zip(range(2, 5), table[1:], strict=True):
        if number in training:  # it saved where it stood: resuming continues it
            assert "interrupted: SIGTERM received in epoch" in line or f"interrupted: {name} received" in line
            assert line.endswith(f"continue with: gpunn train --resume {folder_of(out, number)}"), line
            assert load_checkpoint(folder_of(out, number)).header["epoch"] >= 1
        else:  # queued: it never started, and names the command that runs it alone
            assert " not started: run it with: gpunn sweep " in line and line.endswith(f"--index {number}")
            assert not list(out.glob(f"{number:02d}-*"))  # nothing started after the signal
            redo = shlex.split(line.split("run it with: ", 1)[1])
            args = build_parser().parse_args(redo[1:])
            assert (args.epochs, args.dataset, args.index, args.out) == (
                "2,400,401,402",
                "digits",
                number,
                str(out),
            )
    assert not (out / "sweep.png").exists()  # a stop is prompt: no plot


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the worker's pid in /proc")
def test_a_worker_killed_with_sigkill_is_a_failed_row_and_the_sweep_ends_normally(tmp_path):
    sweep, out = start_sweep(tmp_path, "--epochs", "2,400", jobs=2)
    try:
        for line in iter(sweep.stdout.readline, ""):
            if "(1/2 done)" in line:  # the 2-epoch combination is done: the one worker left runs the other
                break
        wait_for(lambda: list(out.glob("02-*/checkpoint.npz")), "the long run's first checkpoint")
        (victim,) = [int(p.split()[0]) for p in session_processes(sweep.pid) if "gpunn.cli.sweep_worker" in p]
        os.kill(victim, signal.SIGKILL)
    finally:
        stdout, stderr = finish(sweep)
    assert_session_ends(sweep.pid)
    assert sweep.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == ["gpunn: 1 of 2 combination(s) failed (see the table)"]
    (failed,) = [line for line in stdout.split("setting", 1)[1].splitlines() if line.startswith("epochs=400")]
    assert failed.startswith(
        "epochs=400  failed: its process was killed by SIGKILL (the signal the OOM killer"
    )
    assert failed.endswith(f"continue with: gpunn train --resume {folder_of(out, 2)}")
    assert "epochs=2 " in stdout.split("setting", 1)[1]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the session's processes from /proc")
def test_workers_of_a_sweep_killed_with_sigkill_save_and_stop_by_themselves(tmp_path):
    sweep, out = start_sweep(tmp_path, "--epochs", "400,401", jobs=2)
    try:
        wait_for(lambda: len(list(out.glob("*/checkpoint.npz"))) == 2, "both runs' first checkpoints")
        os.kill(sweep.pid, signal.SIGKILL)  # no handler runs: the workers see their stdin end
    finally:
        finish(sweep)
    assert_session_ends(sweep.pid)
    for number in (1, 2):  # each stopped as if signalled: saved mid-epoch, resumable
        metrics_lines = (folder_of(out, number) / "metrics.jsonl").read_text().splitlines()
        saved = load_checkpoint(folder_of(out, number)).header
        assert saved["epoch"] == len(metrics_lines) and saved["epoch"] < 400
