"""The epoch loop: mini-batch steps over a shuffled order, then one read of the epoch's totals.

Data is uploaded once (uint8); each batch is gathered and scaled on the device; loss and accuracy
accumulate on the device and are read once per epoch. The state is saved after every epoch and on
SIGINT/SIGTERM mid-epoch (with the epoch's order and position, so a resume is exact).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from gpunn.errors import Options, TrainingDivergedError, TrainingStalledError
from gpunn.nn.losses import SoftmaxCrossEntropyTotals, checked_labels
from gpunn.nn.model import Sequential
from gpunn.nn.step import train_step
from gpunn.training.callbacks import Callbacks, TrainRun
from gpunn.training.evaluator import Evaluator
from gpunn.training.ranks import Ranks
from gpunn.training.report import Reporter
from gpunn.training.schedules import lr_at
from gpunn.training.stall import SAMPLE_ROWS, constant_unit_fractions, stall_message
from gpunn.training.state import TrainingState
from gpunn.training.store import RunStore

# An epoch's mean loss this many times chance level (ln of the classes; a network starts near it) has
# blown up, finite or not: lr 1.0 at batch 128 gives 1.2e9 after one MNIST epoch, and 11% accuracy.
BLOW_UP = 10


class SignalCatcher:
    """Turns SIGINT/SIGTERM into a flag the loop checks between batches (main thread only)."""

    def __init__(self):
        self.signum: int | None = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._catch)
        return self

    def _catch(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class TrainingBatches:
    """The training set on the device (uint8 images uploaded once, shared not copied on the host backend)."""

    def __init__(self, train_set, backend):
        self.backend = backend
        self.images = backend.from_host(train_set.features, copy=False)
        self.classes = len(train_set.class_names)
        # labels range-checked once, here: a batch's loss trusts them (no read-back per step)
        self.labels = backend.from_host(checked_labels(train_set.labels, self.classes), copy=False)
        self.n = len(train_set)

    def batch(self, rows):
        """(scaled images, integer labels) of `rows`, gathered on the device in one pass (float features,
        your own arrays', are gathered as they are)."""
        if self.images.dtype != self.backend.xp.uint8:
            return self.backend.take_rows(self.images, rows), self.backend.take_rows(self.labels, rows)
        return self.backend.gather_batch(self.images, self.labels, rows)

    def sample(self, count: int):
        """The first `count` training images, scaled, on the device."""
        rows = self.backend.from_host(np.arange(min(count, self.n), dtype=np.int64))
        return self.batch(rows)[0]


@dataclass
class Loop:
    """Advances a TrainingState epoch by epoch; the objects it is given measure, save and report each epoch."""

    model: Sequential
    optimizer: object
    batches: TrainingBatches
    ranks: Ranks
    evaluator: Evaluator
    store: RunStore
    reporter: Reporter
    stall_check: bool = True  # stop a run stuck at chance level (gpunn/training/stall.py)
    callbacks: Callbacks = field(default_factory=Callbacks)  # the caller's (gpunn/training/callbacks.py)

    @property
    def backend(self):
        return self.model.backend

    def run(self, state: TrainingState) -> None:
        """Train until state.config.epochs (or early stopping); SIGINT/SIGTERM save and raise TrainingInterrupted."""
        # overflow is detected and reported once per epoch, so NumPy's per-operation warnings are noise
        with SignalCatcher() as signals, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            self._run(state, signals)

    def _run(self, state: TrainingState, signals: SignalCatcher) -> None:
        config = state.config
        train_seconds = sum(h["seconds"] for h in state.history)
        if state.stopped_early:
            self.reporter.line(
                f"this run stopped early after epoch {state.epoch} (best: epoch {state.best_epoch}); "
                "nothing left to train"
            )
        self.callbacks.train_begin(TrainRun(self.model, config, self.store.out, state.epoch))
        while state.epoch < config.epochs and not state.stopped_early:
            record = self._epoch(state, signals)
            train_seconds += record["seconds"]
            self.reporter.epoch(record, config.epochs)
            if state.stopped_early:
                self.reporter.line(
                    f"early stopping: no lower validation loss for {config.early_stopping} epochs after "
                    f"epoch {state.best_epoch}"
                )
            if self.callbacks.epoch_end(record):
                self.reporter.line(
                    f"stopped by callback {self.callbacks.stopped_by!r} after epoch {state.epoch} "
                    f"(saved; resume to train on)"
                )
                break
            if self.stall_check:
                self._check_stall(state)
        samples = self.batches.n * len(state.history)
        params = self.model.num_parameters()
        self.reporter.summary(state.history, state.best_epoch, params, samples, train_seconds, self.store)
        self.callbacks.train_end(state.history)

    def _check_stall(self, state: TrainingState) -> None:
        def unit_fractions():
            return constant_unit_fractions(self.model, self.batches.sample(SAMPLE_ROWS))

        stalled = stall_message(
            state.history, state.config, self.store.out, self.batches.classes, unit_fractions
        )
        if stalled is not None:
            raise TrainingStalledError(stalled)

    def steps_per_epoch(self, config) -> int:
        return -(-self.batches.n // config.batch_size)

    def _epoch(self, state: TrainingState, signals: SignalCatcher) -> dict:
        """Train one epoch from where `state` stands, measure it, save it; its metrics record."""
        config, backend, n = state.config, self.backend, self.batches.n
        steps = self.steps_per_epoch(config)
        epoch = state.epoch + 1
        if state.order is None:
            state.order = state.rng.permutation(n)
            state.step_in_epoch, state.loss_sum, state.correct = 0, 0.0, 0
        order = backend.from_host(state.order.astype(np.int64))
        # the epoch's loss adds up in float64 on every backend (NumPy 1.x would promote a float32 sum anyway)
        loss_sum = backend.from_host(np.array(state.loss_sum), dtype="float64")
        correct = backend.from_host(np.array(state.correct, dtype=np.int64))
        bar = self.reporter.bar(steps, state.step_in_epoch, epoch, config.epochs)
        trained = n - min(state.step_in_epoch * config.batch_size, n)  # a resumed epoch trains only its rest
        start = time.perf_counter()
        for step in range(state.step_in_epoch, steps):
            if self.ranks.stops_locally and signals.signum is not None:
                self._stop(state, step, loss_sum, correct, signals.signum)
            global_step = state.epoch * steps + step
            self.optimizer.lr = lr_at(config.schedule, config.lr, global_step, steps * config.epochs, steps)
            rows = order[step * config.batch_size : min((step + 1) * config.batch_size, n)]
            stepped = self._step(rows, (loss_sum, correct), signals.signum is not None, step, global_step)
            if stepped is None:  # some rank was asked to stop: all stop here, before this step's update
                self._stop(state, step, loss_sum, correct, signals.signum or signal.SIGTERM)
            loss_sum, correct = stepped
            if bar is not None:
                bar.update(1)
        # the epoch's one synchronisation (and, across ranks, one small Allreduce)
        loss_total, train_correct = self.ranks.total(
            float(backend.to_host(loss_sum)), int(backend.to_host(correct))
        )
        loss = loss_total / n
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        if not np.isfinite(loss) or loss > BLOW_UP * math.log(self.batches.classes):
            self._diverged(state, epoch, loss)
        record = {
            "epoch": epoch,
            "loss": loss,
            "train_accuracy": train_correct / n,
            "test_accuracy": self.evaluator.test_accuracy(),
            "lr": self.optimizer.lr,
            "seconds": seconds,
            "samples_per_second": trained / seconds,
        }
        validation = self.evaluator.validation()
        if validation is not None:
            record["val_loss"], record["val_accuracy"] = validation
            self._choose_best(state, record)
        state.history.append(record)
        state.epoch, state.order, state.step_in_epoch = epoch, None, 0
        self.store.save(state)
        return record

    def _choose_best(self, state: TrainingState, record: dict) -> None:
        """best.npz and early stopping, decided on the validation loss."""
        epoch = record["epoch"]
        if state.best_val_loss is None or record["val_loss"] < state.best_val_loss:
            state.best_val_loss, state.best_epoch = record["val_loss"], epoch
            self.store.save_best(
                state, record
            )  # before checkpoint.npz, which records that best.npz holds this epoch
        patience = state.config.early_stopping
        state.stopped_early = bool(patience) and epoch - state.best_epoch >= patience

    def _step(self, rows, totals, stop_requested: bool = False, step: int = 0, global_step: int = 0):
        """One SGD step on `rows` of the training set (this rank's shard of them when distributed).

        Returns the epoch's new (loss sum, correct) on the device, `totals` plus this batch's (the loss adds
        them up in its own pass), or None when a rank asked to stop (then `totals` stay as they were).
        """
        global_rows = rows.shape[0]
        rows, first_row = self.ranks.share_of_batch(rows)
        hook = self.ranks.gradient_hook(
            global_rows, rows.shape[0], stop_requested, step, self.backend.reads_are_cheap
        )
        images, labels = self.batches.batch(rows)
        loss = SoftmaxCrossEntropyTotals(*totals, column_sums_into=self.model.output_bias_grad)
        stepped = train_step(
            self.model,
            self.optimizer,
            images,
            labels,
            loss=loss,
            labels=labels,
            gradient_hook=hook,
            step=global_step,  # keys the dropout masks
            first_row=first_row,
        )
        return None if stepped is None else loss.totals

    def _stop(self, state: TrainingState, step: int, loss_sum, correct, signum: int) -> None:
        """Save the exact position (the partial sums over all ranks) and raise TrainingInterrupted."""
        loss_total, correct_total = self.ranks.total(
            float(self.backend.to_host(loss_sum)), int(self.backend.to_host(correct))
        )
        state.step_in_epoch, state.loss_sum, state.correct = step, loss_total, int(correct_total)
        self.store.interrupted(state, signum, self.steps_per_epoch(state.config))

    def _diverged(self, state: TrainingState, epoch: int, loss: float) -> None:
        config = state.config
        kept = (
            f"the last good checkpoint (epoch {state.epoch}) is kept in {self.store.out}"
            if state.epoch
            else "no epoch finished, so no checkpoint was written"
        )
        # a decay above 1 pulls harder than any loss gradient: then it, not the lr, is the culprit
        culprit = "weight_decay" if config.weight_decay > 1 else "lr"
        value = getattr(config, culprit)
        blown = "" if not np.isfinite(loss) else f" (over {BLOW_UP}x chance level, ln {self.batches.classes})"
        raise TrainingDivergedError(
            Options(
                lambda n: (
                    f"loss became {loss:.4g}{blown} in epoch {epoch} (lr {config.lr}, weight decay "
                    f"{config.weight_decay}): training stopped; {kept}; try a smaller {n(culprit)} (now {value:g})"
                )
            )
        )
