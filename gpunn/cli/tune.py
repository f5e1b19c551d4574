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
from pathlib import Path

from gpunn.atomic import write_text
from gpunn.cli.tune_folder import tune_folder
from gpunn.cli.tune_request import TuneRequest, setup_of
from gpunn.cli.tune_storage import StorageSpec, default_storage, open_storage, optuna_module, optuna_quiet
from gpunn.errors import (
    ConfigError,
    GpunnError,
    OutOfMemoryError,
    TrainingDivergedError,
    TrainingInterrupted,
    TrainingStalledError,
    cli_message,
    flag_name,
)

BEST_JSON, BEST_TEXT = "best.json", "best.txt"
FAILED_TRIAL = (TrainingDivergedError, TrainingStalledError, OutOfMemoryError)  # a result, not the end


# ---- the study ---------------------------------------------------------------------------------------


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
        # the trial's loggers (gpunn/cli/tracking.py: --tensorboard, --mlflow), given the study and the folder
        extra = list(trial_callbacks(study.study_name, folder)) if trial_callbacks else []
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
