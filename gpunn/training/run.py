"""Training: `train()` resolves the settings, claims the run folder, loads the data, builds (or restores)
the model and hands a TrainingState to the epoch loop (gpunn/training/loop.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from gpunn.atomic import write_text
from gpunn.backend import parse_device, requested_device, requested_dtype, select, select_for_local_rank
from gpunn.checkpoint import architecture_summary, load_checkpoint
from gpunn.data import load_dataset, provenance
from gpunn.errors import (
    DataError,
    DeviceUnavailableError,
    Options,
    TrainingDivergedError,
    TrainingInterrupted,
    TrainingStalledError,
)
from gpunn.nn.model import Sequential, mlp
from gpunn.nn.optim import make_optimizer
from gpunn.training import validate
from gpunn.training.config import ConfigError, TrainConfig
from gpunn.training.evaluator import Evaluator
from gpunn.training.loop import Loop, TrainingBatches
from gpunn.training.ranks import Ranks
from gpunn.training.report import Reporter
from gpunn.training.runlock import claim, default_run_folder, remove_stale_temp_files
from gpunn.training.state import TrainingState
from gpunn.training.store import BEST, CHECKPOINT, RunStore
from gpunn.training.validation_split import split_validation

__all__ = ["BEST", "CHECKPOINT", "TrainResult", "train"]

RESUME_MAY_CHANGE = {"epochs"}


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
    stall_check: bool = True,
    **overrides,
) -> TrainResult:
    """Train an MLP and return the model with its history. See `gpunn train --help` for every setting.

    `resume=OUT` continues the run saved in OUT (its settings and, unless `device` is given, its device;
    only `epochs` may be raised).
    `distributed=True` runs data-parallel under mpiexec (see gpunn/training/distributed.py).
    `stall_check=False` trains on when the loss sits at chance level (gpunn/training/stall.py).
    """
    if not isinstance(stall_check, bool):
        raise ConfigError(f"stall_check= must be True or False, got {stall_check!r}")
    kwargs = dict(out=out, resume=resume, device=device, dtype=dtype, data_dir=data_dir, verbose=verbose)
    kwargs["stall_check"] = stall_check
    if not distributed:
        return _train(config, job=None, **kwargs, **overrides)
    from gpunn.training import distributed as mpi

    job = mpi.start()
    try:
        return _train(config, job=job, **kwargs, **overrides)
    except (TrainingInterrupted, TrainingDivergedError, TrainingStalledError, ConfigError) as exc:
        exc.told_elsewhere = (
            job.rank != 0
        )  # every rank raised the same error at the same point: rank 0 reports it
        raise
    except Exception as exc:  # this rank alone failed, or lost a peer: nobody may be left waiting
        job.fail(exc, getattr(exc, "exit_code", 1))
        raise


@dataclass
class _Request:
    """What the caller asked for, its paths checked; `config` is None for a resume (the run's own is used)."""

    config: TrainConfig | None
    out: Path
    resume: Path | None
    device: object
    dtype: str | None
    data_dir: Path | None
    overrides: dict
    named: bool  # the caller named the folder (else gpunn made a fresh default one)


def _train(config, *, job, verbose, stall_check, **asked) -> TrainResult:
    root = job is None or job.rank == 0
    request = _request(config, job, **asked)
    claimed = claim(request.out, request.resume is not None, created=not request.named)
    with claimed if root else contextlib.nullcontext(request.out):
        return _train_claimed(request, job, Reporter(verbose and root), stall_check)


def _request(config, job, *, out, resume, device, dtype, data_dir, **overrides) -> _Request:
    """The settings and run folder asked for, checked before any folder is made or data is read."""
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
        out = default_run_folder(Path(config.dataset).name) if job is None or job.rank == 0 else None
        if job is not None:  # every rank names the same folder
            out = job.comm.bcast(out, root=0)
    return _Request(config, Path(out), resume, device, dtype, data_dir, overrides, named)


def _resumed_config(out: Path, saved: TrainingState, overrides: dict) -> TrainConfig:
    """The saved settings with the allowed changes (epochs, raised); a finished run is not resumed."""
    changed = {
        k for k, v in overrides.items() if v is not None and getattr(saved.config, k, v) != _normal(k, v)
    }
    if changed - RESUME_MAY_CHANGE:
        raise ConfigError(
            f"cannot change {', '.join(sorted(changed - RESUME_MAY_CHANGE))} when resuming {out}"
        )
    config = TrainConfig.from_dict({**saved.config.to_dict(), **{k: overrides[k] for k in changed}})
    done, mid_epoch = saved.epoch, saved.step_in_epoch > 0
    if config.epochs < done + mid_epoch or (config.epochs == done and not mid_epoch):
        raise ConfigError(
            Options(
                lambda n: (
                    f"{out} has already trained {done} of {saved.config.epochs} epochs"
                    + (f" (and part of epoch {done + 1})" if mid_epoch else "")
                    + f": to train further, resume with {n('epochs')} greater than {done}"
                    + (f" (asked for {config.epochs})" if "epochs" in changed else "")
                )
            )
        )
    return config


def _normal(key: str, value):
    return tuple(int(v) for v in value) if key == "hidden" else value


def _select_backend(request: _Request, saved: TrainingState | None, job):
    """The backend to train on: the device asked for; on a resume without one, the device the run was saved
    on (a bare `cuda` when distributed, so each rank keeps its own GPU). That device being unusable here is an
    error naming the way out, never a quiet move to another device."""
    device, dtype = request.device, request.dtype
    from_run = device is None and saved is not None and saved.device is not None
    if from_run:
        spec = parse_device(saved.device)
        device = "cuda" if job is not None and spec.kind == "cuda" else saved.device
    try:
        if job is not None:
            from gpunn.training.distributed import local_placement

            selection = select_for_local_rank(device, dtype, *local_placement(job.comm))  # a GPU per rank
        else:
            selection = select(device, dtype)
    except DeviceUnavailableError as exc:
        if not from_run:
            raise
        why = str(exc)
        raise DeviceUnavailableError(
            Options(
                lambda n: (
                    f"run {request.out} was trained on {saved.device}, which cannot run here ({why}): "
                    f"resume with {n('device', 'cpu')} (or another device) to continue it elsewhere"
                )
            )
        ) from None
    return dataclasses.replace(selection, source="the run's checkpoint") if from_run else selection


def _load_data(config: TrainConfig, request: _Request, saved: TrainingState | None, dist):
    """(train, test, validation or None), checked against the run's recorded files and classes."""
    root = dist is None or dist.is_root
    if dist is not None and not root:
        dist.barrier()  # rank 0 fetches (or downloads) the data first; no download races
    saved_data = saved.data if saved is not None else None
    data_dir = provenance.data_dir_for(saved_data, request.data_dir)
    train_set = load_dataset(config.dataset, "train", data_dir=data_dir)
    test_set = load_dataset(config.dataset, "test", data_dir=data_dir)
    val_set = None
    if config.val_size:
        train_set, val_set = split_validation(train_set, config.val_size, config.seed)
    if dist is not None and root:
        dist.barrier()
    out = request.out
    provenance.check_unchanged(saved_data, out, train_set, test_set)
    if train_set.images.shape[1:] != test_set.images.shape[1:]:
        raise DataError(
            f"the {config.dataset} test images are {test_set.images.shape[1:]} but the training images are "
            f"{train_set.images.shape[1:]}: use a test set of the same image size"
        )
    classes = list(train_set.class_names)
    if saved is not None and saved.classes is not None and saved.classes != classes:
        raise DataError(
            f"{config.dataset} now has the classes {', '.join(classes)}, but run {out} was trained on "
            f"{', '.join(saved.classes)}: point the dataset at the original files"
        )
    return train_set, test_set, val_set


def _train_claimed(request: _Request, job, reporter: Reporter, stall_check: bool = True) -> TrainResult:
    checkpoint, saved = _saved_run(request)
    config = saved.config if saved is not None else request.config
    selection = _select_backend(request, saved, job)
    backend = selection.backend
    dist = None
    if job is not None:
        from gpunn.training.distributed import Distributed

        dist = Distributed(job, backend)
    ranks = Ranks(dist)
    train_set, test_set, val_set = _load_data(config, request, saved, dist)
    model = _build_model(config, train_set.features.shape[1], len(train_set.class_names), backend)
    optimizer = make_optimizer(config.optimizer, config.lr, config.momentum, config.weight_decay)
    state = TrainingState.start(config)
    if saved is not None:
        saved.check_order(len(train_set), request.out / CHECKPOINT)
        model.set_weights(checkpoint.weights)
        optimizer.load_state_dict(checkpoint.optimizer_state, backend)
        state = saved
        if not ranks.is_root:  # the partial sums are global: rank 0 carries them
            state.loss_sum, state.correct = 0.0, 0
    state.data = provenance.record(train_set, test_set)
    state.classes = list(train_set.class_names)
    state.device, state.dtype = backend.device, backend.dtype_name
    model.trained_on = {
        "dataset": config.dataset,
        "classes": state.classes,
        "data": state.data,
    }  # Model.save()
    if ranks.is_root:
        remove_stale_temp_files(request.out)
        _write_config_json(request.out, state)
    counts = (
        f"{len(train_set)} train, {f'{len(val_set)} validation, ' if val_set else ''}{len(test_set)} test"
    )
    reporter.line(_start_line(selection, job, dist, model, state, request.out, counts, saved is not None))

    loop = Loop(
        model,
        optimizer,
        TrainingBatches(train_set, backend),
        ranks,
        Evaluator(model, ranks, test_set, val_set),
        RunStore(request.out, model, optimizer, writes=ranks.is_root),
        reporter,
        stall_check,
    )
    loop.run(state)
    return TrainResult(model, state.history, config, request.out, state.best_epoch)


def _saved_run(request: _Request):
    """(checkpoint, its TrainingState with the settings this resume may change) or (None, None)."""
    if request.resume is None:
        return None, None
    path = request.out / CHECKPOINT
    checkpoint = load_checkpoint(path)
    saved = TrainingState.from_header(checkpoint.header, checkpoint.arrays.get("order"), path)
    saved.config = _resumed_config(request.out, saved, request.overrides)
    request.dtype = request.dtype or saved.dtype
    return checkpoint, saved


def _start_line(
    selection, job, dist, model, state: TrainingState, out: Path, counts: str, resumed: bool
) -> str:
    """The run's first line: device (and ranks), dtype, data, model, recipe, folder."""
    config, backend = state.config, selection.backend
    chosen = f" ({'; '.join(config.chosen)})" if config.chosen else ""  # what gpunn chose for the caller
    ranks = ""
    if dist is not None:  # the pids let a launcher's "process N died" be read as a rank
        pids = ", ".join(f"{rank}={pid}" for rank, (_, pid) in enumerate(job.peers))
        threads = f"; {job.blas_threads} BLAS threads each" if job.blas_threads else ""
        ranks = f" x {dist.size} ranks (rank=pid {pids}; {dist.reducer.name} allreduce{threads})"
    return (
        f"gpunn: device {selection.describe()}{ranks} | {backend.dtype_name} | {config.dataset} "
        f"({counts}) | model {architecture_summary(model.describe())} | "
        f"{model.num_parameters():,} parameters | recipe {config.recipe}{chosen} | run {out}"
        + (f" | resuming at epoch {state.epoch + 1}" if resumed else "")
    )


def _write_config_json(out: Path, state: TrainingState) -> None:
    """The run's settings, device and data in a file people read (the checkpoint is the one resumed)."""
    summary = {**state.config.to_dict(), "device": state.device, "dtype": state.dtype}
    summary.update(data=state.data, classes=state.classes)
    write_text(out / "config.json", json.dumps(summary, indent=2) + "\n")
