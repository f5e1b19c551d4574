"""scripts/step_overhead.py counts what one training step does (no timing is asserted here)."""

from __future__ import annotations

import numpy as np
from script_modules import load_script


def test_a_step_makes_eight_gemms_and_at_most_45_numpy_operations():
    """784-128-64-10: x @ W and x.T @ g for each of the three layers, g @ W.T for the two above the first
    (nobody reads the input's gradient); everything else around them is at most 37 NumPy operations."""
    script = load_script("step_overhead.py")
    x, y = script.synthetic(512)
    operations = script.numpy_operations(x, y)["by_name"]
    assert operations["ufunc matmul.__call__"] == 8
    assert sum(operations.values()) <= 45, operations


def test_the_loop_epoch_trains_through_gpunn_trains_own_epoch():
    script = load_script("step_overhead.py")
    x, y = script.synthetic(300)
    run = script.loop_epoch(x, y)
    run()
    run()
    assert run.state.epoch == 2 and len(run.state.history) == 2
    first, second = (record["loss"] for record in run.state.history)
    assert np.isfinite(second) and second != first  # the second epoch trained weights the first had moved
