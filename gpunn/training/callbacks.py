"""Callbacks: user code called by the epoch loop, as in Keras (`gpunn.train(callbacks=[...])`).

A callback is any object with some of these methods (each optional):
- `on_train_begin(run)`: `run` is a TrainRun (model, config, run folder, epochs already trained);
- `on_epoch_end(record)`: after the epoch is measured and its checkpoint saved; `record` is the epoch's
  metrics (loss, train_accuracy, test_accuracy, val_loss/val_accuracy with a validation split, lr,
  seconds, samples_per_second). Return `STOP` (or raise StopTraining) to end training after this epoch;
  any other exception propagates out of `train()`, the saved epochs kept (Optuna's TrialPruned is one);
- `on_train_end(history)`: once training ends without an error, with every epoch's record.

Under `distributed=True` callbacks run on rank 0 only and may not stop the run (the other ranks would
go on waiting for it): loggers, not controllers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpunn.training.config import ConfigError

STOP = "stop"
HOOKS = ("on_train_begin", "on_epoch_end", "on_train_end")


class StopTraining(Exception):
    """Raised by a callback's on_epoch_end: training ends after this epoch (saved), with no error."""


@dataclass(frozen=True)
class TrainRun:
    """What a callback learns when training begins."""

    model: object
    config: object
    out_dir: Path
    epochs_done: int  # > 0 on a resume


class Callbacks:
    """The callbacks of one run, called in the order given."""

    def __init__(self, callbacks=None, *, may_stop: bool = True):
        if callbacks is None:
            callbacks = ()
        if not isinstance(callbacks, (list, tuple)):
            raise ConfigError(f"callbacks= takes a list of callback objects, got {type(callbacks).__name__}")
        for callback in callbacks:
            if not any(callable(getattr(callback, hook, None)) for hook in HOOKS):
                raise ConfigError(
                    f"callbacks=: {callback!r} has none of the methods {', '.join(HOOKS)}: nothing would call it"
                )
        self.callbacks = tuple(callbacks)
        self.may_stop = may_stop
        self.stopped_by = None  # the callback that ended training, if one did

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def _each(self, hook: str):
        for callback in self.callbacks:
            method = getattr(callback, hook, None)
            if callable(method):
                yield callback, method

    def train_begin(self, run: TrainRun) -> None:
        for _, method in self._each("on_train_begin"):
            method(run)

    def epoch_end(self, record: dict) -> bool:
        """Call every on_epoch_end (each gets its own copy of the record); True when one asks to stop."""
        stop = False
        for callback, method in self._each("on_epoch_end"):
            try:
                asked = method(dict(record)) == STOP
            except StopTraining:
                asked = True
            if asked:
                if not self.may_stop:
                    raise ConfigError(
                        f"callback {callback!r} asked to stop a distributed run, which callbacks may not do: "
                        "stop it with early_stopping= or epochs="
                    )
                stop = True
                self.stopped_by = self.stopped_by or callback
        return stop

    def train_end(self, history: list[dict]) -> None:
        for _, method in self._each("on_train_end"):
            method([dict(r) for r in history])
