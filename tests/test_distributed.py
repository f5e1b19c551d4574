"""Data-parallel training under mpiexec: K ranks equal one process; faults stop the job with one message."""

from __future__ import annotations

import contextlib
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
    # ours is the one line: MPI_Abort's own ("Abort(1) on node 1 ...") goes nowhere
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr


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


# ---- ranks started differently agree or stop; a rank that stops answering ends the job ---------------------


def mpi_ranks(*per_rank: list[str], env=None, timeout=120):
    """One process per argument list (`mpiexec -n 1 A : -n 1 B`), each a `gpunn` command."""
    command = [MPIEXEC]
    for args in per_rank:
        command += [*([":"] if len(command) > 1 else []), "-n", "1", *gpunn_args(*args)]
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    job = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        out, err = job.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:  # a hang: the launcher and every rank go, not the launcher alone
        os.killpg(job.pid, signal.SIGKILL)
        job.communicate(timeout=60)
        raise
    return subprocess.CompletedProcess(command, job.returncode, out, err)


def assert_one_line(done, needle: str):
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr  # one line, from rank 0
    assert (
        done.stderr.startswith("gpunn: error: the ranks were not started alike: ") and needle in done.stderr
    )
    assert done.stderr.rstrip().endswith("start every rank with the same settings and the same data")


@pytest.mark.parametrize(
    "flag, mine, theirs, needle",
    [
        ("--epochs", "2", "3", "--epochs differs (rank 0: 2, rank 1: 3)"),
        ("--batch-size", "32", "64", "--batch-size differs (rank 0: 32, rank 1: 64)"),
        ("--hidden", "16", "32", "--hidden differs (rank 0: (16,), rank 1: (32,))"),
    ],
)
def test_ranks_given_different_settings_all_stop_with_one_line_naming_the_flag(
    tmp_path, flag, mine, theirs, needle
):
    common = ["train", "--distributed", *DIGITS, "--out", str(tmp_path / "r")]
    done = mpi_ranks([*common, "--epochs", "2", flag, mine], [*common, "--epochs", "2", flag, theirs])
    assert_one_line(done, needle)
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


def fake_mnist(folder, train: int, seed: int):
    """MNIST-shaped IDX files of unknown origin (used as given): `train` + 50 random 28x28 images."""
    from idx_files import idx_bytes

    from gpunn.data.sources import FILES

    folder.mkdir()
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", 50)):
        labels = np.arange(n) % 10  # every class in both splits
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        for kind, array in (("images", images), ("labels", labels)):
            (folder / FILES[(split, kind)]).write_bytes(idx_bytes(array))
    return folder


@pytest.mark.parametrize(
    "other_train, other_seed, needle",
    [
        (200, 1, "the test data differs (rank 0: sha256 "),  # other files of the same size
        (150, 0, "the training set size differs (rank 0: 200, rank 1: 150)"),
    ],
    ids=["same-size-other-bytes", "other-size"],
)
def test_ranks_reading_different_data_all_stop_with_one_line_naming_it(
    tmp_path, other_train, other_seed, needle
):
    mine, theirs = fake_mnist(tmp_path / "a", 200, 0), fake_mnist(tmp_path / "b", other_train, other_seed)
    common = [
        "train",
        "--distributed",
        "--dataset",
        "mnist",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "r"),
    ]
    done = mpi_ranks([*common, "--data-dir", str(mine)], [*common, "--data-dir", str(theirs)])
    assert_one_line(done, needle)
    if other_train == 200:
        assert "the training data differs (rank 0: sha256 " in done.stderr and "set size" not in done.stderr


def test_a_rank_that_stops_answering_ends_the_job_within_the_timeout_with_one_line(tmp_path):
    loud = [a for a in DIGITS if a != "--quiet"]  # rank 0's first line maps ranks to pids
    args = gpunn_args(
        "train", "--distributed", *loud, "--batch-size", "8", "--epochs", "300", "--out", str(tmp_path / "r")
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "GPUNN_MPI_TIMEOUT": "10"}
    job = subprocess.Popen(
        [MPIEXEC, "-n", "2", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    victim = None
    try:
        header = job.stdout.readline()
        pids = dict(
            pair.split("=") for pair in re.search(r"rank=pid ([\d=, ]+);", header).group(1).split(", ")
        )
        victim = int(pids["1"])
        os.kill(victim, signal.SIGSTOP)  # alive, holding its place, never answering
        out_text, err = job.communicate(timeout=120)
    finally:
        if victim is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        if job.poll() is None:
            job.kill()
            job.communicate(timeout=60)
    assert job.returncode != 0
    lines = err.strip().splitlines()
    assert lines == [lines[0]] and lines[0].startswith(
        "gpunn: error: rank 0: no answer from the other ranks for 10 s in the gradient sum of a training step"
    ), err
    assert "GPUNN_MPI_TIMEOUT" in lines[0] and "gpunn train --resume" in lines[0]


class _Gathered:
    """A communicator whose allgather answers what two ranks would have sent."""

    def __init__(self, *sent):
        self.sent = list(sent)

    def allgather(self, mine):
        assert mine == self.sent[0]  # this process is rank 0
        return self.sent


def agreeing_job(*sent):
    from gpunn.training.distributed import Job, Watchdog

    job = Job.__new__(Job)  # no MPI: only agree() and its watchdog bracket are used
    job.comm, job.rank, job.size = _Gathered(*sent), 0, len(sent)
    job.watchdog = Watchdog.__new__(Watchdog)
    job.watchdog.timeout, job.watchdog._waiting = 1.0, None
    return job


def test_agreement_names_every_difference_as_keywords_from_python():
    from gpunn.errors import RanksDisagreeError

    mine = ({"epochs": 2, "lr": 0.1}, {"the training set size": 200})
    theirs = ({"epochs": 3, "lr": 0.1}, {"the training set size": 150})
    with pytest.raises(RanksDisagreeError) as caught:
        agreeing_job(mine, theirs).agree(*mine)
    assert str(caught.value) == (
        "the ranks were not started alike: epochs= differs (rank 0: 2, rank 1: 3); the training set size "
        "differs (rank 0: 200, rank 1: 150): start every rank with the same settings and the same data"
    )
    agreeing_job(mine, mine).agree(*mine)  # the same on every rank: nothing raised


@pytest.mark.parametrize("text", ["abc", "0", "-5", "nan"])
def test_a_bad_mpi_timeout_is_refused(monkeypatch, text):
    from gpunn.errors import DistributedError
    from gpunn.training.distributed import collective_timeout

    monkeypatch.setenv("GPUNN_MPI_TIMEOUT", text)
    with pytest.raises(
        DistributedError, match=f"GPUNN_MPI_TIMEOUT must be a number of seconds > 0, got '{text}'"
    ):
        collective_timeout()


def test_the_mpi_timeout_is_read_from_the_environment(monkeypatch):
    from gpunn.training.distributed import DEFAULT_TIMEOUT, collective_timeout

    monkeypatch.delenv("GPUNN_MPI_TIMEOUT", raising=False)
    assert collective_timeout() == DEFAULT_TIMEOUT
    monkeypatch.setenv("GPUNN_MPI_TIMEOUT", "2.5")
    assert collective_timeout() == 2.5


def test_ranks_resuming_different_checkpoints_all_stop_with_one_line(tmp_path):
    for folder, epochs in (("one", 1), ("two", 2)):  # two runs of one setting, saved at different epochs
        train(
            out=tmp_path / folder,
            dataset="digits",
            dtype="float64",
            batch_size=32,
            epochs=epochs,
            verbose=False,
        )
    resume = ["train", "--distributed", "--epochs", "3", "--quiet", "--resume"]
    done = mpi_ranks([*resume, str(tmp_path / "one")], [*resume, str(tmp_path / "two")])
    assert_one_line(
        done, "the resume position differs (rank 0: 'epoch 2, step 0', rank 1: 'epoch 3, step 0')"
    )
    assert load_checkpoint(tmp_path / "one").header["epoch"] == 1  # neither run moved
    assert load_checkpoint(tmp_path / "two").header["epoch"] == 2
