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
from gpunn.data.arrays import ARRAYS, datasets_from_arrays
from gpunn.errors import (
    CheckpointError,
    DataError,
    DeviceUnavailableError,
    GpunnError,
    InvalidDeviceError,
    Options,
    RanksDisagreeError,
    TrainingDivergedError,
    TrainingInterrupted,
    TrainingStalledError,
    out_of_memory,
)
from gpunn.nn.model import Sequential, mlp
from gpunn.nn.optim import make_optimizer
from gpunn.training import validate
from gpunn.training.callbacks import Callbacks
from gpunn.training.config import ConfigError, TrainConfig
from gpunn.training.evaluator import Evaluator
from gpunn.training.loop import Loop, TrainingBatches
from gpunn.training.ranks import Ranks
from gpunn.training.report import Reporter
from gpunn.training.runlock import claim, default_run_folder, remove_stale_temp_files
from gpunn.training.state import TrainingState
from gpunn.training.store import BEST, CHECKPOINT, RunStore
from gpunn.training.validation_split import check_val_size, split_validation

__all__ = ["BEST", "CHECKPOINT", "TrainResult", "check_against_data", "train"]

RESUME_MAY_CHANGE = {"epochs"}
_RAISED_BY_EVERY_RANK = (
    TrainingInterrupted,
    TrainingDivergedError,
    TrainingStalledError,
    ConfigError,
    RanksDisagreeError,
)


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
    data=None,
    test=None,
    stall_check: bool = True,
    callbacks=None,
    **overrides,
) -> TrainResult:
    """Train an MLP and return the model with its history. See `gpunn train --help` for every setting.

    `data=(X, y), test=(X_test, y_test)` trains on your own arrays instead of a dataset (see
    gpunn/data/arrays.py for what they may be); a resume of such a run takes the same arrays again.

    `resume=OUT` continues the run saved in OUT (its settings and, unless `device` is given, its device;
    only `epochs` may be raised).
    `distributed=True` runs data-parallel under mpiexec (see gpunn/training/distributed.py).
    `stall_check=False` trains on when the loss sits at chance level (gpunn/training/stall.py).
    `callbacks=[...]` are called at the start, after every epoch and at the end, as in Keras; one may end
    training after an epoch (gpunn/training/callbacks.py).
    """
    if not isinstance(stall_check, bool):
        raise ConfigError(f"stall_check= must be True or False, got {stall_check!r}")
    kwargs = dict(out=out, resume=resume, device=device, dtype=dtype, data_dir=data_dir, verbose=verbose)
    kwargs.update(data=data, test=test)
    kwargs["stall_check"] = stall_check
    kwargs["callbacks"] = Callbacks(callbacks, may_stop=not distributed)  # checked before anything starts
    if not distributed:
        return _train(config, job=None, **kwargs, **overrides)
    from gpunn.training import distributed as mpi

    job = mpi.start()
    try:
        # the first collective after the start: ranks asked to do different things stop here, together
        job.agree(_asked_settings(config, out, resume, device, dtype, overrides))
        return _train(config, job=job, **kwargs, **overrides)
    except _RAISED_BY_EVERY_RANK as exc:
        # every rank raised the same error at the same point: rank 0 reports it
        exc.told_elsewhere = job.rank != 0
        raise
    except Exception as exc:  # this rank alone failed, or lost a peer: nobody may be left waiting
        job.fail(exc, getattr(exc, "exit_code", 1))
        raise


def _asked_settings(config, out, resume, device, dtype, overrides) -> dict:
    """What this rank was asked to do, as every rank must have been asked: the settings as given (paths
    only as given or not: each host may mount the same run elsewhere)."""
    settings = {k: v for k, v in overrides.items() if v is not None}
    if config is not None:
        settings.update(config.to_dict())
    for key, value in (("out", out), ("resume", resume)):
        settings[key] = None if value is None else "given"
    settings.update(device=None if device is None else str(device), dtype=dtype)
    return settings


def _agree_on_the_run(job, config: TrainConfig, backend, saved: TrainingState | None) -> None:
    """The settings each rank resolved (a resume: from its checkpoint) and the device kind it chose."""
    position = None if saved is None else f"epoch {saved.epoch + 1}, step {saved.step_in_epoch}"
    job.agree(
        config.to_dict(),
        {"the array library": backend.name, "the dtype": backend.dtype_name, "the resume position": position},
    )


def _agree_on_the_data(job, model, train_set, test_set, val_set) -> None:
    """The same data and starting weights on every rank: the sizes, then the bytes (other files of one size)."""
    from gpunn.training.distributed import DATA_WAIT_TIMEOUT, digest

    facts = {"the classes": list(train_set.class_names), "the starting weights": digest(*model.get_weights())}
    for name, dataset in (("training", train_set), ("test", test_set), ("validation", val_set)):
        if dataset is not None:
            facts[f"the {name} set size"] = len(dataset)
            facts[f"the {name} data"] = digest(dataset.features, dataset.labels)
    job.agree({}, facts, DATA_WAIT_TIMEOUT)  # the others load their data after rank 0: a long wait


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
    arrays: tuple | None = None  # (train, test) Datasets of the caller's own arrays


def _train(config, *, job, verbose, stall_check, callbacks, **asked) -> TrainResult:
    root = job is None or job.rank == 0
    request = _request(config, job, **asked)
    claimed = claim(request.out, request.resume is not None, created=not request.named)
    try:
        with claimed if root else contextlib.nullcontext(request.out):
            return _train_claimed(
                request, job, Reporter(verbose and root), stall_check, callbacks if root else Callbacks()
            )
    except MemoryError as exc:  # the host or the GPU: one line naming the size asked for, a GpunnError
        if isinstance(exc, GpunnError):
            raise
        raise out_of_memory(exc) from None


def _request(config, job, *, out, resume, device, dtype, data_dir, data, test, **overrides) -> _Request:
    """The settings and run folder asked for, checked before any folder is made or data is read."""
    out, resume, data_dir = (
        validate.path(k, v) for k, v in (("out", out), ("resume", resume), ("data_dir", data_dir))
    )
    if resume is not None and Path(resume).is_file():
        resume = _run_folder_of(resume)
    arrays = None
    if data is not None or test is not None:
        if data is None or test is None:
            raise ConfigError("your own arrays need both data=(X, y) and test=(X_test, y_test)")
        if overrides.get("dataset") not in (None, ARRAYS) or (
            config is not None and config.dataset != ARRAYS
        ):
            raise ConfigError("pass either data=(X, y) and test=(...) or a dataset, not both")
        arrays = datasets_from_arrays(data, test)
        if resume is None and config is None:
            overrides["dataset"] = ARRAYS
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
    _check_device_settings(device, dtype)  # a typo fails before any folder is made
    named = out is not None
    if not named:
        out = default_run_folder(Path(config.dataset).name) if job is None or job.rank == 0 else None
        if job is not None:  # every rank names the same folder
            out = job.comm.bcast(out, root=0)
    return _Request(config, Path(out), resume, device, dtype, data_dir, overrides, named, arrays)


def _check_device_settings(device, dtype) -> None:
    """device= / --device and dtype= / --dtype parsed (and named, the way the caller spelled them)."""
    for key, value, parse in (("device", device, requested_device), ("dtype", dtype, requested_dtype)):
        try:
            parse(value)
        except InvalidDeviceError as exc:
            if value is None:  # GPUNN_DEVICE / GPUNN_DTYPE: the message names the variable
                raise
            why = str(exc)
            raise InvalidDeviceError(Options(lambda n, why=why, key=key: f"{why} ({n(key)})")) from None


def _run_folder_of(resume: Path) -> Path:
    """`--resume RUN/checkpoint.npz` means RUN; any other file is not a run to continue."""
    resume = Path(resume)
    if resume.name == CHECKPOINT:
        return resume.parent
    raise ConfigError(
        Options(
            lambda n: (
                f"{n('resume')} takes a run folder (the one holding {CHECKPOINT}), not the file {resume}: "
                f"continue a run with {n('resume', resume.parent)}"
            )
        )
    )


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


def check_against_data(config: TrainConfig, train_set) -> None:
    """The settings only the data can check: the model's size and the validation split (a sweep checks
    every combination with this before its first run)."""
    validate.model_size(config.hidden, train_set.features.shape[1], len(train_set.class_names))
    check_val_size(train_set, config.val_size)


def _load_data(config: TrainConfig, request: _Request, saved: TrainingState | None, dist):
    """(train, test, validation or None), checked against the run's recorded files and classes."""
    root = dist is None or dist.is_root
    if dist is not None and not root:  # rank 0 fetches (or downloads) the data first; no download races
        dist.data_barrier()
    saved_data = saved.data if saved is not None else None
    if config.dataset == ARRAYS or request.arrays is not None:
        train_set, test_set = _arrays(config, request, saved)
    else:
        dataset, data_dir = config.dataset, request.data_dir
        if saved is not None:
            dataset, data_dir = provenance.where_to_load(dataset, saved_data, data_dir, f"run {request.out}")
        train_set = load_dataset(dataset, "train", data_dir=data_dir)
        test_set = load_dataset(dataset, "test", data_dir=data_dir)
    check_against_data(config, train_set)
    val_set = None
    if config.val_size:
        train_set, val_set = split_validation(train_set, config.val_size, config.seed)
    if dist is not None and root:
        dist.data_barrier()
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


def _arrays(config: TrainConfig, request: _Request, saved: TrainingState | None):
    """The caller's (train, test) arrays, for a run that trains (or trained) on arrays."""
    if request.arrays is None:
        if saved is not None:
            raise ConfigError(
                f"run {request.out} trained on arrays given in memory: resume it with the same "
                "data=(X, y) and test=(X_test, y_test)"
            )
        raise ConfigError(
            f"dataset {ARRAYS!r} is your own arrays: pass data=(X, y) and test=(X_test, y_test)"
        )
    if config.dataset != ARRAYS:
        raise ConfigError(
            f"run {request.out} trained on {config.dataset}, not on arrays: resume it without data="
        )
    return request.arrays


def _train_claimed(
    request: _Request, job, reporter: Reporter, stall_check: bool = True, callbacks: Callbacks | None = None
) -> TrainResult:
    checkpoint, saved = _saved_run(request)
    config = saved.config if saved is not None else request.config
    selection = _select_backend(request, saved, job)
    backend = selection.backend
    dist = None
    if job is not None:
        from gpunn.training.distributed import Distributed

        _agree_on_the_run(job, config, backend, saved)  # before the collectives that set up the reducer
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
    if job is not None:  # before the first step: other data would mean other steps, or mixed gradients
        _agree_on_the_data(job, model, train_set, test_set, val_set)
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
    with _forgotten_unless_saved(request.out, ranks.is_root and saved is None):
        if ranks.is_root:
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
            callbacks or Callbacks(),
        )
        loop.run(state)
    return TrainResult(model, state.history, config, request.out, state.best_epoch)


@contextlib.contextmanager
def _forgotten_unless_saved(out: Path, new_run: bool):
    """A new run starts in a folder cleared of what a run that saved no checkpoint left there (one killed in
    epoch 1), and takes its own config.json away again if it fails before its first checkpoint: the folder
    is left as it was (removed, when the run made it), and `train --out` there starts afresh."""
    if new_run:
        _remove_unsaved_run(out)
    try:
        yield
    except BaseException:
        if new_run:
            _remove_unsaved_run(out)
        raise


def _remove_unsaved_run(out: Path) -> None:
    if not (out / CHECKPOINT).exists():
        for name in ("config.json", BEST):
            with contextlib.suppress(OSError):
                (out / name).unlink()


def _saved_run(request: _Request):
    """(checkpoint, its TrainingState with the settings this resume may change) or (None, None)."""
    if request.resume is None:
        return None, None
    path = request.out / CHECKPOINT
    if not path.exists() and (request.out / "config.json").exists():  # killed before its first save
        out = request.out
        raise CheckpointError(
            Options(
                lambda n: (
                    f"{out} holds no {CHECKPOINT}: its run stopped before saving its first epoch, so there is "
                    f"nothing to continue; start it again with {n('out', out)} (not {n('resume')})"
                )
            )
        )
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
