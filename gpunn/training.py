"""The training loop: mini-batch training of an MLP on one backend, with checkpoints that survive anything.

Data is uploaded once (uint8); each batch is gathered and scaled on the device; loss and accuracy
accumulate on the device and are read once per epoch. A checkpoint is written atomically after every
epoch, and on SIGINT/SIGTERM mid-epoch (with the epoch's order and position, so a resume is exact).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpunn import validate
from gpunn.atomic import write_text
from gpunn.backend import requested_device, requested_dtype, select, select_for_local_rank
from gpunn.checkpoint import architecture_summary, load_checkpoint, require_training_state, save_checkpoint
from gpunn.config import ConfigError, TrainConfig
from gpunn.data import load_dataset, provenance
from gpunn.errors import (
    CheckpointError,
    DataError,
    Options,
    TrainingDivergedError,
    TrainingInterrupted,
    TrainingStalledError,
    flag_name,
)
from gpunn.evaluate import count_correct, loss_and_correct
from gpunn.nn.losses import SoftmaxCrossEntropyTotals, checked_labels
from gpunn.nn.model import Sequential, mlp
from gpunn.nn.optim import make_optimizer
from gpunn.nn.step import train_step
from gpunn.output import quiet_stdout
from gpunn.rng import host_rng
from gpunn.runlock import claim, default_run_folder, remove_stale_temp_files
from gpunn.schedules import lr_at
from gpunn.stall import chance_level_message
from gpunn.validation_split import split_validation

CHECKPOINT = "checkpoint.npz"
BEST = "best.npz"  # the weights of the epoch with the lowest validation loss (with --val-size)
RESUME_MAY_CHANGE = {"epochs"}
STOP_CHECK_EVERY = 32  # where device reads are a sync (a GPU), ranks read the shared stop flag every 32 steps


@dataclass
class TrainResult:
    model: Sequential
    history: list[dict]
    config: TrainConfig
    out_dir: Path
    best_epoch: int = 0  # the epoch with the lowest validation loss (0 without --val-size)

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]["test_accuracy"]

    @property
    def best(self) -> dict | None:
        """The metrics of the validation-chosen epoch (saved as best.npz), or None without --val-size."""
        return self.history[self.best_epoch - 1] if self.best_epoch else None


@dataclass
class _Progress:
    """Where training stands; everything needed to continue bit-exactly."""

    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0
    order: np.ndarray | None = None  # this epoch's shuffled order (host), kept for a mid-epoch resume
    loss_sum: float = 0.0
    correct: int = 0
    history: list[dict] = field(default_factory=list)
    best_val_loss: float | None = None  # early stopping's state: the best validation loss so far
    best_epoch: int = 0
    stopped_early: bool = False


class _Reporter:
    """Plain lines on stdout; a tqdm bar per epoch on stderr when it is a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()

    def line(self, text: str) -> None:
        """Print a progress line; a closed stdout (`| head`) ends the printing, never the training."""
        if not self.enabled:
            return
        try:
            print(text, flush=True)
        except BrokenPipeError:
            self.enabled = False
            quiet_stdout()
            print("gpunn: stdout was closed; training goes on without progress lines", file=sys.stderr)

    def bar(self, total: int, initial: int, epoch: int, epochs: int):
        if not self.tty:
            return None
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False)


class _SignalCatcher:
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


def _build_model(config: TrainConfig, in_features: int, classes: int, backend) -> Sequential:
    sizes = [in_features, *config.hidden, classes]
    return mlp(
        sizes,
        activation=config.activation,
        init=config.init,
        backend=backend,
        seed=config.seed,
        dropout=config.dropout,
    )


def train(
    config: TrainConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    device=None,
    dtype: str | None = None,
    data_dir=None,
    verbose: bool = True,
    distributed: bool = False,
    **overrides,
) -> TrainResult:
    """Train an MLP and return the model with its history. See `gpunn train --help` for every setting.

    `resume=OUT` continues the run saved in OUT (its settings; only `epochs` may be raised).
    `distributed=True` runs data-parallel under mpiexec (see gpunn/distributed.py).
    """
    kwargs = dict(out=out, resume=resume, device=device, dtype=dtype, data_dir=data_dir, verbose=verbose)
    if not distributed:
        return _train(config, job=None, **kwargs, **overrides)
    from gpunn import distributed as mpi

    job = mpi.start()
    try:
        return _train(config, job=job, **kwargs, **overrides)
    except (TrainingInterrupted, TrainingDivergedError, TrainingStalledError, ConfigError) as exc:
        exc.told_elsewhere = job.rank != 0  # every rank raised the same error at the same point: rank 0 reports it
        raise
    except Exception as exc:  # this rank alone failed, or lost a peer: nobody may be left waiting
        job.fail(exc, getattr(exc, "exit_code", 1))
        raise


def _train(config, *, job, out, resume, device, dtype, data_dir, verbose, **overrides) -> TrainResult:
    root = job is None or job.rank == 0
    reporter = _Reporter(verbose and root)
    out, resume, data_dir = (
        validate.path(k, v) for k, v in (("out", out), ("resume", resume), ("data_dir", data_dir))
    )
    if resume is not None:
        if out is not None and Path(out).resolve() != Path(resume).resolve():
            raise ConfigError(
                Options(
                    lambda n: (
                        f"{n('resume')} continues the run in its own folder {resume}: drop "
                        f"{n('out', out)}, or start a new run there without {n('resume')}"
                    )
                )
            )
        out = Path(resume)
    elif config is None:
        config = TrainConfig.from_recipe(overrides.pop("recipe", None) or "default", **overrides)
    elif overrides:
        raise ConfigError("pass either a TrainConfig or keyword settings, not both")
    requested_device(device), requested_dtype(dtype)  # a typo fails before any folder is made
    named = out is not None
    if not named:
        out = default_run_folder(Path(config.dataset).name) if root else None
        if job is not None:  # every rank names the same folder
            out = job.comm.bcast(out, root=0)
    out = Path(out)
    with claim(out, resume is not None, created=not named) if root else contextlib.nullcontext(out):
        return _train_claimed(config, job, out, resume, device, dtype, data_dir, reporter, overrides)


def _resumed_config(out: Path, checkpoint, overrides: dict) -> TrainConfig:
    """The saved settings with the allowed changes (epochs, raised); a finished run is not resumed."""
    saved = TrainConfig.from_dict(checkpoint.header["config"])
    changed = {k for k, v in overrides.items() if v is not None and getattr(saved, k, v) != _normal(k, v)}
    if changed - RESUME_MAY_CHANGE:
        raise ConfigError(
            f"cannot change {', '.join(sorted(changed - RESUME_MAY_CHANGE))} when resuming {out}"
        )
    config = TrainConfig.from_dict({**saved.to_dict(), **{k: overrides[k] for k in changed}})
    done = checkpoint.header["epoch"]
    mid_epoch = checkpoint.header["step_in_epoch"] > 0
    if config.epochs < done + mid_epoch or (config.epochs == done and not mid_epoch):
        raise ConfigError(
            Options(
                lambda n: (
                    f"{out} has already trained {done} of {saved.epochs} epochs"
                    + (f" (and part of epoch {done + 1})" if mid_epoch else "")
                    + f": to train further, resume with {n('epochs')} greater than {done}"
                    + (f" (asked for {config.epochs})" if "epochs" in changed else "")
                )
            )
        )
    return config


def _train_claimed(config, job, out, resume, device, dtype, data_dir, reporter, overrides) -> TrainResult:
    root = job is None or job.rank == 0
    checkpoint = None
    if resume is not None:
        checkpoint = load_checkpoint(out / CHECKPOINT)
        require_training_state(out / CHECKPOINT, checkpoint)
        config = _resumed_config(out, checkpoint, overrides)
        dtype = dtype or checkpoint.header["dtype"]
    saved_data = checkpoint.header.get("data") if checkpoint is not None else None

    dist = None
    if job is not None:
        from gpunn.distributed import Distributed, local_placement

        selection = select_for_local_rank(device, dtype, *local_placement(job.comm))  # a GPU per rank
    else:
        selection = select(device, dtype)
    backend = selection.backend
    if job is not None:
        dist = Distributed(job, backend)
    if dist is not None and not root:
        dist.barrier()  # rank 0 fetches (or downloads) the data first; no download races
    data_dir = provenance.data_dir_for(saved_data, data_dir)
    train_set = load_dataset(config.dataset, "train", data_dir=data_dir)
    test_set = load_dataset(config.dataset, "test", data_dir=data_dir)
    val_set = None
    if config.val_size:
        train_set, val_set = split_validation(train_set, config.val_size, config.seed)
    if dist is not None and root:
        dist.barrier()
    provenance.check_unchanged(saved_data, out, train_set, test_set)
    if train_set.images.shape[1:] != test_set.images.shape[1:]:
        raise DataError(
            f"the {config.dataset} test images are {test_set.images.shape[1:]} but the training images are "
            f"{train_set.images.shape[1:]}: use a test set of the same image size"
        )
    classes = train_set.class_names
    if checkpoint is not None and checkpoint.header.get("classes", list(classes)) != list(classes):
        raise DataError(
            f"{config.dataset} now has the classes {', '.join(classes)}, but run {out} was trained on "
            f"{', '.join(checkpoint.header['classes'])}: point the dataset at the original files"
        )
    model = _build_model(config, train_set.features.shape[1], len(classes), backend)
    optimizer = make_optimizer(config.optimizer, config.lr, config.momentum, config.weight_decay)
    rng = host_rng(config.seed)
    progress = _Progress()
    if checkpoint is not None:
        order = checkpoint.arrays.get("order")
        if order is not None and sorted(order.tolist()) != list(range(len(train_set))):
            raise CheckpointError(
                f"{out / CHECKPOINT}: its sample order does not fit the {len(train_set)} training samples"
            )
        model.set_weights(checkpoint.weights)
        optimizer.load_state_dict(checkpoint.optimizer_state, backend)
        rng.bit_generator.state = checkpoint.header["rng_state"]
        header = checkpoint.header
        progress = _Progress(
            header["epoch"],
            header["step_in_epoch"],
            checkpoint.arrays.get("order"),
            header["loss_sum"] if root else 0.0,  # the partial sums are global: rank 0 carries them
            header["correct"] if root else 0,
            header["history"],
            header.get("best_val_loss"),
            header.get("best_epoch", 0),
            header.get("stopped_early", False),
        )

    data = provenance.record(train_set, test_set)
    if root:
        remove_stale_temp_files(out)
        write_text(
            out / "config.json",
            json.dumps(
                {
                    **config.to_dict(),
                    "device": backend.device,
                    "dtype": backend.dtype_name,
                    "data": data,
                    "classes": list(classes),
                },
                indent=2,
            )
            + "\n",
        )
    ranks = ""
    if dist is not None:  # the pids let a launcher's "process N died" be read as a rank
        pids = ", ".join(f"{rank}={pid}" for rank, (_, pid) in enumerate(job.peers))
        threads = f"; {job.blas_threads} BLAS threads each" if job.blas_threads else ""
        ranks = f" x {dist.size} ranks (rank=pid {pids}; {dist.reducer.name} allreduce{threads})"
    reporter.line(
        f"gpunn: device {selection.describe()}{ranks} | {backend.dtype_name} | {config.dataset} "
        f"({len(train_set)} train, {f'{len(val_set)} validation, ' if val_set else ''}{len(test_set)} test) | "
        f"model {architecture_summary(model.describe())} | "
        f"{model.num_parameters():,} parameters | recipe {config.recipe} | run {out}"
        + (f" | resuming at epoch {progress.epoch + 1}" if checkpoint is not None else "")
    )

    loop = _Loop(
        config, model, optimizer, rng, backend, train_set, test_set, out, reporter, dist, data, val_set
    )
    # overflow is detected and reported once per epoch below, so NumPy's per-operation warnings are noise
    with _SignalCatcher() as signals, np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        loop.run(progress, signals)
    return TrainResult(model, progress.history, config, out, progress.best_epoch)


def _normal(key: str, value):
    return tuple(int(v) for v in value) if key == "hidden" else value


class _Loop:
    def __init__(
        self,
        config,
        model,
        optimizer,
        rng,
        backend,
        train_set,
        test_set,
        out,
        reporter,
        dist=None,
        data=None,
        val_set=None,
    ):
        self.config, self.model, self.optimizer, self.rng = config, model, optimizer, rng
        self.data = data or {}
        self.backend, self.out, self.reporter, self.dist = backend, out, reporter, dist
        # uint8 images uploaded once (shared, not copied, on the host backend: they are only read)
        self.x_train = backend.from_host(train_set.features, copy=False)
        self.classes = list(train_set.class_names)
        # labels range-checked once, here: a batch's loss trusts them (no read-back per step)
        self.y_train = backend.from_host(checked_labels(train_set.labels, len(self.classes)), copy=False)
        test_rows = slice(*dist.shard(len(test_set))) if dist is not None else slice(None)
        self.x_test = backend.from_host(test_set.features[test_rows], copy=False)  # evaluation is sharded
        self.y_test = backend.from_host(test_set.labels[test_rows], copy=False)
        self.n, self.n_test = len(train_set), len(test_set)
        if val_set is not None:  # sharded like the test set
            val_rows = slice(*dist.shard(len(val_set))) if dist is not None else slice(None)
            self.x_val = backend.from_host(val_set.features[val_rows], copy=False)
            self.y_val = backend.from_host(val_set.labels[val_rows], copy=False)
        self.n_val = len(val_set) if val_set is not None else 0
        self.steps_per_epoch = -(-self.n // config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs

    def _global(self, *values):
        """Totals over all ranks of small host numbers (the values themselves in one process)."""
        return self.dist.sum_host(values).tolist() if self.dist is not None else list(values)

    def run(self, progress: _Progress, signals: _SignalCatcher) -> None:
        config, backend = self.config, self.backend
        train_seconds = sum(h["seconds"] for h in progress.history)
        if progress.stopped_early:
            self.reporter.line(
                f"this run stopped early after epoch {progress.epoch} (best: epoch {progress.best_epoch}); "
                "nothing left to train"
            )
        while progress.epoch < config.epochs and not progress.stopped_early:
            epoch = progress.epoch + 1
            if progress.order is None:
                progress.order = self.rng.permutation(self.n)
                progress.step_in_epoch, progress.loss_sum, progress.correct = 0, 0.0, 0
            order = backend.from_host(progress.order.astype(np.int64))
            # the epoch's loss adds up in float64 on every backend (NumPy 1.x would promote a float32 sum anyway)
            loss_sum = backend.from_host(np.array(progress.loss_sum), dtype="float64")
            correct = backend.from_host(np.array(progress.correct, dtype=np.int64))
            bar = self.reporter.bar(self.steps_per_epoch, progress.step_in_epoch, epoch, config.epochs)
            start = time.perf_counter()
            for step in range(progress.step_in_epoch, self.steps_per_epoch):
                if self.dist is None and signals.signum is not None:
                    self._stop(progress, step, loss_sum, correct, signals.signum)
                global_step = progress.epoch * self.steps_per_epoch + step
                self.optimizer.lr = lr_at(config.schedule, config.lr, global_step, self.total_steps)
                rows = order[step * config.batch_size : min((step + 1) * config.batch_size, self.n)]
                stepped = self._step(rows, (loss_sum, correct), signals.signum is not None, step, global_step)
                if stepped is None:  # some rank was asked to stop: all stop here, before this step's update
                    self._stop(progress, step, loss_sum, correct, signals.signum or signal.SIGTERM)
                loss_sum, correct = stepped
                if bar is not None:
                    bar.update(1)
            # the epoch's one synchronisation (and, across ranks, one small Allreduce)
            loss_total, train_correct = self._global(
                float(backend.to_host(loss_sum)), int(backend.to_host(correct))
            )
            loss = loss_total / self.n
            seconds = time.perf_counter() - start
            if bar is not None:
                bar.close()
            if not np.isfinite(loss):
                self._diverged(progress, epoch, loss)
            (test_correct,) = self._global(
                int(backend.to_host(count_correct(self.model, self.x_test, self.y_test)))
            )
            test_accuracy = test_correct / self.n_test
            train_seconds += seconds
            record = {
                "epoch": epoch,
                "loss": loss,
                "train_accuracy": train_correct / self.n,
                "test_accuracy": test_accuracy,
                "lr": self.optimizer.lr,
                "seconds": seconds,
                "samples_per_second": self.n / seconds,
            }
            validation = ""
            if self.n_val:
                validation = self._validate(progress, record)
            progress.history.append(record)
            progress.epoch, progress.order, progress.step_in_epoch = epoch, None, 0
            self._save(progress)
            self.reporter.line(
                f"epoch {epoch:>3}/{config.epochs}  loss {loss:.4f}  train {record['train_accuracy']:.2%}  "
                f"{validation}test {test_accuracy:.2%}  lr {self.optimizer.lr:.3g}  {seconds:.2f} s  "
                f"{record['samples_per_second']:,.0f} samples/s"
            )
            if progress.stopped_early:
                self.reporter.line(
                    f"early stopping: no lower validation loss for {config.early_stopping} epochs after "
                    f"epoch {progress.best_epoch}"
                )
            stalled = chance_level_message(progress.history, config, self.out, len(self.classes))
            if stalled is not None:
                raise TrainingStalledError(stalled)
        self._summary(progress, train_seconds)

    def _validate(self, progress: _Progress, record: dict) -> str:
        """Validation loss and accuracy into `record`; best.npz and early stopping decided on them."""
        loss_sum, correct = loss_and_correct(self.model, self.x_val, self.y_val, len(self.classes))
        loss_total, val_correct = self._global(
            float(self.backend.to_host(loss_sum)), int(self.backend.to_host(correct))
        )
        record["val_loss"], record["val_accuracy"] = loss_total / self.n_val, val_correct / self.n_val
        epoch = record["epoch"]
        if progress.best_val_loss is None or record["val_loss"] < progress.best_val_loss:
            progress.best_val_loss, progress.best_epoch = record["val_loss"], epoch
            self._save_best(record)  # before checkpoint.npz, which records that best.npz holds this epoch
        patience = self.config.early_stopping
        progress.stopped_early = bool(patience) and epoch - progress.best_epoch >= patience
        return f"val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.2%}  "

    def _save_best(self, record: dict) -> None:
        if self.dist is None or self.dist.is_root:
            header = {"config": self.config.to_dict(), "epoch": record["epoch"], "metrics": record}
            save_checkpoint(self.out / BEST, self.model, header)

    def _step(self, rows, totals, stop_requested: bool = False, step: int = 0, global_step: int = 0):
        """One SGD step on `rows` of the training set (this rank's shard of them when distributed).

        Returns the epoch's new (loss sum, correct) on the device, `totals` plus this batch's (the loss adds
        them up in its own pass), or None when a rank asked to stop (then `totals` stay as they were).
        """
        backend, dist = self.backend, self.dist
        global_rows, start = rows.shape[0], 0
        hook = None
        if dist is not None:
            start, stop = dist.shard(global_rows)
            rows = rows[start:stop]
            # each shard's gradient is a mean over its rows: weight it by its share of the global batch
            read_flag = backend.reads_are_cheap or step % STOP_CHECK_EVERY == 0
            share = rows.shape[0] / global_rows

            def hook(buffer):
                return dist.sum_gradients(buffer, share, stop_requested, read_flag)

        x, labels = backend.gather_batch(self.x_train, self.y_train, rows)
        loss = SoftmaxCrossEntropyTotals(*totals)
        stepped = train_step(
            self.model,
            self.optimizer,
            x,
            labels,
            loss=loss,
            labels=labels,
            gradient_hook=hook,
            step=global_step,  # keys the dropout masks
            first_row=start,
        )
        return None if stepped is None else loss.totals

    def _stop(self, progress: _Progress, step: int, loss_sum, correct, signum: int) -> None:
        """Save the exact position (the partial sums over all ranks) and raise TrainingInterrupted."""
        loss_total, correct_total = self._global(
            float(self.backend.to_host(loss_sum)), int(self.backend.to_host(correct))
        )
        progress.step_in_epoch, progress.loss_sum, progress.correct = step, loss_total, int(correct_total)
        self._interrupted(progress, signum)

    def _diverged(self, progress: _Progress, epoch: int, loss: float) -> None:
        config = self.config
        kept = (
            f"the last good checkpoint (epoch {progress.epoch}) is kept in {self.out}"
            if progress.epoch
            else "no epoch finished, so no checkpoint was written"
        )
        # a decay above 1 pulls harder than any loss gradient: then it, not the lr, is the culprit
        culprit = "weight_decay" if config.weight_decay > 1 else "lr"
        value = getattr(config, culprit)
        raise TrainingDivergedError(
            Options(
                lambda n: (
                    f"loss became {loss} in epoch {epoch} (lr {config.lr}, weight decay "
                    f"{config.weight_decay}): training stopped; {kept}; try a smaller {n(culprit)} (now {value:g})"
                )
            )
        )

    def _save(self, progress: _Progress) -> None:
        if self.dist is not None and not self.dist.is_root:
            return  # every rank holds the same weights: rank 0 alone writes
        header = {
            "config": self.config.to_dict(),
            "epoch": progress.epoch,
            "step_in_epoch": progress.step_in_epoch,
            "loss_sum": progress.loss_sum,
            "correct": progress.correct,
            "history": progress.history,
            "rng_state": self.rng.bit_generator.state,
            "best_val_loss": progress.best_val_loss,
            "best_epoch": progress.best_epoch,
            "stopped_early": progress.stopped_early,
            "data": self.data,
            "classes": self.classes,
        }
        arrays = {"order": progress.order} if progress.order is not None else None
        save_checkpoint(self.out / CHECKPOINT, self.model, header, self.optimizer, arrays)
        write_text(self.out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in progress.history))

    def _interrupted(self, progress: _Progress, signum: int) -> None:
        self._save(progress)
        name = signal.Signals(signum).name
        where = f"{name} received in epoch {progress.epoch + 1}, step {progress.step_in_epoch}/{self.steps_per_epoch}"
        raise TrainingInterrupted(
            Options(
                lambda n: (
                    f"{where}: saved {self.out / CHECKPOINT}; continue with: "
                    + (
                        f"gpunn train --resume {self.out}"
                        if n is flag_name
                        else f"train(resume={str(self.out)!r})"
                    )
                )
            ),
            signum,
        )

    def _summary(self, progress: _Progress, train_seconds: float) -> None:
        n_params = self.model.num_parameters()
        samples = self.n * len(progress.history)
        flops = 6 * n_params * samples
        final = progress.history[-1]
        best = ""
        if progress.best_epoch:
            chosen = progress.history[progress.best_epoch - 1]
            best = (
                f"; best validation loss at epoch {progress.best_epoch} (val {chosen['val_accuracy']:.2%}, "
                f"test {chosen['test_accuracy']:.2%}) saved as {self.out / BEST}"
            )
        self.reporter.line(
            f"done: {len(progress.history)} epochs, {train_seconds:.1f} s of training; test accuracy "
            f"{final['test_accuracy']:.2%}{best}; training compute 6*N*D = 6 x {n_params:,} x {samples:,} = "
            f"{flops:.3g} FLOP, {flops / max(train_seconds, 1e-9) / 1e9:.1f} GFLOP/s; saved {self.out / CHECKPOINT}"
        )
