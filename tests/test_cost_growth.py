"""scripts/cost_growth.py: the points it measures, the growth exponents and gpunn's lead computed from the
recorded times, and the picture drawn from a results file (nothing here asserts a speed)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from script_modules import load_script, run_script

cost_growth = load_script("cost_growth")
ROOT = Path(__file__).resolve().parents[1]


def test_each_axis_varies_one_thing_from_the_headline_setting():
    assert cost_growth.config("width", 4096) == {"sizes": [784, 4096, 4096, 10], "batch": 128, "rows": 60_000}
    assert cost_growth.config("depth", 4)["sizes"] == [784, 256, 256, 256, 256, 10]
    assert cost_growth.config("batch", 32) == {"sizes": [784, 128, 64, 10], "batch": 32, "rows": 60_000}
    assert cost_growth.config("rows", 1_000_000)["rows"] == 1_000_000


def test_steps_timed_are_about_fifty_gflop_at_least_ten_and_whole_epochs_on_the_rows_axis():
    # width 4096: 6 * (784*4096 + 4096^2 + 4096*10) * 128 = 15.4 GFLOP a step, so 3 steps; at least 10
    assert cost_growth.steps_to_time(cost_growth.config("width", 4096), "width") == 10
    # width 1024: 6 * (784*1024 + 1024^2 + 10240) * 128 = 1.43 GFLOP a step: 50 / 1.43 = 35 steps
    assert cost_growth.steps_to_time(cost_growth.config("width", 1024), "width") == 35
    # the headline model: 0.084 GFLOP a step would take 596 steps; the epoch has 469
    assert cost_growth.steps_to_time(cost_growth.config("batch", 128), "batch") == 469
    assert cost_growth.steps_to_time(cost_growth.config("rows", 250_000), "rows") is None


def test_exponent_is_the_log_log_slope_overall_and_over_the_three_largest():
    points = [{"value": x, "epoch_s": y} for x, y in [(1, 1.0), (2, 1.0), (4, 4.0), (8, 16.0), (16, 64.0)]]
    fit = cost_growth.exponents(points, "epoch_s")
    assert fit["largest_3"] == pytest.approx(2.0)  # y = x^2 / 4 from x = 4 on
    logx, logy = np.log([1, 2, 4, 8, 16]), np.log([1, 1, 4, 16, 64])
    assert fit["all"] == pytest.approx(np.polyfit(logx, logy, 1)[0]) and fit["all"] < 2.0
    assert cost_growth.slope([3.0], [1.0]) is None


def test_lead_ends_at_the_first_point_where_gpunn_is_not_faster():
    curves = {
        "gpunn numpy": [{"value": v, "epoch_s": t} for v, t in [(1, 1.0), (2, 2.0), (4, 8.0)]],
        "jax jit cpu": [{"value": v, "epoch_s": t} for v, t in [(1, 2.0), (2, 2.0), (4, 4.0)]],
    }
    lead = cost_growth.lead(curves, "gpunn numpy")["gpunn numpy / jax jit cpu"]
    assert lead["ratio"] == {"1": 0.5, "2": 1.0, "4": 2.0}
    assert lead["gpunn_not_faster_from"] == 2
    curves["jax jit cpu"][1]["epoch_s"] = 4.0  # faster at 2 again: the lead ends at 4
    assert cost_growth.lead(curves, "gpunn numpy")["gpunn numpy / jax jit cpu"]["gpunn_not_faster_from"] == 4


@pytest.mark.subprocess
def test_quick_study_records_each_point_and_fits_from_the_recorded_times(tmp_path):
    out = tmp_path / "growth.json"
    done = run_script("cost_growth.py", "--quick", "--libs", "gpunn", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert set(result["axes"]) == {"width", "depth", "batch", "rows"}
    for axis, curves in result["axes"].items():
        points = curves["gpunn numpy"]
        assert [p["value"] for p in points] == cost_growth.QUICK_AXES[axis]
        assert all(p["peak_rss_mb"] > 0 and p["epoch_s"] > 0 for p in points)
        scale = [p["steps_per_epoch"] / p["steps_timed"] for p in points]
        for p, k in zip(points, scale, strict=True):  # an epoch timed on steps is scaled by the step count
            assert p["scaled_from_steps"] == (k > 1) and (axis != "rows" or not p["scaled_from_steps"])
        fit = result["exponents"][axis]["gpunn numpy"]["time"]["all"]
        xs, ys = [p["value"] for p in points], [p["epoch_s"] for p in points]
        assert fit == pytest.approx(math.log(ys[1] / ys[0]) / math.log(xs[1] / xs[0]))
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_reading_names_each_slope_in_words():
    assert [cost_growth.growth_word(e) for e in (-0.9, 0.05, 0.5, 1.02, 1.5, 1.98, 2.6)] == [
        "falling",
        "flat",
        "sublinear",
        "linear",
        "between linear and quadratic",
        "about quadratic",
        "steeper than quadratic",
    ]
    fits = {"rows": {"gpunn numpy": {"time": {"all": 1.0, "largest_3": 1.01}}}}
    assert cost_growth.reading({"exponents": fits}) == [
        "- Epoch time against rows, slope over the 3 largest points: gpunn numpy 1.01 (linear)."
    ]


def test_points_keeps_both_ends_of_each_axis():
    assert cost_growth.spread_points([32, 64, 128, 256, 512, 1024, 2048, 4096], 3) == [
        32,
        512,
        4096,
    ]  # indices 0, 3.5 -> 4, 7
    assert cost_growth.spread_points([2, 3, 4, 5, 6], 3) == [2, 4, 6]
    assert cost_growth.spread_points([2, 3, 4], None) == [2, 3, 4] == cost_growth.spread_points([2, 3, 4], 9)
    with pytest.raises(cost_growth.bench.BenchError):
        cost_growth.spread_points([2, 3, 4], 1)
