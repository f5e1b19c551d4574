"""PNG plots of training curves (matplotlib, the `plot` extra)."""

from __future__ import annotations

import json
from pathlib import Path

from gpunn.atomic import atomic_writer
from gpunn.errors import GpunnError


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        raise GpunnError(f"{run}: no metrics.jsonl (is it a gpunn train --out folder?)")
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError as exc:
        raise GpunnError(f"{path}: unreadable ({exc})") from None


def pyplot():
    """matplotlib.pyplot drawing off-screen (Agg), or the one-line error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GpunnError('plotting needs matplotlib: pip install "gpunn[plot]"') from None
    return plt


def save_png(figure, output: Path, dpi: int = 100) -> str:
    """Write the figure atomically (no half-written PNG), close it; returns a line saying where."""
    with atomic_writer(output) as fh:
        figure.savefig(fh, format="png", dpi=dpi)
    pyplot().close(figure)
    return f"wrote {output}"


def plot_runs(runs: list[Path], output: Path | None = None, labels: list[str] | None = None) -> str:
    """Loss and test-accuracy curves of each run into one PNG; returns a line saying where."""
    histories = [read_metrics(Path(run)) for run in runs]
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    output = output or Path(runs[0]) / "curves.png"
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for index, history in enumerate(histories):
        label = labels[index] if labels else str(runs[index])
        epochs = [h["epoch"] for h in history]
        loss_axis.plot(epochs, [h["loss"] for h in history], marker="o", label=label)
        acc_axis.plot(epochs, [100 * h["test_accuracy"] for h in history], marker="o", label=label)
    loss_axis.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    acc_axis.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    acc_axis.legend(fontsize="small")
    for axis in (loss_axis, acc_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    figure.tight_layout()
    return save_png(figure, output)
