"""`gpunn sweep`: one training run per combination of listed settings, a table and a plot."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from gpunn.config import TrainConfig, parse_hidden
from gpunn.errors import RunFolderError
from gpunn.runlock import claim, unique_folder


def _label(settings: dict) -> str:
    return " ".join(f"{k}={','.join(map(str, v)) if k == 'hidden' else v}" for k, v in settings.items())


def run_sweep(
    grid: dict[str, list], out: Path | None, device=None, dtype=None, data_dir=None, recipe=None
) -> list:
    """Every combination is validated before the first run; `out` must be new or empty (None: a new
    runs/sweep-<time> folder), and is held exclusively for the whole sweep."""
    keys = list(grid)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
    chosen_all = [{k: (parse_hidden(v) if k == "hidden" else v) for k, v in c.items()} for c in combos]
    for chosen in chosen_all:  # a bad value fails now, not after hours of the earlier combinations
        TrainConfig.from_recipe(recipe or "default", **chosen)
    if out is None:
        out = unique_folder(Path("runs"), f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunFolderError(f"{out} already holds files (another sweep?): choose another --out")
    with claim(out, resuming=True):
        if any(out.iterdir()):
            raise RunFolderError(f"{out} already holds files (another sweep?): choose another --out")
        return _run_all(combos, chosen_all, keys, grid, out, device, dtype, data_dir, recipe)


def _run_all(combos, chosen_all, keys, grid, out, device, dtype, data_dir, recipe) -> list:
    from gpunn.training import train

    swept = [k for k in keys if len(grid[k]) > 1]
    rows = []
    for index, (settings, chosen) in enumerate(zip(combos, chosen_all, strict=True), start=1):
        name = "-".join(f"{k}{str(settings[k]).replace(',', '_')}" for k in swept) or "run"
        print(f"[{index}/{len(combos)}] {_label({k: chosen[k] for k in swept}) or 'single run'}", flush=True)
        result = train(
            out=out / f"{index:02d}-{name}",
            device=device,
            dtype=dtype,
            data_dir=data_dir,
            recipe=recipe,
            verbose=True,
            **chosen,
        )
        seconds = sum(h["seconds"] for h in result.history)
        rows.append((_label({k: chosen[k] for k in swept}), result.test_accuracy, seconds, result.out_dir))
    width = max(len(r[0]) for r in rows)
    print(f"{'setting':<{width}}  test acc   train s")
    for label, accuracy, seconds, _ in rows:
        print(f"{label:<{width}}  {accuracy:7.2%}  {seconds:8.2f}")
    from gpunn.errors import GpunnError
    from gpunn.plot import plot_runs

    try:
        print(plot_runs([r[3] for r in rows], out / "sweep.png", labels=[r[0] for r in rows]))
    except GpunnError as exc:
        print(f"no plot: {exc}")
    return rows
