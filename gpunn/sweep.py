"""`gpunn sweep`: one training run per combination of listed settings, a table and a plot."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

from gpunn.config import ConfigError, TrainConfig, parse_hidden
from gpunn.errors import RunFolderError
from gpunn.runlock import claim, unique_folder


@dataclass(frozen=True)
class SweepRun:
    """One combination: its 1-based number (its folder's prefix and its --index), label and settings."""

    number: int
    total: int
    label: str
    settings: dict
    out: Path


def check_jobs(jobs, index, total: int) -> None:
    if not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs must be an integer >= 1 (processes), got {jobs!r}")
    if index is not None and jobs > 1:
        raise ConfigError("--index runs one combination: leave out --jobs (or give one array task per index)")
    if index is not None and not (isinstance(index, int) and 1 <= index <= total):
        raise ConfigError(
            f"--index must lie in 1..{total} (this grid has {total} combinations), got {index!r}"
        )


def run_one(run: SweepRun, common: dict, verbose: bool = False) -> tuple:
    """Train one combination; its table row (label, test accuracy, seconds, folder, best epoch)."""
    from gpunn.training import train

    result = train(out=run.out, verbose=verbose, **common, **run.settings)
    seconds = sum(h["seconds"] for h in result.history)
    return (run.label, result.test_accuracy, seconds, result.out_dir, result.best)


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
) -> list:
    """Train every combination (in `jobs` processes), or only combination `index` (1-based) of them.

    Every combination is validated before the first run. A whole sweep needs `out` new or empty (None: a
    new runs/sweep-<time> folder) and holds it exclusively; an `index` run (one array-job task of many)
    shares `out` with its sibling tasks and claims only its own run folder."""
    keys = list(grid)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
    chosen_all = [{k: (parse_hidden(v) if k == "hidden" else v) for k, v in c.items()} for c in combos]
    for chosen in chosen_all:  # a bad value fails now, not after hours of the earlier combinations
        TrainConfig.from_recipe(recipe or "default", **chosen)
    check_jobs(jobs, index, len(combos))
    if index is not None:  # array-job tasks share the sweep folder; train() claims each run's own folder
        if out is None:
            raise ConfigError(
                "--index needs --out: every array task of one sweep writes into the same folder"
            )
        return _run_all(combos, chosen_all, keys, grid, out, device, dtype, data_dir, recipe, jobs, index)
    if out is None:
        out = unique_folder(Path("runs"), f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunFolderError(f"{out} already holds files (another sweep?): choose another --out")
    with claim(out, resuming=True):
        if any(out.iterdir()):
            raise RunFolderError(f"{out} already holds files (another sweep?): choose another --out")
        return _run_all(combos, chosen_all, keys, grid, out, device, dtype, data_dir, recipe, jobs, index)


def _run_all(combos, chosen_all, keys, grid, out, device, dtype, data_dir, recipe, jobs, index) -> list:
    swept = [k for k in keys if len(grid[k]) > 1]
    runs = []
    for number, (settings, chosen) in enumerate(zip(combos, chosen_all, strict=True), start=1):
        name = "-".join(f"{k}{str(settings[k]).replace(',', '_').replace('/', '_')}" for k in swept) or "run"
        label = _label({k: chosen[k] for k in swept}) or "single run"
        runs.append(SweepRun(number, len(combos), label, chosen, out / f"{number:02d}-{name}"))
    if index is not None:
        runs = [runs[index - 1]]
    common = dict(device=device, dtype=dtype, data_dir=data_dir, recipe=recipe)
    if jobs > 1 and len(runs) > 1:
        from gpunn.sweep_parallel import run_parallel

        rows = run_parallel(runs, jobs, common)
    else:
        rows = []
        for run in runs:
            print(f"[{run.number}/{run.total}] {run.label}", flush=True)
            rows.append(run_one(run, common, verbose=True))  # each run's own epoch lines show progress
    print_table(rows)
    if index is not None:
        return rows  # one array task of many: the others' runs are not there to plot
    from gpunn.errors import GpunnError
    from gpunn.plot import plot_runs

    try:
        print(plot_runs([r[3] for r in rows], out / "sweep.png", labels=[r[0] for r in rows]))
    except GpunnError as exc:
        print(f"no plot: {exc}")
    return rows


def print_table(rows: list) -> None:
    """One line per run; with a validation split, best first by validation loss (the test set only reports)."""
    width = max(len(r[0]) for r in rows)
    if all(r[4] is not None for r in rows):
        print(f"{'setting':<{width}}  val loss  val acc  best epoch  its test acc  final test acc   train s")
        for label, accuracy, seconds, _, best in sorted(rows, key=lambda r: r[4]["val_loss"]):
            print(
                f"{label:<{width}}  {best['val_loss']:8.4f}  {best['val_accuracy']:7.2%}  {best['epoch']:10d}  "
                f"{best['test_accuracy']:12.2%}  {accuracy:14.2%}  {seconds:8.2f}"
            )
        return
    print(f"{'setting':<{width}}  test acc   train s")
    for label, accuracy, seconds, *_ in rows:
        print(f"{label:<{width}}  {accuracy:7.2%}  {seconds:8.2f}")
