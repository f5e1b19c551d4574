"""Data-parallel scaling: measured step and Allreduce times for K = 1, 2 ranks here, and a model of larger K.

    python scripts/scaling.py [--steps 300] [--out FILE]     # launches mpiexec itself

Each rank's BLAS threads are gpunn's own rule (cores / ranks on the host, gpunn.training.distributed), recorded in the
results; the step timed is gpunn's train_step with the allreduce as its gradient hook.

Each rank trains the 784-128-64-10 MLP on MNIST-shaped data with a global batch of 128 (its shard is 128/K
rows), summing gradients with gpunn's one-buffer Allreduce. The model (docs/scaling.md) then puts the
per-step compute against a ring Allreduce, 2 (K-1)/K * S / B + 2 (K-1) * latency, at 1/10/100 Gb/s.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from gpunn.training.distributed import BLAS_THREAD_VARIABLES  # noqa: E402

BATCH = 128
LATENCY_S = 5e-6  # per ring hop, a typical datacentre NIC + MPI figure (an assumption, stated in the doc)


def worker(steps: int, hidden: list[int]) -> None:
    from gpunn.backend import get_backend
    from gpunn.nn import SGD, mlp
    from gpunn.nn.step import train_step
    from gpunn.training.distributed import Distributed, start

    job = start()
    backend = get_backend("cpu", "float32")
    dist = Distributed(job, backend)
    rng = np.random.default_rng(0)
    x = backend.from_host(rng.integers(0, 256, (60000, 784), dtype=np.uint8), copy=False)
    targets = backend.one_hot(backend.from_host(rng.integers(0, 10, 60000)), 10)
    model = mlp([784, *hidden, 10], backend=backend, seed=0)
    opt = SGD(0.05)
    step_times, reduce_times = [], []
    lo, hi = dist.shard(BATCH)

    def allreduce(buffer):
        start_reduce = time.perf_counter()
        dist.sum_gradients(buffer, (hi - lo) / BATCH, False)
        reduce_times.append(time.perf_counter() - start_reduce)
        return False

    for _ in range(steps + 20):
        rows = backend.from_host(rng.integers(0, 60000, BATCH))
        start_step = time.perf_counter()
        mine = rows[lo:hi]
        train_step(
            model,
            opt,
            backend.gather_images(x, mine),
            backend.take_rows(targets, mine),
            gradient_hook=allreduce,
        )
        step_times.append(time.perf_counter() - start_step)
    step_times, reduce_times = step_times[20:], reduce_times[20:]  # warm-up excluded
    totals = dist.sum_host([statistics.median(step_times), statistics.median(reduce_times)]) / dist.size
    if dist.is_root:
        print(
            json.dumps(
                {
                    "ranks": dist.size,
                    "hidden": hidden,
                    "parameters": model.num_parameters(),
                    "blas_threads_per_rank": job.blas_threads,
                    "step_s": totals[0],
                    "allreduce_s": totals[1],
                    "samples_per_s": BATCH / totals[0],
                }
            )
        )


def measure(ranks: int, steps: int, hidden: list[int]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_VARIABLES}
    env["PYTHONPATH"] = str(ROOT)
    command = [
        shutil.which("mpiexec") or "mpiexec",
        "-n",
        str(ranks),
        sys.executable,
        __file__,
        "--worker",
        "--steps",
        str(steps),
        "--hidden",
        ",".join(map(str, hidden)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ring_allreduce_s(parameters: int, ranks: int, gbit_per_s: float) -> float:
    size_bytes = 4 * (parameters + 1)  # float32 gradients plus the stop flag
    return 2 * (ranks - 1) / ranks * size_bytes / (gbit_per_s * 1e9 / 8) + 2 * (ranks - 1) * LATENCY_S


def model_table(compute_s: float, parameters: int) -> list[dict]:
    """Per-step time at K ranks: compute/K (ideal split of a fixed global batch) + ring Allreduce."""
    rows = []
    for ranks in (1, 2, 4, 8, 16, 32, 64):
        row = {"ranks": ranks, "compute_ms": 1e3 * compute_s / ranks}
        for bandwidth in (1, 10, 100):
            total = compute_s / ranks + (ring_allreduce_s(parameters, ranks, bandwidth) if ranks > 1 else 0.0)
            row[f"step_ms_{bandwidth}g"] = 1e3 * total
            row[f"speedup_{bandwidth}g"] = compute_s / total
        rows.append(row)
    return rows


def main() -> int:
    from bench import write_results

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--hidden", default="128,64", help=argparse.SUPPRESS)
    parser.add_argument("--out")
    args = parser.parse_args()
    hidden = [int(h) for h in args.hidden.split(",")]
    if args.worker:
        worker(args.steps, hidden)
        return 0
    result = {
        "date": datetime.date.today().isoformat(),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "batch": BATCH,
        "latency_per_hop_s": LATENCY_S,
        "measured": {},
        "model": {},
    }
    for name, sizes in (("784-128-64-10", [128, 64]), ("784-1280-640-10 (10x wider)", [1280, 640])):
        runs = [
            measure(k, args.steps if sizes == [128, 64] else max(50, args.steps // 6), sizes) for k in (1, 2)
        ]
        result["measured"][name] = runs
        result["model"][name] = model_table(runs[0]["step_s"], runs[0]["parameters"])
        result.setdefault("throughput_k2_over_k1", {})[name] = round(runs[0]["step_s"] / runs[1]["step_s"], 3)
        for run in runs:
            print(
                f"{name}: K={run['ranks']}: {1e3 * run['step_s']:.3f} ms/step "
                f"({run['samples_per_s']:,.0f} samples/s), Allreduce {1e3 * run['allreduce_s']:.3f} ms"
            )
    write_results(result, args.out, prefix="scaling-")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
