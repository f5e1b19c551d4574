"""`gpunn plot`: validation curves when the run has them, whole-number epoch ticks, and a picture of several
runs that never takes the place of one run's own curves.png."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")

from gpunn.cli.plot import curves_figure, default_output, plot_runs  # noqa: E402

_EPOCH = {
    "train_accuracy": 0.9,
    "lr": 0.1,
    "seconds": 1.0,
    "samples_per_second": 1000.0,
}  # as gpunn train writes
TRAIN_ONLY = [
    {"epoch": 1, "loss": 0.5, "test_accuracy": 0.90, **_EPOCH},
    {"epoch": 2, "loss": 0.3, "test_accuracy": 0.95, **_EPOCH},
]
WITH_VALIDATION = [
    {**TRAIN_ONLY[0], "val_loss": 0.45, "val_accuracy": 0.91},
    {**TRAIN_ONLY[1], "val_loss": 0.35, "val_accuracy": 0.93},
]


def lines(axis) -> dict:
    return {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in axis.get_lines()}


def test_validation_curves_are_drawn_when_the_run_has_them():
    figure = curves_figure([WITH_VALIDATION], ["run"])
    loss_axis, acc_axis = figure.axes
    assert lines(loss_axis) == {"run train": ([1, 2], [0.5, 0.3]), "run validation": ([1, 2], [0.45, 0.35])}
    assert lines(acc_axis) == {
        "run test": ([1, 2], [90.0, 95.0]),
        "run validation": ([1, 2], [pytest.approx(91.0), pytest.approx(93.0)]),
    }
    validation = [line for line in loss_axis.get_lines() if line.get_label() == "run validation"][0]
    assert (
        validation.get_linestyle() == "--" and validation.get_color() == loss_axis.get_lines()[0].get_color()
    )
    assert set(lines(curves_figure([TRAIN_ONLY], ["run"]).axes[0])) == {"run train"}  # none without a split


def test_a_one_epoch_run_has_the_whole_number_tick_1_alone():
    figure = curves_figure([TRAIN_ONLY[:1]], ["run"])
    figure.canvas.draw()
    for axis in figure.axes:
        low, high = axis.get_xlim()
        shown = [tick for tick in axis.get_xticks() if low <= tick <= high]
        assert shown == [1.0]


def write_run(folder, history):
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return folder


def test_several_runs_are_drawn_beside_them_and_no_runs_curves_png_is_touched(tmp_path):
    runs = [write_run(tmp_path / "sweep" / name, TRAIN_ONLY) for name in ("01-a", "02-b")]
    (runs[0] / "curves.png").write_bytes(b"the run's own picture")
    assert default_output(runs) == (tmp_path / "sweep" / "comparison.png").resolve()
    assert default_output(runs[:1]) == runs[0] / "curves.png"
    assert plot_runs(runs) == f"wrote {(tmp_path / 'sweep' / 'comparison.png').resolve()}"
    assert (runs[0] / "curves.png").read_bytes() == b"the run's own picture"
    assert (tmp_path / "sweep" / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
