"""Catching a run that does not learn: a loss stuck at chance level, ln(number of classes), told by cause.

Two causes look alike in the loss and need opposite fixes:
- dead units: a too-high lr for the batch size (lr 2, or lr 0.2 at batch 16 before it was scaled) kills
  ReLUs (or saturates sigmoids) in the first steps; the network then gives every input the same output,
  no gradient flows back, and nothing recovers it. From epoch CHECK_EPOCHS on (or at the end of a shorter
  run) such an epoch stops the run (saved) with one line: a smaller lr or a larger batch.
- a slow start: the units are alive but the lr is still warming up or simply low (sigmoid on digits at
  lr 0.2 sits near ln 10 for four epochs, then learns). Stopping it would be wrong, so the run goes on;
  only a run that ends still at chance is reported, with the opposite advice: a larger lr or more epochs.
The cause is read from the hidden units on a sample of training images: a unit whose output is the same
for every image is dead (ReLU) or saturated (sigmoid); a layer with DEAD_FRACTION of those is dead.
"""

from __future__ import annotations

import math

import numpy as np

from gpunn.errors import Options

CHECK_EPOCHS = 2  # epoch 1 may start near chance; a healthy run is clearly above it by epoch 2
LOSS_MARGIN = 0.02  # within 2% of ln(C)
DEAD_FRACTION = 0.5  # a hidden layer with at least half its units constant: the network is dead
SAMPLE_ROWS = 512  # training images the units are judged on
CONSTANT = 1e-6  # a unit whose output varies less than this over the sample is constant


def at_chance(record: dict, n_classes: int) -> bool:
    chance_loss = math.log(n_classes)
    return (
        abs(record["loss"] - chance_loss) <= LOSS_MARGIN * chance_loss
        and record["train_accuracy"] <= 1.5 / n_classes
    )


def constant_unit_fractions(model, images) -> list[float]:
    """Per hidden activation layer, the fraction of its units whose output is the same for every row."""
    from gpunn.nn.layers import Dense, Dropout

    backend, fractions, x = model.backend, [], images
    for layer in model.layers[:-1]:
        x = layer.forward(x)
        if not isinstance(layer, (Dense, Dropout)):  # an activation: its output is what the next layer sees
            values = backend.to_host(x)
            spread = values.max(axis=0) - values.min(axis=0)
            fractions.append(float(np.mean(spread <= CONSTANT)))
    return fractions


def stall_message(history: list[dict], config, out, n_classes: int, unit_fractions) -> Options | None:
    """The error message when training should stop for being stuck at chance, else None.

    `unit_fractions()` gives constant_unit_fractions of the model now; it is called only at chance level.
    """
    check_at = len(history)
    if check_at < min(CHECK_EPOCHS, config.epochs) or not at_chance(history[-1], n_classes):
        return None
    last = history[-1]
    stuck = (
        f"the loss is stuck at chance level ({last['loss']:.3f}, ln {n_classes} = {math.log(n_classes):.3f}; "
        f"train accuracy {last['train_accuracy']:.1%}) after {check_at} epoch(s)"
    )
    fractions = unit_fractions()
    dead = max(fractions, default=0.0)
    if dead >= DEAD_FRACTION:
        layer = fractions.index(dead) + 1
        return Options(
            lambda n: (
                f"{stuck}, and {dead:.0%} of hidden layer {layer}'s units give the same output for every "
                f"image (dead or saturated): the lr {config.lr:g} is too high for batch size "
                f"{config.batch_size}; try {n('lr', float(f'{config.lr / 4:g}'))} or a larger "
                f"{n('batch_size')} (run saved in {out})"
            )
        )
    if check_at < config.epochs:
        return None  # the units are alive: a slow start (or a warm-up), which may still take off
    return Options(
        lambda n: (
            f"{stuck}, with the hidden units alive ({dead:.0%} constant at most): the lr {config.lr:g} is too "
            f"low to leave the start in {check_at} epochs; try {n('lr', float(f'{config.lr * 5:g}'))} or more "
            f"{n('epochs')} (run saved in {out})"
        )
    )
