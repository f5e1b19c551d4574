"""Benchmark: one MNIST-shaped epoch of the 784-128-64-10 MLP (batch 128, SGD) for gpunn and its peers.

    python scripts/bench.py [--data-dir DIR] [--quick] [--epochs 5] [--out FILE]

Rows: gpunn numpy (float32, the train_step `gpunn train` runs, fed as its loop feeds it); the classic
from-scratch NumPy MLP (float64, weights (out, in), samples as columns); PyTorch eager CPU; scikit-learn
MLPClassifier (one partial_fit pass, sgd); gpunn cuda and PyTorch eager CUDA where a GPU is usable. After
one warm-up epoch each, the implementations take turns, one epoch at a time, for --epochs rounds (so a
slow spell of the machine hits all of them alike); each row is the median, all in one process on the same
synthetic MNIST-shaped data. The roofline is the GEMM FLOPs gpunn really does (it skips the first layer's
input gradient: 27.3 GFLOP per 60,000 samples, not 39.3) at the GEMM rate measured in the same run.
Peers that are not installed are skipped with a note (pip install "gpunn[bench]"). With --data-dir (MNIST
files) it also measures time-to-accuracy and the peak resident memory of `gpunn train`. --quick runs a
few dozen steps to keep this script working in CI; it asserts nothing about speed. Library versions are
printed and saved; results go to benchmarks/results/<date>-<host>.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = [784, 128, 64, 10]
BATCH = 128
LR = 0.1
# GEMM FLOPs per sample, 2*m*n*k each: forward x@W and backward dW for every layer, dX for all but the
# first (gpunn skips the input's gradient): 27.3 GFLOP per 60,000 samples. With the first dX: 39.3.
_WEIGHTS = [a * b for a, b in zip(SIZES[:-1], SIZES[1:], strict=False)]
GEMM_FLOPS_PER_SAMPLE = 2 * (2 * sum(_WEIGHTS) + sum(_WEIGHTS[1:]))
GEMM_FLOPS_PER_SAMPLE_FULL_BACKWARD = 2 * 3 * sum(_WEIGHTS)


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def timed_in_turns(runners: dict, epochs: int) -> dict[str, dict]:
    """One warm-up epoch each, then `epochs` rounds in which every runner times one epoch in turn."""
    for run in runners.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(epochs):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: {"epoch_s": statistics.median(t), "epochs_s": t} for name, t in times.items()}


# ---- gpunn: the step `gpunn train` takes, fed as its loop feeds it ----------------------------------------
def gpunn_epoch(device: str, x, y):
    from gpunn.backend import get_backend
    from gpunn.nn import SGD, mlp
    from gpunn.nn.losses import SoftmaxCrossEntropyTotals
    from gpunn.nn.step import train_step

    backend = get_backend(device, "float32")
    model = mlp(SIZES, backend=backend, seed=0)
    opt = SGD(LR)
    x_dev, y_dev = backend.from_host(x, copy=False), backend.from_host(y, copy=False)
    rng = np.random.default_rng(0)
    n = len(y)

    def run():
        order = backend.from_host(rng.permutation(n))
        loss_sum = backend.from_host(np.array(0.0), dtype="float64")
        correct = backend.from_host(np.array(0, dtype=np.int64))
        for start in range(0, n, BATCH):
            rows = order[start : min(start + BATCH, n)]
            x_batch, labels = backend.gather_batch(x_dev, y_dev, rows)
            # the loss adds the epoch's totals up and writes the output bias's gradient, as in gpunn train
            loss = SoftmaxCrossEntropyTotals(loss_sum, correct, column_sums_into=model.output_bias_grad)
            train_step(model, opt, x_batch, labels, loss=loss, labels=labels)
            loss_sum, correct = loss.totals
        backend.to_host(loss_sum), backend.to_host(correct)  # the epoch's synchronisation, as in gpunn train

    return run


# ---- the classic from-scratch NumPy MLP (float64, weights (out, in), columns are samples) -----------------
def classic_epoch(x, y):
    rng = np.random.default_rng(0)
    X = (x.astype(np.float64) / 255.0).T  # (784, N): samples are columns
    Y = np.eye(10)[y].T  # (10, N)
    W = [rng.standard_normal((o, i)) * np.sqrt(2.0 / i) for i, o in zip(SIZES[:-1], SIZES[1:], strict=False)]
    b = [np.zeros((o, 1)) for o in SIZES[1:]]
    n = X.shape[1]

    def run():
        perm = rng.permutation(n)
        Xs, Ys = X[:, perm], Y[:, perm]  # shuffled by copying the whole set, as the classic code does
        for start in range(0, n, BATCH):
            A = [Xs[:, start : start + BATCH]]
            Yb = Ys[:, start : start + BATCH]
            m = A[0].shape[1]
            Z = []
            for layer in range(3):
                Z.append(W[layer] @ A[-1] + b[layer])
                if layer < 2:
                    A.append(np.maximum(0, Z[-1]))
                else:
                    e = np.exp(Z[-1] - Z[-1].max(axis=0, keepdims=True))
                    A.append(e / e.sum(axis=0, keepdims=True))
            dZ = (A[-1] - Yb) / m
            for layer in (2, 1, 0):
                dW = dZ @ A[layer].T
                db = dZ.sum(axis=1, keepdims=True)
                if layer > 0:
                    dZ = (W[layer].T @ dZ) * (Z[layer - 1] > 0)
                W[layer] -= LR * dW
                b[layer] -= LR * db

    return run


# ---- peers -----------------------------------------------------------------------------------------------
def torch_epoch(device: str, x, y):
    import torch

    torch.manual_seed(0)
    dev = torch.device(device)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    ).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt = torch.from_numpy(x).to(dev)
    yt = torch.from_numpy(y).to(dev)
    n = len(y)

    def run():
        order = torch.randperm(n, device=dev)
        total = torch.zeros((), device=dev)
        for start in range(0, n, BATCH):
            rows = order[start : start + BATCH]
            logits = model(xt[rows].float() / 255.0)
            loss = loss_fn(logits, yt[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        float(total)

    return run


def sklearn_epoch(x, y):
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=(128, 64),
        solver="sgd",
        batch_size=BATCH,
        learning_rate_init=LR,
        momentum=0.0,
        random_state=0,
    )
    xf = x.astype(np.float32) / 255.0
    classes = np.arange(10)

    def run():
        model.partial_fit(xf, y, classes=classes)

    return run


def gemm_rate() -> float:
    """float32 GFLOP/s of a large square GEMM on this machine, best of 3."""
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    a @ a
    best = min(_time(lambda: a @ a) for _ in range(3))
    return 2 * 2048**3 / best / 1e9


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---- real-data measurements --------------------------------------------------------------------------------
def time_to_accuracy(data_dir: str, recipe: str, targets=(0.973, 0.980)) -> dict:
    from gpunn.training.run import train

    with tempfile.TemporaryDirectory() as out:
        result = train(out=Path(out) / "run", recipe=recipe, data_dir=data_dir, verbose=False)
    elapsed, reached = 0.0, {}
    for record in result.history:
        elapsed += record["seconds"]
        for target in targets:
            if record["test_accuracy"] >= target and str(target) not in reached:
                reached[str(target)] = {"seconds": round(elapsed, 3), "epoch": record["epoch"]}
    return {
        "recipe": recipe,
        "final_test_accuracy": result.test_accuracy,
        "train_seconds": round(elapsed, 3),
        "reached": reached,
    }


PEAK_RSS_CHILD = """
import sys
from gpunn.cli.main import main
from gpunn.procinfo import peak_rss_bytes
code = main(sys.argv[1:])
print(peak_rss_bytes() / 2**20)
raise SystemExit(code)
"""


def peak_rss_of_train(data_dir: str, epochs: int = 2) -> float:
    """Peak RSS (MB) of `gpunn train` on MNIST, read by the child itself (VmHWM)."""
    with tempfile.TemporaryDirectory() as out:
        command = [
            sys.executable,
            "-c",
            PEAK_RSS_CHILD,
            "train",
            "--epochs",
            str(epochs),
            "--data-dir",
            data_dir,
            "--quiet",
            "--out",
            str(Path(out) / "run"),
        ]
        done = subprocess.run(
            command,
            check=True,
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    return float(done.stdout.strip().splitlines()[-1])


def library_versions() -> dict[str, str]:
    """Versions of what the rows ran on, BLAS included (threadpoolctl sees the loaded libraries)."""
    from importlib import metadata

    from threadpoolctl import threadpool_info

    versions = {"python": platform.python_version()}
    for package in ("gpunn", "numpy", "torch", "scikit-learn", "cupy-cuda12x", "cupy-cuda13x"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    for info in threadpool_info():
        if info["user_api"] == "blas":
            versions[f"blas {info['internal_api']}"] = f"{info['version']} ({info['num_threads']} threads)"
    return versions


def cuda_usable() -> bool:
    from gpunn.backend.cuda_probe import cuda_status

    return cuda_status(0)[0]


def torch_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="MNIST folder for time-to-accuracy and peak memory")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per row, taken in turns (median)")
    parser.add_argument("--quick", action="store_true", help="a few dozen steps, for CI")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/<date>-<host>.json)")
    args = parser.parse_args()

    n = BATCH * 12 if args.quick else 60000
    epochs = 2 if args.quick else args.epochs
    x, y = synthetic(n)
    notes: list[str] = []
    candidates = [
        ("gpunn numpy", lambda: gpunn_epoch("cpu", x, y)),
        ("classic numpy (float64)", lambda: classic_epoch(x, y)),
        ("pytorch eager cpu", lambda: torch_epoch("cpu", x, y)),
        ("sklearn MLPClassifier", lambda: sklearn_epoch(x, y)),
    ]
    if cuda_usable():
        candidates.append(("gpunn cuda", lambda: gpunn_epoch("cuda", x, y)))
    else:
        notes.append("gpunn cuda: skipped, CUDA unusable here")
    if torch_cuda():
        candidates.append(("pytorch eager cuda", lambda: torch_epoch("cuda", x, y)))
    runners = {}
    for name, make in candidates:
        try:
            runners[name] = make()
        except ImportError as exc:
            notes.append(f'{name}: skipped, {exc.name or exc} not installed (pip install "gpunn[bench]")')
    rows = timed_in_turns(runners, epochs)

    rate = gemm_rate()
    result = {
        "date": datetime.date.today().isoformat(),
        "host": socket.gethostname(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "processor": _cpu_name(),
        },
        "versions": library_versions(),
        "samples_per_epoch": n,
        "timed_epochs": epochs,
        "quick": args.quick,
        "gemm_gflops": round(rate, 1),
        "gemm_gflop_per_epoch": round(GEMM_FLOPS_PER_SAMPLE * n / 1e9, 3),
        "roofline_epoch_s": round(GEMM_FLOPS_PER_SAMPLE * n / (rate * 1e9), 4),
        "roofline_full_backward_epoch_s": round(GEMM_FLOPS_PER_SAMPLE_FULL_BACKWARD * n / (rate * 1e9), 4),
        "rows": rows,
        "notes": notes,
    }
    if args.data_dir and not args.quick:
        result["time_to_accuracy"] = [time_to_accuracy(args.data_dir, r) for r in ("default", "classic")]
        result["peak_rss_mb_gpunn_train"] = round(peak_rss_of_train(args.data_dir), 1)

    print_table(result)
    write_results(result, args.out)
    return 0


def write_results(result: dict, out: str | None, prefix: str = "") -> Path:
    """Write a results JSON to `out`, or benchmarks/results/<prefix><date>-<host>.json; say where."""
    path = (
        Path(out)
        if out
        else ROOT / "benchmarks" / "results" / f"{prefix}{result['date']}-{result['host']}.json"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def print_table(result: dict) -> None:
    print("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    rows = result["rows"]
    ours = rows.get("gpunn numpy", {}).get("epoch_s")
    print(f"{'implementation':<26} {'s/epoch':>9} {'x gpunn numpy':>14}")
    for name, row in rows.items():
        ratio = f"{row['epoch_s'] / ours:.2f}" if ours else "-"
        print(f"{name:<26} {row['epoch_s']:>9.3f} {ratio:>14}")
    print(
        f"{'roofline (GEMM peak)':<26} {result['roofline_epoch_s']:>9.3f}   "
        f"({result['gemm_gflop_per_epoch']} GFLOP of GEMMs at {result['gemm_gflops']} GFLOP/s float32 GEMM "
        "measured in this run)"
    )
    torch_row = rows.get("pytorch eager cpu")
    if ours and torch_row:
        print(
            f"gpunn numpy / pytorch eager cpu = {ours / torch_row['epoch_s']:.2f} (target <= 0.5); "
            f"gpunn numpy / roofline = {ours / result['roofline_epoch_s']:.2f} (target <= 1.5)"
        )
    for note in result["notes"]:
        print(f"note: {note}")
    for entry in result.get("time_to_accuracy", []):
        reached = ", ".join(
            f"{float(k):.1%} after {v['seconds']} s (epoch {v['epoch']})" for k, v in entry["reached"].items()
        )
        print(
            f"time to accuracy, recipe {entry['recipe']}: {reached or 'targets not reached'}; "
            f"final {entry['final_test_accuracy']:.2%}"
        )
    if "peak_rss_mb_gpunn_train" in result:
        print(f"peak RSS of gpunn train on MNIST: {result['peak_rss_mb_gpunn_train']} MB")


if __name__ == "__main__":
    raise SystemExit(main())
