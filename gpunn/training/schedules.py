"""Learning-rate schedules as pure functions of the global step (so a resumed run lands on the same lr)."""

from __future__ import annotations

import math

ONECYCLE_WARMUP = 0.3  # fraction of steps spent rising from lr/25 to lr


def constant(base_lr: float, t: float) -> float:
    return base_lr


def step_decay(base_lr: float, t: float) -> float:
    """x0.1 at 50% and again at 75% of training."""
    return base_lr * (0.1 if t >= 0.5 else 1.0) * (0.1 if t >= 0.75 else 1.0)


def cosine(base_lr: float, t: float) -> float:
    """base_lr * (1 + cos(pi t)) / 2."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * t))


def onecycle(base_lr: float, t: float) -> float:
    """Linear warm-up from base_lr/25 over the first 30%, then cosine down to base_lr/1e4."""
    start, end = base_lr / 25.0, base_lr / 1e4
    if t < ONECYCLE_WARMUP:
        return start + (base_lr - start) * t / ONECYCLE_WARMUP
    u = (t - ONECYCLE_WARMUP) / (1.0 - ONECYCLE_WARMUP)
    return end + (base_lr - end) * 0.5 * (1.0 + math.cos(math.pi * u))


# The one registry of schedule names (config validation, the CLI's --schedule help, lr_at):
# name -> (base lr, fraction of training done in [0, 1]) -> lr.
SCHEDULES = {"constant": constant, "step": step_decay, "cosine": cosine, "onecycle": onecycle}


def lr_at(schedule: str, base_lr: float, step: int, total_steps: int) -> float:
    """The learning rate for 0-based `step` of `total_steps` under the named schedule."""
    try:
        rule = SCHEDULES[schedule]
    except KeyError:
        raise ValueError(f"unknown schedule {schedule!r}: choose from {', '.join(SCHEDULES)}") from None
    return rule(base_lr, min(step / max(total_steps, 1), 1.0))
