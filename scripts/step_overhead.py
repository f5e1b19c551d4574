"""How close gpunn's CPU epoch comes to its own GEMMs: ratios measured in one process, alternated.

On a shared, noisy machine absolute epoch times swing by 2x from minute to minute; the ratio of two things
timed back to back in the same process does not. Each round times, in turn:

  step   an epoch of train_step fed as gpunn's loop feeds it (gather, SoftmaxCrossEntropyTotals, update);
  loop   the same epoch through gpunn.train's own epoch path (Loop._epoch: lr schedule, slicing, signals),
         with the test-set evaluation and the checkpoint save stubbed out (they are not the step's cost);
  gemm   the same-shape GEMMs alone: x @ W for every layer, x.T @ g for every layer, g @ W.T for all but
         the first (gpunn computes no input gradient), on fresh outputs as the step makes them.

and the report gives the median of step/gemm and loop/gemm over the rounds, with their spread, plus the
NumPy calls one step makes (counted with sys.setprofile: every C function called from Python).

    PYTHONPATH=. python scripts/step_overhead.py --rounds 15 [--out benchmarks/results/step-overhead-DATE-vm.json]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIZES = [784, 128, 64, 10]
BATCH = 128
LR = 0.1


def synthetic(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 784), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def step_epoch(x, y, wrap=None):
    """An epoch of train_step, fed as gpunn's loop feeds it (scripts/bench.py's gpunn runner).

    wrap: applied to the data and the model's flat buffers (a counting view, see numpy_operations)."""
    from gpunn.backend import get_backend
    from gpunn.nn import SGD, mlp
    from gpunn.nn.losses import SoftmaxCrossEntropyTotals
    from gpunn.nn.step import train_step

    backend = get_backend("cpu", "float32")
    model, opt = mlp(SIZES, backend=backend, seed=0), SGD(LR)
    x_dev, y_dev = backend.from_host(x, copy=False), backend.from_host(y, copy=False)
    rng, n = np.random.default_rng(0), len(y)
    if wrap is not None:
        x_dev, y_dev = wrap(x_dev), wrap(y_dev)
        model.buffer.set_values(wrap(model.buffer.values))
        model.buffer.set_gradient(wrap(model.buffer.gradient_with_slot))

    def one_step(rows, loss_sum, correct):
        x_batch, labels = backend.gather_batch(x_dev, y_dev, rows)
        loss = SoftmaxCrossEntropyTotals(loss_sum, correct, column_sums_into=model.output_bias_grad)
        train_step(model, opt, x_batch, labels, loss=loss, labels=labels)
        return loss.totals

    def run():
        order = backend.from_host(rng.permutation(n))
        loss_sum = backend.from_host(np.array(0.0), dtype="float64")
        correct = backend.from_host(np.array(0, dtype=np.int64))
        for start in range(0, n, BATCH):
            loss_sum, correct = one_step(order[start : min(start + BATCH, n)], loss_sum, correct)
        backend.to_host(loss_sum), backend.to_host(correct)

    def first_step():
        order = backend.from_host(rng.permutation(n))
        totals = (backend.from_host(np.array(0.0), dtype="float64"), backend.from_host(np.array(0)))
        return lambda: one_step(order[:BATCH], *totals)

    return run, first_step


def loop_epoch(x, y):
    """gpunn.train's epoch (Loop._epoch) with its evaluation and save stubbed: the loop around the step."""
    from gpunn.backend import get_backend
    from gpunn.nn import mlp
    from gpunn.nn.optim import make_optimizer
    from gpunn.training.config import TrainConfig
    from gpunn.training.loop import Loop, SignalCatcher, TrainingBatches
    from gpunn.training.ranks import Ranks
    from gpunn.training.report import Reporter
    from gpunn.training.state import TrainingState

    backend = get_backend("cpu", "float32")
    config = TrainConfig.from_recipe("classic", epochs=10**6)
    model = mlp(SIZES, backend=backend, seed=0)
    batches = TrainingBatches(_TrainSet(x, y), backend)
    evaluator = SimpleNamespace(test_accuracy=lambda: 0.0, validation=lambda: None)
    store = SimpleNamespace(save=lambda state: None)
    loop = Loop(model, make_optimizer("sgd", LR), batches, Ranks(), evaluator, store, Reporter(False))
    state = TrainingState.start(config)
    signals = SignalCatcher()

    def run():
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # as Loop.run
            loop._epoch(state, signals)

    run.state = state  # the TrainingState each call advances by one epoch
    return run


class _TrainSet:
    """A training set with the fields TrainingBatches reads."""

    def __init__(self, features, labels):
        self.features, self.labels, self.class_names = features, labels, [str(k) for k in range(10)]

    def __len__(self):
        return len(self.labels)


def gemm_epoch(n: int):
    """The epoch's GEMMs alone, same shapes, fresh outputs (as the step allocates them)."""
    rng = np.random.default_rng(0)
    weights = [
        rng.standard_normal((a, b)).astype(np.float32) for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)
    ]
    batches = [BATCH] * (n // BATCH) + ([n % BATCH] if n % BATCH else [])
    inputs = {m: [rng.random((m, a), dtype=np.float32) for a in SIZES[:-1]] for m in set(batches)}
    grads = {m: [rng.random((m, b), dtype=np.float32) for b in SIZES[1:]] for m in set(batches)}

    def run():
        for m in batches:
            xs, gs = inputs[m], grads[m]
            for k, w in enumerate(weights):
                np.matmul(xs[k], w)
            for k in reversed(range(len(weights))):
                np.matmul(xs[k].T, gs[k])
                if k:
                    np.matmul(gs[k], weights[k].T)

    return run


def count_calls(step) -> dict:
    """C functions (NumPy's and Python's builtins) and Python functions one call of `step` makes."""
    step()
    counts: collections.Counter = collections.Counter()

    def profile(frame, event, arg):
        if event == "c_call":
            counts[f"C {getattr(arg, '__module__', None) or ''}.{getattr(arg, '__qualname__', arg)}"] += 1
        elif event == "call":
            counts[f"py {frame.f_code.co_name}"] += 1

    sys.setprofile(profile)
    try:
        step()
    finally:
        sys.setprofile(None)
    c = sum(v for k, v in counts.items() if k.startswith("C "))
    py = sum(v for k, v in counts.items() if k.startswith("py "))
    return {"c_calls": c, "python_calls": py, "by_name": dict(counts.most_common())}


class _Counted(np.ndarray):
    """An ndarray view that counts every ufunc call (operators, reductions, out= included) and every NumPy
    function dispatched through __array_function__; what it returns is a _Counted again."""

    counts: collections.Counter = collections.Counter()

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _Counted.counts[f"ufunc {ufunc.__name__}.{method}"] += 1
        plain = [a.view(np.ndarray) if isinstance(a, _Counted) else a for a in inputs]
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, _Counted) else o for o in out)
        result = getattr(ufunc, method)(*plain, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _as_counted(result)

    def __array_function__(self, func, types, args, kwargs):
        _Counted.counts[f"function {func.__name__}"] += 1
        return super().__array_function__(func, types, args, kwargs)


def _as_counted(result):
    if isinstance(result, np.ndarray) and not isinstance(result, _Counted):
        return result.view(_Counted)
    return result


def numpy_operations(x, y) -> dict:
    """NumPy operations (ufunc calls and NumPy functions) of one training step on counting arrays."""
    _, first_step = step_epoch(x, y, wrap=lambda a: a.view(_Counted))
    step = first_step()
    step()
    _Counted.counts.clear()
    step()
    counts = dict(_Counted.counts.most_common())
    return {"total": sum(counts.values()), "by_name": counts}


def run_steps(what: str, steps: int, rows: int) -> None:
    """`steps` training steps (what="step") or the same-shape GEMMs of `steps` batches (what="gemm"),
    after the set-up: what the instruction count runs under callgrind."""
    x, y = synthetic(rows)
    if what == "step":
        step = step_epoch(x, y)[1]()
        for _ in range(steps):
            step()
    else:
        gemm_epoch(steps * BATCH)()


def instructions_per_step(rows: int, steps: int = 100) -> dict:
    """Instructions (callgrind's Ir: repeatable under any load) of one step and of its GEMMs alone, each
    the difference of a run of `steps` and a run of none, with one BLAS thread (callgrind runs one anyway)."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    out = {}
    for what in ("step", "gemm"):
        counts = []
        for n in (0, steps):
            command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable]
            command += [__file__, "--run-steps", what, str(n), "--rows", str(rows)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800, check=True)
            counts.append(int(re.search(r"Collected : (\d+)", done.stderr).group(1)))
        out[what] = (counts[1] - counts[0]) / steps
    return {**{k: round(v) for k, v in out.items()}, "step/gemm": round(out["step"] / out["gemm"], 3)}


def component_costs(x, y) -> dict:
    """Microseconds of each non-GEMM primitive of one step on the step's own shapes (best of 7 x 200 calls):
    what is left around the GEMMs, and so what bounds the ratio."""
    import timeit

    from gpunn.backend import get_backend

    backend, rng = get_backend("cpu", "float32"), np.random.default_rng(1)
    images, labels = backend.from_host(x, copy=False), backend.from_host(y, copy=False)
    order, at = rng.permutation(len(y)), [0]

    def rows():  # a fresh random batch each call, as an epoch gathers them (not cache-resident)
        at[0] = (at[0] + BATCH) % (len(y) - BATCH)
        return order[at[0] : at[0] + BATCH]

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    logits, h1, g1, h2, g2 = f32(BATCH, 10), f32(BATCH, 128), f32(BATCH, 128), f32(BATCH, 64), f32(BATCH, 64)
    size = sum((a + 1) * b for a, b in zip(SIZES[:-1], SIZES[1:], strict=True))
    flat, flat_grad, bias = f32(size), f32(size), f32(128)
    totals = (backend.from_host(np.array(0.0), dtype="float64"), backend.from_host(np.array(0)))
    batch_labels = labels[rows()]
    calls = {
        "gather_batch": lambda: backend.gather_batch(images, labels, rows()),
        "softmax_cross_entropy_totals": lambda: backend.softmax_cross_entropy_totals(
            logits, batch_labels, *totals
        ),
        "sgd_update (whole flat buffer)": lambda: backend.sgd_update(flat, flat_grad, 1e-12),
        "relu_backward 128x128 + 128x64": lambda: (
            backend.relu_backward(g1, h1),
            backend.relu_backward(g2, h2),
        ),
        "column_sums 128x128 + 128x64": lambda: (backend.column_sums(g1), backend.column_sums(g2)),
        "bias add + ReLU in place 128x128": lambda: np.maximum(np.add(h1, bias, out=g1), 0, out=g1),
        "one small NumPy call (128x10 add)": lambda: logits + 1.0,
    }
    return {
        name: round(min(timeit.repeat(call, number=200, repeat=7)) / 200 * 1e6, 1)
        for name, call in calls.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--tune-allocator", action="store_true", help="as the gpunn command does")
    parser.add_argument("--calls", action="store_true", help="print every call one step makes")
    parser.add_argument("--instructions", action="store_true", help="also count them with callgrind")
    parser.add_argument("--components", action="store_true", help="also time each non-GEMM primitive")
    parser.add_argument("--run-steps", nargs=2, metavar=("WHAT", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help="write the results here (JSON; refuses an existing file)")
    args = parser.parse_args()
    if args.run_steps:
        run_steps(args.run_steps[0], int(args.run_steps[1]), args.rows)
        return 0
    if args.out and Path(args.out).exists():
        print(f"step_overhead: {args.out} exists; give a new file", file=sys.stderr)
        return 2
    if args.tune_allocator:
        from gpunn.backend.numpy_backend import tune_host_allocator

        tune_host_allocator()
    x, y = synthetic(args.rows)
    step_run, first_step = step_epoch(x, y)
    runners = {"step": step_run, "loop": loop_epoch(x, y), "gemm": gemm_epoch(args.rows)}
    calls = count_calls(first_step())
    operations = numpy_operations(x, y)
    for run in runners.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runners}
    faults: dict[str, list[int]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            start, cpu_start = time.perf_counter(), time.process_time()
            run()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)  # all threads': the work, under any load
            faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before)
    ratios = {
        f"{name}/gemm": [t / g for t, g in zip(times[name], times["gemm"], strict=True)]
        for name in ("step", "loop")
    }
    result = {
        "rows": args.rows,
        "batch": BATCH,
        "sizes": SIZES,
        "rounds": args.rounds,
        "allocator_tuned": args.tune_allocator,
        "numpy": np.__version__,
        "median_s": {name: round(statistics.median(t), 4) for name, t in times.items()},
        "ratios": {
            name: {
                "median": round(statistics.median(r), 3),
                "min": round(min(r), 3),
                "max": round(max(r), 3),
                "iqr": [round(q, 3) for q in statistics.quantiles(r, n=4)[::2]],
            }
            for name, r in ratios.items()
        },
        # page faults: a fresh temporary past glibc's mmap threshold is new pages, touched and zeroed each step
        "page_faults_per_step": {
            name: round(statistics.median(f) / -(-args.rows // BATCH), 1) for name, f in faults.items()
        },
        "cpu_ratios": {
            f"{name}/gemm": round(
                statistics.median(c / g for c, g in zip(cpu[name], cpu["gemm"], strict=True)), 3
            )
            for name in ("step", "loop")
        },
        "per_step": {
            "numpy_operations": operations["total"],
            "c_calls": calls["c_calls"],
            "python_calls": calls["python_calls"],
        },
        "component_us": component_costs(x, y) if args.components else None,
        "instructions_per_step": instructions_per_step(args.rows) if args.instructions else None,
        "times_s": {name: [round(v, 4) for v in t] for name, t in times.items()},
        "cpu_s": {name: [round(v, 4) for v in t] for name, t in cpu.items()},
    }
    print(json.dumps({k: v for k, v in result.items() if k != "times_s"}, indent=1))
    if args.calls:
        for name, count in operations["by_name"].items():
            print(f"{count:5d} {name}")
        for name, count in calls["by_name"].items():
            print(f"{count:5d} {name}")
    if args.out:
        result["numpy_operations_by_name"] = operations["by_name"]
        result["calls_by_name"] = calls["by_name"]
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
