"""One training step on cuda queues no synchronisation, no upload, and no more launches than today."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_usable, standin_in_use

ROOT = Path(__file__).resolve().parents[1]


def _budget_module():
    spec = importlib.util.spec_from_file_location("gpu_budget", ROOT / "scripts" / "gpu_budget.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Launches per steady-state step: scripts/gpu_budget.py says how they are counted and why 16.
TODAY = _budget_module().LAUNCH_BUDGET


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


def test_the_check_names_each_way_a_step_breaks_the_budget():
    over_budget = _budget_module().over_budget
    counts = {"config": "adam", "launches": TODAY["adam"], "syncs": 0, "d2h_reads": 0, "h2d_copies": 0}
    assert over_budget(counts) == []
    counts.update(launches=TODAY["adam"] + 1, syncs=2, h2d_copies=1)
    assert over_budget(counts) == [
        "2 syncs per step (budget 0)",
        "1 uploads per step (budget 0)",
        f"{TODAY['adam'] + 1} launches per step (budget {TODAY['adam']})",
    ]
    assert over_budget({**counts, "launches": 0, "syncs": 0, "h2d_copies": 0}) == [
        f"0 launches per step (budget {TODAY['adam']})"  # a step that launched nothing measured nothing
    ]
