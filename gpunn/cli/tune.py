"""`gpunn tune`: an Optuna study whose trials are ordinary gpunn runs, one folder each in the tune folder.

Each trial samples its settings from the search space (gpunn/cli/tune_space.py; TPE, seeded from --seed),
trains through gpunn.train into OUT/trial-NNNN, reports its validation loss after every epoch to Optuna's
median pruner (gpunn/training/pruning.py) and is worth its best validation loss. The test set never
chooses: it is recorded beside each trial for information only. A trial whose loss diverges or stalls is
listed as failed with its reason and told to Optuna as pruned (so TPE learns to avoid that region); it
does not end the study.

--trials N is the study's total, over every process that shares it and every rerun: a process starts a
trial only while fewer than N are finished or running (so processes that start one at the same instant may
add one each). A tune stopped by Ctrl-C keeps its finished trials, tells Optuna the running one failed
(interrupted; its folder keeps the epochs it saved) and continues when run again with the same --out.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from gpunn.atomic import write_text
from gpunn.cli.tune_space import SearchSpace
from gpunn.cli.tune_storage import (
    DEFAULT_FILE,
    StorageSpec,
    check_reachable,
    default_storage,
    open_storage,
)
from gpunn.errors import (
    ConfigError,
    GpunnError,
    OutOfMemoryError,
    RunFolderError,
    TrainingDivergedError,
    TrainingInterrupted,
    TrainingStalledError,
    cli_message,
    flag_name,
)

TUNE_FILE = "tune.json"  # marks a tune folder: the study's name and storage, the setup its trials share
BEST_JSON, BEST_TEXT = "best.json", "best.txt"
DEFAULT_STUDY = "tune"
VAL_FRACTION, VAL_CAP = 0.1, 5000  # scikit-learn's validation_fraction; the README's MNIST split
FAILED_TRIAL = (TrainingDivergedError, TrainingStalledError, OutOfMemoryError)  # a result, not the end


def optuna_module(what: str = "gpunn tune"):
    """optuna, or the one-line error naming the extra."""
    try:
        import optuna
        import sqlalchemy  # noqa: F401  (the RDB storage, the default)
    except ImportError:
        raise GpunnError(f'{what} needs Optuna: pip install "gpunn[tune]"') from None
    return optuna


def default_val_size(train_images: int) -> int:
    return min(VAL_CAP, int(train_images * VAL_FRACTION))


@dataclass
class TuneRequest:
    """Everything `gpunn tune` was asked, checked."""

    out: Path | None
    storage: StorageSpec | None  # None: OUT/study.db
    study: str
    trials: int
    timeout: float | None
    space: SearchSpace
    common: dict  # device, dtype, data_dir, recipe: passed to every trial as given
    seed: int
    val_note: str  # how the validation split was chosen, for the start line
    words: list = field(default_factory=list)  # the command as given, without --out


def check_numbers(trials, timeout) -> None:
    if not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"--trials must be an integer >= 1 (the study's total), got {trials!r}")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"--timeout must be a number of seconds > 0, got {timeout!r}")


def check_study_name(study: str | None, storage: StorageSpec | None) -> str:
    if study is None:
        if storage is not None:
            raise ConfigError("--storage holds many studies: name this one with --study NAME")
        return DEFAULT_STUDY
    if not study.strip():
        raise ConfigError("--study takes a name, got an empty string")
    return study


def setup_of(request: TuneRequest) -> dict:
    """What every process of one study must share (stored in the study and in tune.json)."""
    fixed = {k: (list(v) if isinstance(v, tuple) else v) for k, v in request.space.fixed.items()}
    fixed["dataset"] = Path(str(fixed["dataset"])).name  # a data folder may be mounted elsewhere
    return {"fixed": fixed, "space": request.space.to_dict(), "recipe": request.common.get("recipe")}


# ---- the tune folder ---------------------------------------------------------------------------------


def is_tune_folder(folder: Path) -> bool:
    return (Path(folder) / TUNE_FILE).is_file()


def load_study_of(folder: Path):
    """The study of a tune folder, read from the storage its tune.json names (nothing is created)."""
    from gpunn.cli.tune_storage import parse_storage

    optuna = optuna_module(f"{folder}, a tune folder,")
    saved = _read_marker(Path(folder) / TUNE_FILE)
    spec = default_storage(Path(folder)) if saved.get("storage") is None else parse_storage(saved["storage"])
    with optuna_quiet(optuna):
        storage = open_storage(spec, create=False)
        try:
            return optuna.load_study(study_name=saved["study"], storage=storage)
        except KeyError:
            raise GpunnError(
                f"{spec.url} holds no study {saved['study']!r} (the one {folder}/{TUNE_FILE} names)"
            ) from None


def check_folder(out: Path | None, storage: StorageSpec | None, study: str) -> None:
    """OUT is new, empty, or the tune folder of this same study; checked before anything is made."""
    if storage is not None:
        check_reachable(storage)
    if out is None:
        return
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out} is a file: choose a folder")
    marker = out / TUNE_FILE
    if marker.is_file():
        _check_same_study(out, _read_marker(marker), storage, study)
    elif out.is_dir() and any(out.iterdir()):
        raise RunFolderError(f"--out {out} already holds files and is no tune folder: choose another --out")


def _read_marker(marker: Path) -> dict:
    try:
        saved = json.loads(marker.read_text())
        if not isinstance(saved, dict) or not isinstance(saved.get("study"), str):
            raise ValueError("no study name")
    except (ValueError, OSError) as exc:
        raise RunFolderError(f"{marker} is damaged ({exc}): choose another --out") from None
    return saved


def _check_same_study(out: Path, saved: dict, storage: StorageSpec | None, study: str) -> None:
    asked = None if storage is None else storage.url
    if saved["study"] != study or saved.get("storage") != asked:
        where = "--storage " + saved["storage"] if saved.get("storage") else "the folder's own study.db"
        raise RunFolderError(
            f"{out} is the tune folder of study {saved['study']!r} in {where}: continue it with "
            f"--study {saved['study']}"
            + (f" --storage {saved['storage']}" if saved.get("storage") else "")
            + ", or choose another --out"
        )


@contextlib.contextmanager
def tune_folder(out: Path | None, storage: StorageSpec | None, study: str, setup: dict):
    """Create the tune folder (a new runs/tune-<time> without --out) and its tune.json, or join it.

    The body opens the study; if that fails, what this process made (the folder, tune.json, the default
    study.db) is taken away again, so a storage that cannot be opened leaves nothing behind."""
    from gpunn.atomic import atomic_writer
    from gpunn.training.runlock import unique_folder

    new_folder = out is None or not out.exists()
    new_parent = out is None and not Path("runs").exists()
    if out is None:
        out = unique_folder(Path("runs"), f"tune-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    marker = out / TUNE_FILE
    text = json.dumps({"study": study, "storage": None if storage is None else storage.url, "setup": setup})
    made = []
    try:
        try:
            # two processes starting at once: one writes tune.json, the other checks it names this study
            with atomic_writer(marker, "w", replace=False) as fh:
                fh.write(text + "\n")
            made.append(marker)
            if storage is None and not (out / DEFAULT_FILE).exists():
                made.append(out / DEFAULT_FILE)
        except FileExistsError:
            _check_same_study(out, _read_marker(marker), storage, study)
        yield out
    except BaseException:
        for path in made:
            with contextlib.suppress(OSError):
                path.unlink()
        for folder in [out] * new_folder + [out.parent] * new_parent:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


# ---- the study ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def optuna_quiet(optuna):
    """Optuna's own INFO lines off while tune prints its own; the previous verbosity is restored."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def open_study(optuna, storage, name: str, seed: int, setup: dict):
    """(study, created, sampler seed): a new study seeded from --seed, or the existing one joined (whose
    other processes drew from --seed already: this one draws from a fresh seed, said in the start line)."""
    pruner = optuna.pruners.MedianPruner()
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction="minimize", pruner=pruner)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, pruner=pruner)
        created = False
    sampler_seed = seed if created else secrets.randbits(31)
    study.sampler = optuna.samplers.TPESampler(seed=sampler_seed)
    saved = study.user_attrs.get("gpunn")
    if saved is None:
        study.set_user_attr("gpunn", setup)
    elif saved != setup:
        raise ConfigError(
            f"study {name!r} was started with other settings ({_difference(saved, setup)}): tune with the "
            "same flags to join it, or name another --study"
        )
    return study, created, sampler_seed


def _difference(saved: dict, asked: dict) -> str:
    parts = []
    for group in ("fixed", "space"):
        a, b = saved.get(group, {}), asked.get(group, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                parts.append(f"{key}: {a.get(key)} there, {b.get(key)} here")
    if saved.get("recipe") != asked.get("recipe"):
        parts.append(f"recipe: {saved.get('recipe')} there, {asked.get('recipe')} here")
    return "; ".join(parts) or "a different setup"


def counted_trials(study) -> int:
    """Trials that count toward --trials: finished (complete or pruned, failed settings included) or
    running; failed ones (interrupted, their process gone) do not."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return len(study.get_trials(deepcopy=False, states=states))


def fail_abandoned_trials(study) -> None:
    """A running trial of a process on this machine that no longer exists (killed with SIGKILL) is failed,
    so it does not count toward --trials forever. Trials of other machines are left to their processes."""
    from optuna.trial import TrialState

    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        pid = trial.user_attrs.get("pid")
        if trial.user_attrs.get("host") != host or not isinstance(pid, int) or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # alive (pids may be reused: then the trial stays counted, the safe side)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        with contextlib.suppress(ValueError, RuntimeError):  # another process failed it first
            study.tell(trial.number, state=TrialState.FAIL)


# ---- one trial ---------------------------------------------------------------------------------------


def trial_folder(out: Path, number: int) -> Path:
    return out / f"trial-{number:04d}"


def params_text(params: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


class TrialStopped(Exception):
    """The tune is stopped (a signal): `trial` was told to Optuna as failed, `cause` is what stopped it."""

    def __init__(self, cause: BaseException, signum: int):
        super().__init__(str(cause))
        self.cause, self.signum = cause, signum


def run_trial(optuna, study, request: TuneRequest, out: Path, trial_callbacks) -> str:
    """Run one trial to its end (told to Optuna); its one-line report."""
    from optuna.trial import TrialState

    from gpunn.training.pruning import PruneTrial
    from gpunn.training.run import train

    trial = study.ask()
    pruner, label = PruneTrial(trial), f"trial {trial.number}"
    try:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
        folder = trial_folder(out, trial.number)
        trial.set_user_attr("run", folder.name)
        settings = request.space.sample(trial)
        label = f"trial {trial.number}: {params_text(trial.params)}"
        # TRACKING (issue 28 §3): the integrator passes trial_callbacks = lambda run_name, run_dir:
        # tracking_callbacks(args, run_name, run_dir) from gpunn/cli/tracking.py; each trial is one run.
        extra = list(trial_callbacks(f"{study.study_name}-{folder.name}", folder)) if trial_callbacks else []
        result = train(out=folder, verbose=False, callbacks=[pruner, *extra], **request.common, **settings)
    except optuna.TrialPruned as exc:
        trial.set_user_attr("epochs", pruner.pruned_at)
        study.tell(trial, state=TrialState.PRUNED)
        return f"{label} -> pruned {exc}"
    except FAILED_TRIAL as exc:
        reason = cli_message(exc)
        trial.set_user_attr("failure", reason)
        study.tell(trial, state=TrialState.PRUNED)  # a failed setting is a bad result: TPE learns from it
        return f"{label} -> failed: {reason}"
    except (TrainingInterrupted, KeyboardInterrupt) as exc:  # KeyboardInterrupt: outside the epoch loop
        _fail(study, trial, "interrupted")
        print(f"{label} -> interrupted after {pruner.epochs} saved epoch(s)", flush=True)
        signum = exc.exit_code - 128 if isinstance(exc, TrainingInterrupted) else signal.SIGINT
        raise TrialStopped(exc, signum) from None
    except BaseException as exc:  # a mistake every trial would make (data, device): the study ends here
        _fail(study, trial, cli_message(exc) if isinstance(exc, GpunnError) else repr(exc))
        raise
    best = result.best
    for key in ("val_accuracy", "test_accuracy"):  # the test accuracy is information, never the objective
        trial.set_user_attr(key, best[key])
    trial.set_user_attr("best_epoch", result.best_epoch)
    trial.set_user_attr("epochs", len(result.history))
    study.tell(trial, best["val_loss"])
    return (
        f"{label} -> val loss {best['val_loss']:.4f} at epoch {result.best_epoch} "
        f"(val acc {best['val_accuracy']:.2%})"
    )


def _fail(study, trial, why: str) -> None:
    from optuna.trial import TrialState

    with contextlib.suppress(ValueError, RuntimeError):  # the reason is a courtesy; the state is what counts
        trial.set_user_attr("failure", why)
    study.tell(trial, state=TrialState.FAIL)


# ---- the whole tune ----------------------------------------------------------------------------------


def run_tune(request: TuneRequest, trial_callbacks=None) -> dict | None:
    """Run the study to --trials (or --timeout); print and write the best trial. Returns best.json's data.

    SIGINT/SIGTERM: the running trial is failed (interrupted), the best so far written, and
    TrainingInterrupted raised with the command that continues the study."""
    optuna = optuna_module()
    setup = setup_of(request)
    with optuna_quiet(optuna), tune_folder(request.out, request.storage, request.study, setup) as out:
        storage_spec = request.storage or default_storage(out)
        study, created, sampler_seed = open_study(
            optuna, open_storage(storage_spec), request.study, request.seed, setup
        )
    continue_with = shlex.join([*request.words, "--out", str(out)])
    with optuna_quiet(optuna):
        fail_abandoned_trials(study)
        print(_start_line(request, study, storage_spec, out, created, sampler_seed), flush=True)
        deadline = None if request.timeout is None else time.monotonic() + request.timeout
        stopped = None
        try:
            while deadline is None or time.monotonic() < deadline:
                fail_abandoned_trials(study)
                if counted_trials(study) >= request.trials:
                    break
                print(run_trial(optuna, study, request, out, trial_callbacks), flush=True)
        except TrialStopped as exc:
            stopped = exc
        except KeyboardInterrupt as exc:  # between trials: none is running
            stopped = TrialStopped(exc, signal.SIGINT)
        best = write_best(study, request, out, storage_spec)
    if stopped is not None:
        name = signal.Signals(stopped.signum).name
        raise TrainingInterrupted(
            f"{name} received: the running trial is marked failed (interrupted) and its folder keeps the "
            f"epochs it saved; the study keeps {_finished(study)} finished trial(s); continue with: "
            f"{continue_with}",
            stopped.signum,
        )
    return best


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _start_line(request, study, storage: StorageSpec, out: Path, created: bool, sampler_seed: int) -> str:
    fixed = request.space.fixed
    done = counted_trials(study)
    joined = "new" if created else f"joined, {done} trial(s) there"
    seed = f"TPE seeded from --seed {sampler_seed}" if created else f"TPE seed {sampler_seed} (joined)"
    return (
        f"gpunn tune: study {request.study!r} ({joined}) in {storage.describe()} | {fixed['dataset']}, "
        f"{fixed['epochs']} epoch(s) per trial, {request.trials} trials in total | validation "
        f"{fixed['val_size']} images ({request.val_note}) | {seed}, median pruner | search: "
        f"{request.space.text()} | tune folder {out}"
    )


def retrain_command(request: TuneRequest, params: dict) -> str:
    """The `gpunn train` command that trains this trial again (same settings, same seed: the same run)."""
    from gpunn.cli.tune_space import train_value

    settings = {**request.space.fixed, **{k: train_value(k, v) for k, v in params.items()}}
    words = ["gpunn", "train"]
    for key, value in {**request.common, **settings}.items():
        if value is None:
            continue
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        words += [flag_name(key), shown]
    return shlex.join(words)


def write_best(study, request: TuneRequest, out: Path, storage: StorageSpec) -> dict | None:
    """Print the best trial and write best.json and best.txt into the tune folder (None: no trial completed)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states = {s: sum(t.state == s for t in trials) for s in TrialState}
    failed = sum(t.state == TrialState.PRUNED and "failure" in t.user_attrs for t in trials)
    counts = (
        f"{states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED] - failed} pruned, "
        f"{failed} failed settings, {states[TrialState.FAIL]} interrupted or lost"
    )
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        print(f"no trial completed yet ({counts}): nothing to report")
        return None
    trial = min(complete, key=lambda t: t.value)
    command = retrain_command(request, trial.params)
    best = {
        "study": request.study,
        "storage": storage.describe(),
        "trial": trial.number,
        "val_loss": trial.value,
        "best_epoch": trial.user_attrs.get("best_epoch"),
        "val_accuracy": trial.user_attrs.get("val_accuracy"),
        "test_accuracy": trial.user_attrs.get("test_accuracy"),  # reported, never used to choose
        "params": trial.params,
        "run": str(out / trial.user_attrs.get("run", trial_folder(out, trial.number).name)),
        "command": command,
        "trials": counts,
    }
    lines = [
        f"best: trial {trial.number} of {len(trials)} ({counts}): validation loss {trial.value:.4f} at epoch "
        f"{best['best_epoch']} (val acc {best['val_accuracy']:.2%}; its test accuracy {best['test_accuracy']:.2%}"
        ", reported only)",
        f"  settings: {params_text(trial.params)}",
        f"  run: {best['run']}",
        f"  retrain: {command}",
    ]
    text = "\n".join(lines)
    print(text)
    write_text(out / BEST_JSON, json.dumps(best, indent=2) + "\n")
    write_text(out / BEST_TEXT, text + "\n")
    return best


# ---- the command line --------------------------------------------------------------------------------

FIXED = ("dataset", "epochs", "seed", "val_size", "early_stopping")  # the same for every trial
COMMON = ("device", "dtype", "data_dir", "recipe")  # passed to gpunn.train as given
OWN_FLAGS = ("trials", "timeout", "storage", "study")


def request_from_args(args, train_keys) -> TuneRequest:
    """The checked TuneRequest from `gpunn tune`'s arguments; nothing is made before every check passed.

    `train_keys`: the training settings the parser has (gpunn/cli/main.py's TRAIN_FLAGS)."""
    from gpunn.cli.sweep import check_configs_against_data
    from gpunn.cli.tune_space import SEARCHABLE, check_space, search_space
    from gpunn.cli.tune_storage import parse_storage
    from gpunn.data import load_dataset
    from gpunn.training.config import TrainConfig
    from gpunn.training.run import _check_device_settings

    optuna_module()  # the missing extra is the first thing said
    check_numbers(args.trials, args.timeout)
    storage = None if args.storage is None else parse_storage(args.storage)
    study = check_study_name(args.study, storage)
    _check_device_settings(args.device, args.dtype)
    given_fixed = {k: getattr(args, k) for k in FIXED if getattr(args, k) is not None}
    base = TrainConfig.from_recipe(args.recipe or "default", **given_fixed)
    fixed = {"dataset": base.dataset, "epochs": base.epochs, "seed": base.seed}
    if args.early_stopping is not None:
        fixed["early_stopping"] = base.early_stopping
    if args.val_size == 0:
        raise ConfigError(
            "--val-size 0 leaves no validation set, which tune ranks and prunes its trials on: give N > 0, "
            f"or leave it out ({VAL_FRACTION:.0%} of the training set, at most {VAL_CAP})"
        )
    if args.val_size is None:
        train_images = len(load_dataset(base.dataset, "train", data_dir=args.data_dir))
        fixed["val_size"] = default_val_size(train_images)
        note = (
            f"{VAL_FRACTION:.0%} of {train_images} training images, at most {VAL_CAP}: --val-size to choose"
        )
    else:
        fixed["val_size"], note = base.val_size, "--val-size"
    searched = {k: getattr(args, k) for k in SEARCHABLE if k in train_keys}
    space = search_space(searched, fixed, args.recipe)
    check_configs_against_data(check_space(space, args.recipe), args.data_dir)
    common = {k: getattr(args, k) for k in COMMON}
    out = None if args.out is None else Path(args.out)
    check_folder(out, storage, study)
    words = ["gpunn", "tune"]
    for key in (*train_keys, *OWN_FLAGS, *COMMON):
        if getattr(args, key, None) is not None:
            words += [flag_name(key), str(getattr(args, key))]
    return TuneRequest(out, storage, study, args.trials, args.timeout, space, common, base.seed, note, words)
