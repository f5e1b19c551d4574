"""`gpunn sweep`: one training run per combination of listed settings, a table and a plot."""

from __future__ import annotations

import itertools
import shlex
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from gpunn.errors import (
    RunFolderError,
    TrainingDivergedError,
    TrainingInterrupted,
    TrainingStalledError,
    cli_message,
    flag_name,
)
from gpunn.training.config import ConfigError, TrainConfig, parse_hidden
from gpunn.training.runlock import claim, unique_folder


@dataclass(frozen=True)
class SweepRun:
    """One combination: its 1-based number (its folder's prefix and its --index), label and settings;
    `redo` is the command that runs it alone (`gpunn sweep ... --index N`)."""

    number: int
    total: int
    label: str
    settings: dict
    out: Path
    redo: str = ""
    callbacks: tuple = ()  # its loggers (--tensorboard, --mlflow): picklable, a worker process gets them


def check_jobs(jobs, index, total: int) -> None:
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs must be an integer >= 1 (processes), got {jobs!r}")
    if index is not None and jobs > 1:
        raise ConfigError("--index runs one combination: leave out --jobs (or give one array task per index)")
    if index is not None and not (isinstance(index, int) and 1 <= index <= total):
        raise ConfigError(
            f"--index must lie in 1..{total} (this grid has {total} combinations), got {index!r}"
        )


class SweepRow(NamedTuple):
    """One combination's outcome. A setting that diverges or stalls is a result, not the sweep's end:
    `failure` says why (test_accuracy, seconds and best are None) and the other combinations still run.
    `status` is "finished", "failed", or, for a sweep that was stopped, "interrupted" or "not started"
    (then `failure` names the command that continues or runs it)."""

    label: str
    test_accuracy: float | None
    seconds: float | None
    folder: Path
    best: dict | None  # the validation-chosen epoch's metrics (None without --val-size)
    failure: str | None = None
    status: str = "finished"


def unfinished_row(run: SweepRun, status: str, why: str) -> SweepRow:
    return SweepRow(run.label, None, None, run.out, None, why, status)


def not_started_row(run: SweepRun) -> SweepRow:
    return unfinished_row(run, "not started", f"run it with: {run.redo}")


def run_one(run: SweepRun, common: dict, verbose: bool = False) -> SweepRow:
    """Train one combination; its table row."""
    from gpunn.training.run import train

    try:
        result = train(out=run.out, verbose=verbose, callbacks=list(run.callbacks), **common, **run.settings)
    except (TrainingDivergedError, TrainingStalledError) as exc:
        failure = cli_message(exc)  # the sweep reports like the command line: options named as flags
        if verbose:
            print(f"[{run.number}/{run.total}] {run.label}: failed: {failure}", flush=True)
        return unfinished_row(run, "failed", failure)
    seconds = sum(h["seconds"] for h in result.history)
    return SweepRow(run.label, result.test_accuracy, seconds, result.out_dir, result.best)


def _label(settings: dict) -> str:
    return " ".join(f"{k}={','.join(map(str, v)) if k == 'hidden' else v}" for k, v in settings.items())


def run_sweep(
    grid: dict[str, list],
    out: Path | None,
    device=None,
    dtype=None,
    data_dir=None,
    recipe=None,
    jobs: int = 1,
    index: int | None = None,
    tracking=None,
) -> list:
    """Train every combination (in `jobs` processes), or only combination `index` (1-based) of them.

    Every combination is validated before the first run. A whole sweep needs `out` new or empty (None: a
    new runs/sweep-<time> folder) and holds it exclusively; an `index` run (one array-job task of many)
    shares `out` with its sibling tasks and claims only its own run folder. SIGINT/SIGTERM stop the sweep:
    the table is printed (the unfinished rows name the command that continues or runs each), then
    TrainingInterrupted is raised, its `rows` the table's. `tracking` (gpunn/cli/tracking.py) gives every
    run its loggers, grouped under the sweep folder's name."""
    keys = list(grid)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
    chosen_all = [{k: (parse_hidden(v) if k == "hidden" else v) for k, v in c.items()} for c in combos]
    # every value of every list fails now, not after hours of the earlier combinations: the settings,
    # then what only the data can tell (the model's size, the validation split)
    configs = [TrainConfig.from_recipe(recipe or "default", **chosen) for chosen in chosen_all]
    check_jobs(jobs, index, len(combos))
    check_configs_against_data(configs, data_dir)
    if index is not None:  # array-job tasks share the sweep folder; train() claims each run's own folder
        if out is None:
            raise ConfigError(
                "--index needs --out: every array task of one sweep writes into the same folder"
            )
        return _run_all(
            combos, chosen_all, keys, grid, out, device, dtype, data_dir, recipe, jobs, index, tracking
        )
    if out is None:
        out = unique_folder(Path("runs"), f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunFolderError(f"{out} already holds files (another sweep?): choose another --out")
    with claim(out, resuming=True):
        if any(out.iterdir()):
            raise RunFolderError(f"{out} already holds files (another sweep?): choose another --out")
        return _run_all(
            combos, chosen_all, keys, grid, out, device, dtype, data_dir, recipe, jobs, index, tracking
        )


def index_command(grid: dict, common: dict, out: Path, number: int, tracking=None) -> str:
    """The command line that runs combination `number` of this sweep alone, into the same folder."""
    words = ["gpunn", "sweep"]
    for key, values in grid.items():
        if key == "hidden":
            words += [flag_name(key), "/".join(",".join(map(str, parse_hidden(v))) for v in values)]
        else:
            words += [flag_name(key), ",".join(map(str, values))]
    words += [w for key, value in common.items() if value is not None for w in (flag_name(key), str(value))]
    words += tracking.flags() if tracking is not None else []
    return shlex.join([*words, "--out", str(out), "--index", str(number)])


def check_configs_against_data(configs: list[TrainConfig], data_dir) -> None:
    """What only the data can tell, for every config (each training set read once): model size, split."""
    from gpunn.data import load_dataset
    from gpunn.training.run import check_against_data

    training_sets = {}
    for config in configs:
        if config.dataset not in training_sets:
            training_sets[config.dataset] = load_dataset(config.dataset, "train", data_dir=data_dir)
        check_against_data(config, training_sets[config.dataset])


def _run_all(
    combos, chosen_all, keys, grid, out, device, dtype, data_dir, recipe, jobs, index, tracking
) -> list:
    swept = [k for k in keys if len(grid[k]) > 1]
    common = dict(device=device, dtype=dtype, data_dir=data_dir, recipe=recipe)
    runs = []
    for number, (settings, chosen) in enumerate(zip(combos, chosen_all, strict=True), start=1):
        name = "-".join(f"{k}{str(settings[k]).replace(',', '_').replace('/', '_')}" for k in swept) or "run"
        label = _label({k: chosen[k] for k in swept}) or "single run"
        redo = index_command(grid, common, out, number, tracking)
        loggers = tuple(tracking.callbacks(group=out.name)) if tracking is not None else ()
        runs.append(SweepRun(number, len(combos), label, chosen, out / f"{number:02d}-{name}", redo, loggers))
    if index is not None:
        runs = [runs[index - 1]]
    if jobs > 1 and len(runs) > 1:
        from gpunn.cli.sweep_parallel import run_parallel

        rows, stop = run_parallel(runs, jobs, common)
    else:
        rows, stop = _run_in_turn(runs, common)
    print_table(rows)
    finished = [r for r in rows if r.failure is None]
    if stop is not None:  # the finished rows are above; no plot: a stop should be prompt
        if isinstance(stop, int):  # a signal: exit 128 + its number, as a shell expects
            stop = TrainingInterrupted(
                f"{signal.Signals(stop).name} received: {len(finished)} of {len(rows)} combination(s) "
                f"finished; the table names the command that continues or runs each of the other "
                f"{len(rows) - len(finished)}",
                stop,
            )
        stop.rows = rows
        raise stop
    if index is not None or not finished:
        return rows  # one array task of many: the others' runs are not there to plot
    from gpunn.cli.plot import plot_runs
    from gpunn.errors import GpunnError

    try:
        print(plot_runs([r.folder for r in finished], out / "sweep.png", labels=[r.label for r in finished]))
    except GpunnError as exc:
        print(f"no plot: {exc}")
    return rows


def _run_in_turn(runs: list[SweepRun], common: dict) -> tuple[list, int | None]:
    """(rows of the combinations run one after another here, the signal that stopped the sweep or None)."""
    rows = []
    for position, run in enumerate(runs):
        print(f"[{run.number}/{run.total}] {run.label}", flush=True)
        try:
            rows.append(run_one(run, common, verbose=True))  # each run's own epoch lines show progress
        except TrainingInterrupted as exc:  # it saved where it stood and says how to continue
            rows.append(unfinished_row(run, "interrupted", cli_message(exc)))
            return rows + [not_started_row(r) for r in runs[position + 1 :]], exc.exit_code - 128
    return rows, None


def print_table(rows: list[SweepRow]) -> None:
    """One line per run; with a validation split, best first by validation loss (the test set only reports).
    Failed combinations come last, each with its reason."""
    width = max(len(r.label) for r in rows)
    finished = [r for r in rows if r.failure is None]
    if finished and all(r.best is not None for r in finished):
        print(f"{'setting':<{width}}  val loss  val acc  best epoch  its test acc  final test acc   train s")
        for label, accuracy, seconds, _, best, *_ in sorted(finished, key=lambda r: r.best["val_loss"]):
            print(
                f"{label:<{width}}  {best['val_loss']:8.4f}  {best['val_accuracy']:7.2%}  {best['epoch']:10d}  "
                f"{best['test_accuracy']:12.2%}  {accuracy:14.2%}  {seconds:8.2f}"
            )
    else:
        print(f"{'setting':<{width}}  test acc   train s")
        for label, accuracy, seconds, *_ in finished:
            print(f"{label:<{width}}  {accuracy:7.2%}  {seconds:8.2f}")
    for row in rows:
        if row.failure is not None:
            print(f"{row.label:<{width}}  {row.status}: {row.failure}")
