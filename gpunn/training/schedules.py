"""Learning-rate schedules as pure functions of the global step (so a resumed run lands on the same lr).

Most schedules are stretched over the run's epoch budget. "exponential" is not: it only counts epochs done,
so early stopping can end a run anywhere without cutting a schedule that is still warming up (onecycle
stretched over `--epochs 30` is still rising when early stopping ends it at epoch 9).
"""

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


EXPONENTIAL_WARMUP_EPOCHS = 1.0  # linear rise from lr/25 over the first epoch, as onecycle starts
EXPONENTIAL_DECAY = 0.8  # lr factor per epoch after the warm-up (chosen on a validation split: README)


def exponential(base_lr: float, epochs_done: float) -> float:
    """Linear warm-up from base_lr/25 over the first epoch, then x EXPONENTIAL_DECAY per epoch; no budget."""
    start = base_lr / 25.0
    if epochs_done < EXPONENTIAL_WARMUP_EPOCHS:
        return start + (base_lr - start) * epochs_done / EXPONENTIAL_WARMUP_EPOCHS
    return base_lr * EXPONENTIAL_DECAY ** (epochs_done - EXPONENTIAL_WARMUP_EPOCHS)


# The one registry of schedule names (config validation, the CLI's --schedule help, lr_at):
# name -> (base lr, progress) -> lr, where progress is the fraction of training done in [0, 1], or, for the
# schedules in PER_EPOCH, the number of epochs done (they need no epoch budget).
SCHEDULES = {
    "constant": constant,
    "step": step_decay,
    "cosine": cosine,
    "onecycle": onecycle,
    "exponential": exponential,
}
PER_EPOCH = frozenset({"exponential"})
# what early stopping trains with instead of a schedule stretched over the epoch budget (config.py)
WITHOUT_BUDGET = {"onecycle": "exponential", "cosine": "exponential", "step": "exponential"}


def lr_at(schedule: str, base_lr: float, step: int, total_steps: int, steps_per_epoch: int = 1) -> float:
    """The learning rate for 0-based `step` of `total_steps` (`steps_per_epoch` a epoch) under the named schedule."""
    try:
        rule = SCHEDULES[schedule]
    except KeyError:
        raise ValueError(f"unknown schedule {schedule!r}: choose from {', '.join(SCHEDULES)}") from None
    if schedule in PER_EPOCH:
        return rule(base_lr, step / max(steps_per_epoch, 1))
    return rule(base_lr, min(step / max(total_steps, 1), 1.0))
