"""Learning-rate schedules as pure functions of the global step (so a resumed run lands on the same lr)."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "step", "cosine", "onecycle")
ONECYCLE_WARMUP = 0.3  # fraction of steps spent rising from lr/25 to lr


def lr_at(schedule: str, base_lr: float, step: int, total_steps: int) -> float:
    """The learning rate for 0-based `step` of `total_steps`.

    constant: base_lr. step: x0.1 at 50% and again at 75% of training. cosine: base_lr * (1 + cos(pi t)) / 2.
    onecycle: linear warm-up from base_lr/25 over the first 30%, then cosine down to base_lr/1e4.
    """
    t = min(step / max(total_steps, 1), 1.0)
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        return base_lr * (0.1 if t >= 0.5 else 1.0) * (0.1 if t >= 0.75 else 1.0)
    if schedule == "cosine":
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "onecycle":
        start, end = base_lr / 25.0, base_lr / 1e4
        if t < ONECYCLE_WARMUP:
            return start + (base_lr - start) * t / ONECYCLE_WARMUP
        u = (t - ONECYCLE_WARMUP) / (1.0 - ONECYCLE_WARMUP)
        return end + (base_lr - end) * 0.5 * (1.0 + math.cos(math.pi * u))
    raise ValueError(f"unknown schedule {schedule!r}: choose from {', '.join(SCHEDULES)}")
