"""`gpunn sweep`: one training run per combination of listed settings, a table and a plot."""

from __future__ import annotations

import itertools
from pathlib import Path

from gpunn.config import parse_hidden


def _label(settings: dict) -> str:
    return " ".join(f"{k}={','.join(map(str, v)) if k == 'hidden' else v}" for k, v in settings.items())


def run_sweep(grid: dict[str, list], out: Path, device=None, dtype=None, data_dir=None, recipe=None) -> list:
    from gpunn.training import train

    keys = list(grid)
    combos = [dict(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]
    swept = [k for k in keys if len(grid[k]) > 1]
    rows = []
    for index, settings in enumerate(combos, start=1):
        chosen = {k: (parse_hidden(v) if k == "hidden" else v) for k, v in settings.items()}
        name = "-".join(f"{k}{str(settings[k]).replace(',', '_')}" for k in swept) or "run"
        print(f"[{index}/{len(combos)}] {_label({k: chosen[k] for k in swept}) or 'single run'}", flush=True)
        result = train(
            out=out / f"{index:02d}-{name}",
            device=device,
            dtype=dtype,
            data_dir=data_dir,
            recipe=recipe,
            verbose=False,
            **chosen,
        )
        seconds = sum(h["seconds"] for h in result.history)
        rows.append(
            (
                _label({k: chosen[k] for k in swept}),
                result.test_accuracy,
                seconds,
                result.out_dir,
                result.best,
            )
        )
    print_table(rows)
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
