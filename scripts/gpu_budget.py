"""Device work of ONE training step of the real training loop, counted on the CuPy stand-in.

    GPUNN_CUDA_STANDIN=1 python scripts/gpu_budget.py [--check]

prints one JSON line per optimizer config: {"config", "launches", "syncs", "h2d_copies", "d2h_reads"};
--check also holds them to the budget (LAUNCH_BUDGET, 0 syncs, 0 uploads) and exits 1 naming what broke it.
A step is everything one iteration of gpunn.training.loop's batch loop queues: from one `_step` call to the
next (slicing the batch, forward, loss, backward, update, adding up the epoch's loss). tests/
test_gpu_budget.py and scripts/check_gpu.py hold these numbers down: 0 syncs and 0 host-to-device copies
per step, and no launch creep. The counts need the stand-in (tests/cuda_standin); CuPy on a real GPU has no counters.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# optimizer settings on top of the default recipe, one line each
CONFIGS = {
    "default": {},
    "sgd": {"optimizer": "sgd", "momentum": 0.0, "weight_decay": 0.0},
    "sgd+weight_decay": {"optimizer": "sgd", "momentum": 0.0, "weight_decay": 1e-4},
    "adam": {"optimizer": "adam", "lr": 0.001},
}
# Launches per steady-state step (MLP 64-128-64-10 on digits, batch 64), counted as CuPy launches: one per
# ElementwiseKernel, reduction, cuBLAS GEMM (also into out=) or fill; views, empty() and 0-d scalars passed by
# value are none. 16 = gather of pixels and labels 1 + forward 6 (GEMM + bias/ReLU epilogue per layer) + loss 1
# (row kernel whose last thread sums the batch, adds it to the epoch totals and writes the gradient's column
# sums into the output layer's bias gradient) + backward 7 (5 GEMMs, one ReLU-mask-and-bias-sum kernel per
# hidden layer) + flat update 1, for every optimizer (issue 12 had 47/47/59/137, issue 14 started from 21). A
# performance change should lower these (and update them); a rise means launch creep.
LAUNCH_BUDGET = {"default": 16, "sgd": 16, "sgd+weight_decay": 16, "adam": 16}
MEASURED_STEP = 3  # steady state: optimizer state exists, nothing is lazily created any more


class _Measured(Exception):
    """Raised at the start of the step after the measured one: the rest of the epoch is not needed."""


def use_standin() -> None:
    """Put the stand-in first on the import path (the script is run by hand, not by pytest)."""
    if os.environ.get("GPUNN_CUDA_STANDIN") != "1":
        sys.exit(
            "gpu_budget.py: error: the counts come from the CuPy stand-in; "
            "run it as GPUNN_CUDA_STANDIN=1 python scripts/gpu_budget.py"
        )
    sys.path.insert(0, str(ROOT / "tests" / "cuda_standin"))


def step_budget(config: str, overrides: dict, dtype: str = "float32") -> dict:
    """Counters between the MEASURED_STEP-th and the next call of the loop's _step, on cuda:0."""
    import cupy

    from gpunn.training import loop as train_loop
    from gpunn.training import run as training

    if not getattr(cupy, "STANDIN", False):
        raise RuntimeError("real CuPy was imported: the budget needs the stand-in's counters")
    marks = []
    real_step = train_loop.Loop._step

    def counted(self, *args, **kwargs):
        marks.append(cupy.counters.snapshot())
        if len(marks) > MEASURED_STEP:
            raise _Measured
        return real_step(self, *args, **kwargs)

    train_loop.Loop._step = counted
    try:
        with tempfile.TemporaryDirectory() as out:
            training.train(
                out=Path(out) / "run",
                device="cuda",
                dtype=dtype,
                dataset="digits",
                epochs=1,
                batch_size=64,
                verbose=False,
                **overrides,
            )
    except _Measured:
        pass
    finally:
        train_loop.Loop._step = real_step
    before, after = marks[MEASURED_STEP - 1], marks[MEASURED_STEP]
    return {"config": config, **{k: after[k] - before[k] for k in before}}


def over_budget(counts: dict) -> list[str]:
    """What one config's step does beyond the budget, one phrase each (none when it keeps to it)."""
    limit = LAUNCH_BUDGET[counts["config"]]
    broken = [
        f"{counts[k]} {what} per step (budget 0)"
        for k, what in (("syncs", "syncs"), ("h2d_copies", "uploads"))
        if counts[k]
    ]
    if not 0 < counts["launches"] <= limit:
        broken.append(f"{counts['launches']} launches per step (budget {limit})")
    return broken


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a config breaks the budget")
    args = parser.parse_args(argv)
    use_standin()
    broken = []
    for name, overrides in CONFIGS.items():
        counts = step_budget(name, overrides)
        print(json.dumps(counts), flush=True)
        broken += [f"{name}: {phrase}" for phrase in over_budget(counts)]
    if args.check:
        if broken:
            print("gpu_budget.py: over budget: " + "; ".join(broken), file=sys.stderr)
            return 1
        print(
            f"within budget: {len(CONFIGS)} configs, <= {max(LAUNCH_BUDGET.values())} launches, 0 syncs, 0 uploads per step"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
