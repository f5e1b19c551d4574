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


def plot_runs(
    runs: list[Path], output: Path | None = None, labels: list[str] | None = None, force: bool = False
) -> str:
    """Loss and test-accuracy curves of each run into one PNG; returns a line saying where."""
    output = check_output(output or Path(runs[0]) / "curves.png", force)  # before any work
    histories = [read_metrics(Path(run)) for run in runs]
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

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
    return save_png(figure, output, force=force)
