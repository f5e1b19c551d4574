"""Data-parallel training under mpiexec: K ranks equal one process; faults stop the job with one message."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from gpunn.checkpoint import load_checkpoint
from gpunn.training.run import train

pytest.importorskip("mpi4py", reason='mpi4py is not installed (pip install "gpunn[mpi]")')
MPIEXEC = shutil.which("mpiexec")
pytestmark = [
    pytest.mark.subprocess,  # mpiexec jobs
    pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found (the mpich wheel of gpunn[mpi] brings it)"),
]

DIGITS = [
    "--dataset",
    "digits",
    "--dtype",
    "float64",
    "--batch-size",
    "32",
    "--schedule",
    "constant",
    "--quiet",
]


def gpunn_args(*args):
    return [sys.executable, "-m", "gpunn", *args]


def mpi_run(ranks: int, *args, timeout=120):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.run(
        [MPIEXEC, "-n", str(ranks), *gpunn_args(*args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def max_weight_diff(a, b) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def one_process(tmp_path, epochs: int):
    """The single-process run that DIGITS describes, for comparison."""
    return train(
        out=tmp_path / "one",
        dataset="digits",
        dtype="float64",
        batch_size=32,
        schedule="constant",
        epochs=epochs,
        verbose=False,
    )


def test_two_ranks_match_one_process(tmp_path):
    done = mpi_run(2, "train", "--distributed", *DIGITS, "--epochs", "2", "--out", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr
    one = one_process(tmp_path, epochs=2)
    two = load_checkpoint(tmp_path / "two")
    assert max_weight_diff(one.model.get_weights(), two.weights) <= 1e-10
    assert [h["loss"] for h in two.header["history"]] == pytest.approx(
        [h["loss"] for h in one.history], rel=1e-10
    )
    assert two.header["history"][-1]["test_accuracy"] == one.history[-1]["test_accuracy"]


def test_two_ranks_with_dropout_and_validation_match_one_process(tmp_path):
    """Each rank masks its own rows of the global batch; validation is sharded and summed."""
    extra = ["--dropout", "0.3", "--val-size", "200", "--early-stopping", "5", "--epochs", "3"]
    done = mpi_run(2, "train", "--distributed", *DIGITS, *extra, "--out", str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr
    one = train(
        out=tmp_path / "one",
        dataset="digits",
        dtype="float64",
        batch_size=32,
        schedule="constant",
        epochs=3,
        dropout=0.3,
        val_size=200,
        early_stopping=5,
        verbose=False,
    )
    two = load_checkpoint(tmp_path / "two")
    assert max_weight_diff(one.model.get_weights(), two.weights) <= 1e-10
    assert [h["val_loss"] for h in two.header["history"]] == pytest.approx(
        [h["val_loss"] for h in one.history], rel=1e-10
    )
    assert two.header["best_epoch"] == one.best_epoch
    best = load_checkpoint(tmp_path / "two" / "best.npz")
    assert max_weight_diff(load_checkpoint(tmp_path / "one" / "best.npz").weights, best.weights) <= 1e-10


def test_a_two_rank_checkpoint_resumes_on_one_rank(tmp_path):
    done = mpi_run(2, "train", "--distributed", *DIGITS, "--epochs", "1", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    resumed = train(resume=tmp_path / "r", epochs=2, verbose=False)
    one = one_process(tmp_path, epochs=2)
    assert max_weight_diff(one.model.get_weights(), resumed.model.get_weights()) <= 1e-10


def test_a_killed_rank_stops_the_job_and_the_checkpoint_stays_valid(tmp_path):
    out = tmp_path / "r"
    args = [
        MPIEXEC,
        "-n",
        "2",
        *gpunn_args(
            "train",
            "--distributed",
            "--dataset",
            "digits",
            "--dtype",
            "float64",
            "--batch-size",
            "8",
            "--epochs",
            "200",
            "--out",
            str(out),
        ),
    ]
    job = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    header = job.stdout.readline()
    ranks = dict(
        reversed(pair.split("=")) for pair in re.search(r"rank=pid ([\d=, ]+);", header).group(1).split(", ")
    )
    for _ in range(2):
        assert job.stdout.readline(), job.stderr.read()
    victim = max(ranks)  # a pid, as text
    started = time.monotonic()
    os.kill(int(victim), signal.SIGKILL)
    out_text, err = job.communicate(timeout=60)
    assert job.returncode != 0 and time.monotonic() - started < 60
    # either a surviving rank names the dead one, or the launcher names its pid, which the header maps to a rank
    ours = [line for line in err.splitlines() if line.startswith("gpunn: error: rank")]
    assert (ours and f"rank(s) {ranks[victim]} died" in ours[0]) or f"PID {victim}" in out_text + err, (
        out_text,
        err,
    )
    assert "Traceback" not in err
    saved = load_checkpoint(out)
    assert saved.header["epoch"] >= 2
    resumed = train(resume=out, epochs=saved.header["epoch"] + 1, verbose=False)
    assert resumed.history[-1]["epoch"] == saved.header["epoch"] + 1


def test_a_rank_that_raises_brings_the_job_down_with_its_rank_named(tmp_path):
    common = ["train", "--distributed", "--dataset", "mnist", "--epochs", "1", "--out", str(tmp_path / "r")]
    good = tmp_path / "empty-but-fine"
    good.mkdir()
    command = [
        MPIEXEC,
        "-n",
        "1",
        *gpunn_args(*common, "--data-dir", str(good)),
        ":",
        "-n",
        "1",
        *gpunn_args(*common, "--data-dir", str(tmp_path / "missing")),
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    assert done.returncode != 0 and time.monotonic() - started < 60
    assert "rank 1:" in done.stderr or "rank 0:" in done.stderr
    assert "Traceback" not in done.stderr


def test_distributed_without_mpiexec_says_how_to_launch():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI", "OMPI", "MPI_", "PMIX"))}
    done = subprocess.run(
        gpunn_args("train", "--distributed", "--dataset", "digits"), capture_output=True, text=True, env=env
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "mpiexec -n 2 gpunn train --distributed" in done.stderr


def test_distributed_without_mpi4py_names_the_extra():
    code = (
        "import sys; sys.modules['mpi4py'] = None; from gpunn.cli.main import main; "
        "sys.exit(main(['train', '--distributed', '--dataset', 'digits']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PMI_SIZE": "1"}
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "gpunn[mpi]" in done.stderr


@pytest.mark.gpu
def test_nccl_allreduce_with_one_rank():
    from conftest import require_real_gpu

    require_real_gpu("NCCL (libnccl) runs only on a CUDA device")
    from gpunn.backend import get_backend
    from gpunn.backend.collectives import NcclAllreduce

    backend = get_backend("cuda", "float32")
    flat = backend.from_host(np.arange(10, dtype=np.float32))
    summed = NcclAllreduce(backend).sum_(flat)
    np.testing.assert_array_equal(backend.to_host(summed), np.arange(10, dtype=np.float32))


BLAS_PROBE = """
from threadpoolctl import threadpool_info
from gpunn.training.distributed import start
job = start()
pools = sorted({info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"})
seen = job.comm.gather((job.blas_threads, pools))
if job.rank == 0:
    print(seen)
"""


def test_ranks_on_one_host_share_its_cores_among_their_blas_threads():
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    }
    done = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-c", BLAS_PROBE],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    expected = max(1, len(os.sched_getaffinity(0)) // 2)
    assert done.stdout.strip() == str([(expected, [expected])] * 2)
