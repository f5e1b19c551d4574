"""One training step on cuda queues no synchronisation, no upload, and no more launches than today."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_usable, standin_in_use

ROOT = Path(__file__).resolve().parents[1]

# Launches per steady-state step (MLP 64-128-64-10 on digits, batch 64), measured on the stand-in with
# `GPUNN_CUDA_STANDIN=1 python scripts/gpu_budget.py`, counted as CuPy launches: one per ElementwiseKernel,
# reduction, cuBLAS GEMM (also into out=) or fill; views, empty() and 0-d scalars passed by value are none.
# 16 = gather of pixels and labels 1 + forward 6 (GEMM + bias/ReLU epilogue per layer) + loss 1 (row kernel whose
# last thread sums the batch, adds it to the epoch totals and writes the gradient's column sums into the output
# layer's bias gradient) + backward 7 (5 GEMMs, one ReLU-mask-and-bias-sum kernel per hidden layer) + flat
# update 1, for every optimizer (issue 12 had 47/47/59/137, issue 14 started from 21). A performance change
# should lower these (and update them); a rise means launch creep.
TODAY = {"default": 16, "sgd": 16, "sgd+weight_decay": 16, "adam": 16}


def _budget_module():
    spec = importlib.util.spec_from_file_location("gpu_budget", ROOT / "scripts" / "gpu_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def budget():
    require_usable("cuda")
    if not standin_in_use():
        pytest.skip("the launch/sync counters exist only on the CuPy stand-in (GPUNN_CUDA_STANDIN=1)")
    return _budget_module()


@pytest.mark.gpu
@pytest.mark.parametrize("config", sorted(TODAY))
def test_a_training_step_never_waits_for_the_device_nor_uploads(budget, config):
    counts = budget.step_budget(config, budget.CONFIGS[config])
    assert counts["syncs"] == 0 and counts["d2h_reads"] == 0
    assert counts["h2d_copies"] == 0
    assert 0 < counts["launches"] <= TODAY[config]


@pytest.mark.gpu
def test_a_stray_host_read_in_the_loop_is_counted(budget, monkeypatch):
    from gpunn.training import loop as train_loop
    real_step = train_loop.Loop._step

    def chatty(self, *args, **kwargs):
        loss_sum, correct = real_step(self, *args, **kwargs)
        print(float(self.backend.to_host(loss_sum)))  # the kind of line the budget exists to catch
        return loss_sum, correct

    monkeypatch.setattr(train_loop.Loop, "_step", chatty)
    counts = budget.step_budget("default", {})
    assert counts["syncs"] == 1 and counts["d2h_reads"] == 1


@pytest.mark.gpu
def test_budget_script_prints_one_json_line_per_config():
    require_usable("cuda")
    if not standin_in_use():
        pytest.skip("the launch/sync counters exist only on the CuPy stand-in (GPUNN_CUDA_STANDIN=1)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gpu_budget.py")], capture_output=True, text=True, check=True
    )
    import json

    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["config"] for line in lines] == list(_budget_module().CONFIGS)
    assert all(line["syncs"] == 0 and line["h2d_copies"] == 0 for line in lines)
