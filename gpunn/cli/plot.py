"""PNG plots of training curves (matplotlib, the `plot` extra)."""

from __future__ import annotations

from pathlib import Path

from gpunn.errors import GpunnError
from gpunn.outputs import check_output, new_file
from gpunn.training.metrics import read_metrics


def pyplot():
    """matplotlib.pyplot drawing off-screen (Agg), or the one-line error naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise GpunnError('plotting needs matplotlib: pip install "gpunn[plot]"') from None
    return plt


def save_png(figure, output: Path, dpi: int = 100, force: bool = False) -> str:
    """Write the figure atomically (no half-written PNG), replacing nothing unless `force` (gpunn.outputs),
    close it; returns a line saying where."""
    try:
        with new_file(output, force) as fh:
            figure.savefig(fh, format="png", dpi=dpi)
    finally:
        pyplot().close(figure)
    return f"wrote {output}"


def curves_figure(histories: list[list[dict]], labels: list[str]) -> object:
    """Training loss and test accuracy per epoch, one colour per run; a run with a validation split also
    gets its validation loss and accuracy, dashed, in the same colour."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for history, label in zip(histories, labels, strict=True):
        epochs = [h["epoch"] for h in history]
        (line,) = loss_axis.plot(epochs, [h["loss"] for h in history], marker="o", label=f"{label} train")
        acc_axis.plot(epochs, [100 * h["test_accuracy"] for h in history], marker="o", label=f"{label} test")
        if any("val_loss" in h for h in history):
            validated = [h for h in history if "val_loss" in h]
            ticks = [h["epoch"] for h in validated]
            style = dict(color=line.get_color(), linestyle="--", marker="s")
            loss_axis.plot(ticks, [h["val_loss"] for h in validated], label=f"{label} validation", **style)
            acc_axis.plot(
                ticks, [100 * h["val_accuracy"] for h in validated], label=f"{label} validation", **style
            )
    loss_axis.set(xlabel="epoch", ylabel="loss", yscale="log", title="loss")
    acc_axis.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    loss_axis.legend(fontsize="small")
    acc_axis.legend(fontsize="small")
    last = max((h["epoch"] for history in histories for h in history), default=1)
    for axis in (loss_axis, acc_axis):
        axis.set_xlim(0.5, last + 0.5)  # at least one whole epoch wide: a 1-epoch run gets the tick 1 alone
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs, even one
    figure.tight_layout()
    return figure


def default_output(runs: list[Path]) -> Path:
    """One run: its own curves.png. Several: comparison.png in the folder holding them (a sweep's), never
    one run's curves.png, which is that run's alone."""
    if len(runs) == 1:
        return runs[0] / "curves.png"
    parents = {run.resolve().parent for run in runs}
    return (parents.pop() if len(parents) == 1 else Path.cwd()) / "comparison.png"


def plot_runs(
    runs: list[Path], output: Path | None = None, labels: list[str] | None = None, force: bool = False
) -> str:
    """Loss and accuracy curves of each run into one PNG; returns a line saying where."""
    runs = [Path(run) for run in runs]
    output = check_output(output or default_output(runs), force)  # before any work
    histories = [read_metrics(run) for run in runs]
    figure = curves_figure(histories, labels or [str(run) for run in runs])
    return save_png(figure, output, force=force)
