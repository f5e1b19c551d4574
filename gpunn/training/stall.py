"""Catching a run that does not learn: a loss stuck at chance level, ln(number of classes).

A too-high learning rate for the batch size (e.g. the default lr 0.2 with batch 16 before it was scaled,
or lr 2) can make ReLU units die in the first steps: the network then outputs the same distribution for
every input, the loss sits at ln(10) = 2.303 and the accuracy at ~10% for the rest of the run. Training
on costs time and ends with exit 0 and a useless model, so from epoch CHECK_EPOCHS on (or at the end of
a shorter run) an epoch that ends at chance level stops the run (saved) with one line naming the fix.
"""

from __future__ import annotations

import math

from gpunn.errors import Options

CHECK_EPOCHS = 2  # epoch 1 may start near chance; a healthy run is clearly above it by epoch 2
LOSS_MARGIN = 0.02  # within 2% of ln(C)


def at_chance(record: dict, n_classes: int) -> bool:
    chance_loss = math.log(n_classes)
    return (
        abs(record["loss"] - chance_loss) <= LOSS_MARGIN * chance_loss
        and record["train_accuracy"] <= 1.5 / n_classes
    )


def chance_level_message(history: list[dict], config, out, n_classes: int) -> Options | None:
    """The error message when the last epoch (from epoch CHECK_EPOCHS on) ended at chance level, else None."""
    check_at = len(history)
    if check_at < min(CHECK_EPOCHS, config.epochs) or not at_chance(history[-1], n_classes):
        return None
    last = history[-1]
    return Options(
        lambda n: (
            f"the loss is stuck at chance level ({last['loss']:.3f}, ln {n_classes} = "
            f"{math.log(n_classes):.3f}; train accuracy {last['train_accuracy']:.1%}) after {check_at} "
            f"epoch(s): the model is not learning, most likely because the lr {config.lr:g} is too high for "
            f"batch size {config.batch_size}; try {n('lr', float(f'{config.lr / 4:g}'))} or a larger "
            f"{n('batch_size')} (run saved in {out})"
        )
    )
