"""Benchmark: one MNIST-shaped epoch of the 784-128-64-10 MLP (batch 128, SGD) for gpunn and its peers.

    python scripts/bench.py [--data-dir DIR] [--quick] [--epochs 3] [--out FILE]

Rows: gpunn numpy (float32); the classic from-scratch NumPy MLP (float64, weights-first, as in the seed);
PyTorch eager CPU; scikit-learn MLPClassifier (one partial_fit pass, sgd); gpunn cuda and PyTorch eager
CUDA where a GPU is usable. Each is the median of --epochs timed epochs after one warm-up epoch, all in one
process on the same synthetic MNIST-shaped data. Peers that are not installed are skipped with a note
(pip install "gpunn[bench]"). With --data-dir (MNIST files) it also measures time-to-accuracy and the
peak resident memory of `gpunn train`. --quick runs a few hundred steps to keep this script working in
CI; it asserts nothing about speed. Results go to benchmarks/results/<date>-<host>.json.
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
# GEMM FLOPs of one epoch: forward x@W (3 GEMMs), backward dW (3) and dX (3, incl. the first layer's
# input gradient that gpunn skips), 2*m*n*k each: the DESIGN brief's 39.3 GFLOP for 60,000 samples.
GEMMS_PER_SAMPLE = 3 * 2 * sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:], strict=False))


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def timed(run_epoch, epochs: int) -> dict:
    run_epoch()  # warm-up
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        run_epoch()
        times.append(time.perf_counter() - start)
    return {"epoch_s": statistics.median(times), "epochs_s": times}


# ---- gpunn ---------------------------------------------------------------------------------------------
def gpunn_epoch(device: str, x, y):
    from gpunn.backend import get_backend
    from gpunn.nn import SGD, mlp

    backend = get_backend(device, "float32")
    model = mlp(SIZES, backend=backend, seed=0)
    opt = SGD(LR)
    x_dev, y_dev = backend.from_host(x, copy=False), backend.from_host(y, copy=False)
    targets = backend.one_hot(y_dev, 10)
    rng = np.random.default_rng(0)
    n = len(y)

    def run():
        order = backend.from_host(rng.permutation(n))
        total = None
        for start in range(0, n, BATCH):
            rows = order[start : min(start + BATCH, n)]
            logits = model.forward(backend.scale_images(backend.take_rows(x_dev, rows)))
            loss, grad = backend.softmax_cross_entropy(logits, backend.take_rows(targets, rows))
            model.backward(grad)
            opt.step(model.parameters(), backend)
            total = loss if total is None else total + loss
        backend.to_host(total)  # one synchronisation per epoch, as in gpunn train

    return run


# ---- the classic from-scratch NumPy MLP (float64, weights (out, in), columns are samples) -----------------
def classic_epoch(x, y):
    rng = np.random.default_rng(0)
    X = (x.astype(np.float64) / 255.0).T  # (784, N), as the seed keeps it
    Y = np.eye(10)[y].T  # (10, N)
    W = [rng.standard_normal((o, i)) * np.sqrt(2.0 / i) for i, o in zip(SIZES[:-1], SIZES[1:], strict=False)]
    b = [np.zeros((o, 1)) for o in SIZES[1:]]
    n = X.shape[1]

    def run():
        perm = rng.permutation(n)
        Xs, Ys = X[:, perm], Y[:, perm]  # the seed shuffles by copying the whole set
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
    from gpunn.training import train

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
from gpunn.cli import main
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
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per row (median)")
    parser.add_argument("--quick", action="store_true", help="a few hundred steps, for CI")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/<date>-<host>.json)")
    args = parser.parse_args()

    n = BATCH * 30 if args.quick else 60000
    epochs = 1 if args.quick else args.epochs
    x, y = synthetic(n)
    rows: dict[str, dict] = {}
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
    for name, make in candidates:
        try:
            run = make()
        except ImportError as exc:
            notes.append(f'{name}: skipped, {exc.name or exc} not installed (pip install "gpunn[bench]")')
            continue
        rows[name] = timed(run, epochs)
        print(f"  measured {name}: {rows[name]['epoch_s']:.3f} s/epoch", file=sys.stderr, flush=True)

    rate = gemm_rate()
    roofline = GEMMS_PER_SAMPLE * n / (rate * 1e9)
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
        "samples_per_epoch": n,
        "quick": args.quick,
        "gemm_gflops": round(rate, 1),
        "roofline_epoch_s": round(roofline, 4),
        "rows": rows,
        "notes": notes,
    }
    if args.data_dir and not args.quick:
        result["time_to_accuracy"] = [time_to_accuracy(args.data_dir, r) for r in ("default", "seed")]
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
    rows = result["rows"]
    ours = rows.get("gpunn numpy", {}).get("epoch_s")
    print(f"{'implementation':<26} {'s/epoch':>9} {'x gpunn numpy':>14}")
    for name, row in rows.items():
        ratio = f"{row['epoch_s'] / ours:.2f}" if ours else "-"
        print(f"{name:<26} {row['epoch_s']:>9.3f} {ratio:>14}")
    print(
        f"{'roofline (GEMM peak)':<26} {result['roofline_epoch_s']:>9.3f}   "
        f"({result['gemm_gflops']} GFLOP/s float32 GEMM measured in this run)"
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
