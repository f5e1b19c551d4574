"""Benchmark: one MNIST-shaped epoch of the 784-128-64-10 MLP (batch 128, SGD lr 0.1) for gpunn and its peers.

    python scripts/bench.py [--rounds 5] [--epochs 3] [--data-dir DIR] [--quick] [--out FILE] [--force]
    python scripts/bench.py --table FILE      # the README's performance block for a results file

Each implementation runs in a process of its own (`bench.py --worker NAME`: load, warm up one epoch, time
--epochs epochs, report JSON), so no library's thread pools live on while another runs. Round r starts
every implementation once, in an order rotated by r; --rounds rounds. Each row is the median of all its
timed epochs with the min-max and IQR; each ratio gpunn/peer is taken per round, then summarised
(bench_summary.py). Rows: gpunn numpy (the train_step `gpunn train` runs, fed as its loop feeds it);
gpunn.train's whole epoch (recipe classic); JAX jit (the whole step, gather and uint8 scaling inside, in
one compiled function with donated buffers); PyTorch eager; scikit-learn MLPClassifier (one partial_fit
epoch); the classic NumPy MLP (float64); the cuda rows (gpunn, PyTorch, JAX) where a GPU is usable. The
gpunn worker also times the same-shape GEMMs alone and the 2048^3 sgemm peak after its epochs: the
roofline. Peers not installed are skipped with a note (pip install -e ".[bench]"). With --data-dir (MNIST)
it adds time-to-accuracy and the peak memory of `gpunn train`. --quick (CI) times a few steps: it asserts
nothing about speed. Results: benchmarks/results/bench-<date>-<host>.json (replaced only with --force).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from importlib.util import find_spec
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path[:0] = [str(ROOT), str(SCRIPTS)]

import bench_peers as peers  # noqa: E402
import bench_summary as summary  # noqa: E402

SIZES = [784, 128, 64, 10]
BATCH = 128
CPU_NAMES = (
    "gpunn numpy",
    "gpunn train epoch",
    "jax jit cpu",
    "pytorch eager cpu",
    "sklearn MLPClassifier",
    "classic numpy (float64)",
)
NEEDS = {"pytorch": "torch", "jax": "jax", "sklearn": "sklearn"}
WORKER_TIMEOUT_S = 900


class BenchError(Exception):
    """One line for the user, then exit 1."""


def _needed_module(name: str) -> str | None:
    return next((module for prefix, module in NEEDS.items() if name.startswith(prefix)), None)


def gpu_rows(names: list[str], notes: list[str]) -> list[str]:
    """The cuda rows that can run here: gpunn's when its probe says CUDA is usable, PyTorch's and JAX's
    when they see a GPU (asked in a child process, bounded, so this process loads neither)."""
    from gpunn.backend.cuda_probe import cuda_status

    usable, why = cuda_status(0)[:2]
    rows = ["gpunn cuda", "gpunn train epoch cuda"] if usable else []
    if not usable:
        notes.append(f"gpunn cuda: not run, CUDA unusable here ({why})")
    probe = (
        "import importlib.util as u\n"
        "t = u.find_spec('torch') and __import__('torch').cuda.is_available()\n"
        "j = False\n"
        "if u.find_spec('jax'):\n"
        "    import jax\n"
        "    try: j = bool(jax.devices('gpu'))\n"
        "    except RuntimeError: pass\n"
        "print(bool(t), bool(j))"
    )
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        torch_gpu, jax_gpu = (word == "True" for word in done.stdout.split()[-2:])
    except (subprocess.TimeoutExpired, ValueError):
        torch_gpu = jax_gpu = False
        notes.append("the PyTorch/JAX GPU probe did not answer in 120 s: their cuda rows not run")
    rows += ["pytorch eager cuda"] if torch_gpu else []
    rows += ["jax jit gpu"] if jax_gpu else []
    return [name for name in rows if name in names or not names]


def plan(only: list[str], notes: list[str]) -> list[str]:
    names = [name for name in CPU_NAMES if not only or name in only]
    unknown = set(only) - set(CPU_NAMES) - set(peers.CUDA_NAMES)
    if unknown:
        raise BenchError(
            f"unknown --only {sorted(unknown)}; choose from {list(CPU_NAMES + peers.CUDA_NAMES)}"
        )
    runnable = []
    for name in names + gpu_rows(only, notes):
        module = _needed_module(name)
        if module and find_spec(module) is None:
            notes.append(f'{name}: skipped, {module} not installed (pip install -e ".[bench]")')
        else:
            runnable.append(name)
    return runnable


def run_worker(name: str, args: list[str], timeout: float = WORKER_TIMEOUT_S) -> dict:
    """Start `bench.py --worker name` and read its report (the last stdout line); bounded by `timeout`."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", name, *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise BenchError(f"worker {name!r} ran past {timeout:.0f} s and was stopped") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise BenchError(f"worker {name!r} failed (exit {done.returncode}): {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rotated(names: list[str], r: int) -> list[str]:
    shift = r % len(names) if names else 0
    return names[shift:] + names[:shift]


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "processor": cpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def bench(args, path: Path) -> dict:
    """Run the rounds; after each one the results so far are written to `path` ("complete": false), so a
    run stopped on a busy machine still leaves the rounds it finished."""
    notes: list[str] = []
    names = plan(args.only, notes)
    samples = BATCH * 12 if args.quick else args.samples
    rounds, epochs = (2, 2) if args.quick else (args.rounds, args.epochs)
    worker_args = ["--rows", str(samples), "--epochs", str(epochs)]
    setup = {
        "command": "python scripts/bench.py" + (" --quick" if args.quick else "") + _non_default(args),
        "sizes": SIZES,
        "batch": BATCH,
        "lr": peers.LR,
        "samples_per_epoch": samples,
        "rounds": rounds,
        "epochs": epochs,
        "order": "round r runs every implementation once, the list rotated by r",
        "quick": args.quick,
    }
    load_before, started = list(os.getloadavg()), time.perf_counter()
    measured: list[dict] = []
    for r in range(rounds):
        this_round = {}
        for name in rotated(names, r):
            report = run_worker(name, worker_args)
            this_round[name] = report
            print(
                f"round {r + 1}/{rounds} {name:<26} {min(report['epochs_s']):.3f}-{max(report['epochs_s']):.3f} s/epoch"
            )
        measured.append(this_round)
        result = assemble(measured, setup, notes, load_before, started)
        write_results(result, path, quiet=True)
    if args.data_dir and not args.quick:
        result["time_to_accuracy"] = [
            time_to_accuracy(args.data_dir, recipe) for recipe in ("default", "classic")
        ]
        result["peak_rss_mb_gpunn_train"] = peak_rss_of_train(args.data_dir)
    result = assemble(measured, setup, notes, load_before, started, extra=result, complete=True)
    return result


def assemble(measured, setup, notes, load_before, started, extra=None, complete=False) -> dict:
    """The results file's content from the rounds measured so far."""
    ours = next((r["gpunn numpy"] for r in measured if "gpunn numpy" in r), None) or next(
        iter(measured[0].values())
    )
    result = {
        "kind": "bench",
        "complete": complete,
        "date": datetime.date.today().isoformat(),
        "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "machine": machine(),
        "setup": {**setup, "rounds_done": len(measured), "wall_s": time.perf_counter() - started},
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "versions": {k: v for r in measured for w in r.values() for k, v in w["versions"].items()},
        "blas": [t for t in ours["threads"]["threadpools"] if t["user_api"] == "blas"],
        **summary.summarise(measured),
        "notes": notes,
        "rounds": measured,
    }
    for key in ("time_to_accuracy", "peak_rss_mb_gpunn_train"):
        if extra and key in extra:
            result[key] = extra[key]
    return result


def _non_default(args) -> str:
    if args.quick:
        return ""
    parts = [f" --rounds {args.rounds}"] if args.rounds != 5 else []
    parts += [f" --epochs {args.epochs}"] if args.epochs != 3 else []
    parts += [f" --samples {args.samples}"] if args.samples != 60000 else []
    parts += [" --data-dir DIR"] if args.data_dir else []
    parts += [f" --only '{name}'" for name in args.only]
    return "".join(parts)


# ---- real-data measurements, each in a process of its own --------------------------------------------------
TIME_TO_ACCURACY_CHILD = """
import json, sys, tempfile
from pathlib import Path
from gpunn.training.run import train
data_dir, recipe = sys.argv[1:]
with tempfile.TemporaryDirectory() as out:
    result = train(out=Path(out) / "run", recipe=recipe, data_dir=data_dir, verbose=False)
print(json.dumps({"history": result.history, "test_accuracy": result.test_accuracy}))
"""


def time_to_accuracy(data_dir: str, recipe: str, targets=(0.973, 0.980)) -> dict:
    done = _child([TIME_TO_ACCURACY_CHILD, data_dir, recipe])
    run = json.loads(done.splitlines()[-1])
    elapsed, reached = 0.0, {}
    for record in run["history"]:
        elapsed += record["seconds"]
        for target in targets:
            if record["test_accuracy"] >= target and str(target) not in reached:
                reached[str(target)] = {"seconds": round(elapsed, 3), "epoch": record["epoch"]}
    return {
        "recipe": recipe,
        "final_test_accuracy": run["test_accuracy"],
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
        args = [
            "train",
            "--epochs",
            str(epochs),
            "--data-dir",
            data_dir,
            "--quiet",
            "--out",
            str(Path(out) / "run"),
        ]
        return round(float(_child([PEAK_RSS_CHILD, *args]).splitlines()[-1]), 1)


def _child(args: list[str], timeout: float = WORKER_TIMEOUT_S) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"a real-data run ran past {timeout:.0f} s and was stopped") from None
    if done.returncode != 0:
        raise BenchError(f"a real-data run failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return done.stdout


# ---- output ----------------------------------------------------------------------------------------------
def results_path(out: str | None, force: bool, prefix: str = "bench-") -> Path:
    """`out`, or benchmarks/results/<prefix><date>-<host>.json; checked before the run, so a long run is
    not lost to a file that is there already (replaced only with `force`)."""
    today = datetime.date.today().isoformat()
    path = (
        Path(out) if out else ROOT / "benchmarks" / "results" / f"{prefix}{today}-{socket.gethostname()}.json"
    )
    if path.exists() and not force:
        raise BenchError(f"{path} exists: pass --force to replace it, or --out another file")
    return path


def shown_path(path: Path) -> str:
    """A results file's path as the README names it: relative to the repository where it lies inside."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else path)


def write_results(
    result: dict, path: Path | str | None, quiet: bool = False, prefix: str | None = None
) -> Path:
    """Write a results JSON to `path`. With `prefix` (the other scripts' one writer), a `path` of None is
    benchmarks/results/<prefix><date>-<host>.json, the script's own dated file, rewritten when run again."""
    if prefix is not None:
        path = results_path(path, force=True, prefix=prefix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    if not quiet:
        print(f"wrote {path}")
    return path


def print_summary(result: dict) -> None:
    print("versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()))
    print(f"{'implementation':<26} {'median s/epoch':>15} {'min-max':>15} {'gpunn numpy / this':>24}")
    for name, row in result["rows"].items():
        s = row["epoch_s"]
        ratio = result["ratios"].get(f"gpunn numpy / {name}")
        cell = "1.00" if name == "gpunn numpy" else summary._ratio(ratio)
        print(f"{name:<26} {s['median']:>15.3f} {s['min']:>7.3f}-{s['max']:<7.3f} {cell:>24}")
    roof = result.get("roofline")
    if roof:
        for key in ("gpunn numpy / own gemms", "gpunn numpy / sgemm peak"):
            print(f"{key}: {summary._ratio(roof[key])}")
        print(
            f"roofline: {roof['gemm_gflop_per_epoch']:.2f} GFLOP of GEMMs per epoch; own GEMMs alone "
            f"{roof['own_gemms_epoch_s']['median']:.3f} s; sgemm peak {roof['sgemm_peak_gflops']['median']:.1f} GFLOP/s"
        )
    print(f"load average before {result['load_average_before']}, after {result['load_average_after']}")
    print(f"wall time {result['setup']['wall_s']:.0f} s")
    for note in result["notes"]:
        print(f"note: {note}")


def worker_main(args) -> int:
    import bench_worker

    report = bench_worker.measure(
        args.worker,
        [int(s) for s in args.sizes.split("-")],
        args.batch,
        args.rows,
        args.epochs,
        steps=args.steps,
        warmup_steps=args.warmup_steps,
    )
    print(json.dumps(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each starts every implementation once")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per worker (after one warm-up)")
    parser.add_argument("--samples", type=int, default=60000, help="rows per epoch (synthetic, MNIST-shaped)")
    parser.add_argument(
        "--only", action="append", default=[], help="run only this implementation (repeatable)"
    )
    parser.add_argument("--data-dir", help="MNIST folder for time-to-accuracy and peak memory")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 epochs of 12 steps, for CI")
    parser.add_argument("--out", help="JSON path (default benchmarks/results/bench-<date>-<host>.json)")
    parser.add_argument("--force", action="store_true", help="replace an existing results file")
    parser.add_argument("--table", metavar="FILE", help="print the README performance block of FILE and exit")
    worker = parser.add_argument_group("worker mode (one implementation in this process; prints JSON)")
    worker.add_argument("--worker", metavar="NAME")
    worker.add_argument("--sizes", default="-".join(map(str, SIZES)))
    worker.add_argument("--batch", type=int, default=BATCH)
    worker.add_argument("--rows", type=int, default=60000)
    worker.add_argument("--steps", type=int, help="time this many steps per epoch and scale to the epoch")
    worker.add_argument("--warmup-steps", type=int, help="warm up this many steps (default: one epoch)")
    args = parser.parse_args(argv)
    try:
        if args.worker:
            return worker_main(args)
        if args.table:
            path = Path(args.table)
            try:
                result = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise BenchError(f"cannot read results file {path}: {exc}") from None
            print(summary.markdown(result, shown_path(path)), end="")
            return 0
        if min(args.rounds, args.epochs, args.samples) < 1:
            raise BenchError("--rounds, --epochs and --samples must be at least 1")
        path = results_path(args.out, args.force)
        result = bench(args, path)
        print_summary(result)
        write_results(result, path)
        return 0
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
