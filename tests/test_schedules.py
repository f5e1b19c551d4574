"""Learning-rate schedules: every milestone and the shape of each curve, from the formulas in the docs."""

from __future__ import annotations

import math

import pytest

from gpunn.training.schedules import SCHEDULES, lr_at, onecycle

BASE = 0.4
TOTAL = 100


def curve(schedule: str, total: int = TOTAL) -> list[float]:
    return [lr_at(schedule, BASE, step, total) for step in range(total + 1)]


def test_constant_is_the_base_rate_at_every_step():
    assert curve("constant") == [BASE] * (TOTAL + 1)


@pytest.mark.parametrize(
    "step, factor",
    [(0, 1.0), (49, 1.0), (50, 0.1), (74, 0.1), (75, 0.01), (99, 0.01), (100, 0.01)],
)
def test_step_drops_tenfold_at_half_and_again_at_three_quarters(step, factor):
    assert lr_at("step", BASE, step, TOTAL) == pytest.approx(BASE * factor, rel=1e-12)


def test_cosine_goes_from_base_through_half_to_zero():
    assert lr_at("cosine", BASE, 0, TOTAL) == pytest.approx(BASE)
    assert lr_at("cosine", BASE, 25, TOTAL) == pytest.approx(BASE * (1 + math.cos(math.pi / 4)) / 2)
    assert lr_at("cosine", BASE, 50, TOTAL) == pytest.approx(BASE / 2)
    assert lr_at("cosine", BASE, 100, TOTAL) == pytest.approx(0.0, abs=1e-15)


def test_onecycle_warms_up_linearly_for_30_percent_then_anneals_to_base_over_1e4():
    start, end = BASE / 25, BASE / 1e4
    assert lr_at("onecycle", BASE, 0, TOTAL) == pytest.approx(start, rel=1e-12)
    assert lr_at("onecycle", BASE, 15, TOTAL) == pytest.approx((start + BASE) / 2, rel=1e-12)
    assert lr_at("onecycle", BASE, 30, TOTAL) == pytest.approx(BASE, rel=1e-12)
    assert lr_at("onecycle", BASE, 65, TOTAL) == pytest.approx((BASE + end) / 2, rel=1e-12)
    assert lr_at("onecycle", BASE, 100, TOTAL) == pytest.approx(end, rel=1e-9)
    values = curve("onecycle")
    peak = values.index(max(values))
    assert peak == 30
    assert all(a < b for a, b in zip(values[:peak], values[1 : peak + 1], strict=True))
    assert all(a > b for a, b in zip(values[peak:-1], values[peak + 1 :], strict=True))


@pytest.mark.parametrize("schedule", ["step", "cosine", "onecycle"])
def test_steps_past_the_end_stay_at_the_final_rate(schedule):
    assert lr_at(schedule, BASE, 3 * TOTAL, TOTAL) == lr_at(schedule, BASE, TOTAL, TOTAL)


def test_a_single_step_run_and_an_empty_run():
    assert lr_at("cosine", BASE, 1, 1) == pytest.approx(0.0, abs=1e-15)  # step 1 of 1 is the end
    assert lr_at("cosine", BASE, 0, 0) == pytest.approx(BASE)  # no steps: no division by zero


def test_every_listed_schedule_is_accepted_and_others_are_refused():
    for schedule in SCHEDULES:
        assert lr_at(schedule, BASE, 0, TOTAL) > 0
    with pytest.raises(ValueError, match="unknown schedule 'linear': choose from constant, step"):
        lr_at("linear", BASE, 0, TOTAL)


def test_onecycle_peak_at_the_end_of_warm_up_is_exactly_the_base_lr():
    # At t = 0.3 the anneal branch gives base_lr to the bit; the warm-up formula is one rounding off for
    # some rates (0.03 -> 0.030000000000000002), so the peak belongs to the anneal (t < warm-up, not <=).
    for base in (0.015, 0.03, 0.06):
        assert onecycle(base, 0.3) == base
        assert lr_at("onecycle", base, 3, 10) == base
