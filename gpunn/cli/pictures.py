"""Pictures of what a model learned: confusion heatmap, most confident mistakes, first-layer weights.

Each picture is a function returning a matplotlib Figure (so tests can read its content) plus a writer
that saves it as a PNG through plot.save_png.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from gpunn.cli.plot import pyplot, save_png
from gpunn.errors import GpunnError
from gpunn.outputs import check_output

CONFUSION_CMAP = "Blues"
WEIGHTS_CMAP = "RdBu_r"  # diverging: red positive, blue negative, white zero
MISTAKES_SHOWN = 16


def confusion_figure(confusion: np.ndarray, class_names) -> object:
    """Heatmap of confusion[true, predicted] divided by each true class's count, with the raw counts."""
    plt = pyplot()
    confusion = np.asarray(confusion)
    fractions = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    classes = len(class_names)
    figure, axis = plt.subplots(figsize=(1.0 + 0.6 * classes, 0.6 * classes))
    image = axis.imshow(fractions, cmap=CONFUSION_CMAP, vmin=0.0, vmax=1.0)
    for true in range(classes):
        for predicted in range(classes):
            colour = "white" if fractions[true, predicted] > 0.5 else "black"
            axis.text(
                predicted, true, str(int(confusion[true, predicted])), ha="center", va="center",
                color=colour, fontsize="x-small",
            )  # fmt: skip
    long_names = max(len(name) for name in class_names) > 2
    axis.set_xticks(
        range(classes), class_names, rotation=45 if long_names else 0, ha="right" if long_names else "center"
    )
    axis.set_yticks(range(classes), class_names)
    axis.set(
        xlabel="predicted class", ylabel="true class", title="confusion (colour: fraction of the true class)"
    )
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return figure


def most_confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, count: int) -> np.ndarray:
    """Indices of wrong predictions, the most confident first (ties: lower index first)."""
    predicted = np.argmax(probabilities, axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")[:count]]


def mistakes_figure(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, class_names) -> object:
    """Grid of the most confidently wrong images, each titled 'true -> predicted (p)'."""
    plt = pyplot()
    chosen = most_confident_mistakes(labels, probabilities, MISTAKES_SHOWN)
    columns = max(1, math.ceil(math.sqrt(len(chosen))))
    rows = max(1, math.ceil(len(chosen) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.0 * columns, 2.1 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, index in zip(axes.flat, chosen, strict=False):
        predicted = int(np.argmax(probabilities[index]))
        axis.imshow(images[index], cmap="gray_r", vmin=0, vmax=255)
        axis.set_title(
            f"{class_names[labels[index]]} -> {class_names[predicted]} ({probabilities[index, predicted]:.2f})",
            fontsize="small",
        )
    if not len(chosen):
        axes.flat[0].set_title("no mistakes")
    figure.suptitle("most confident mistakes: true -> predicted (probability)")
    figure.tight_layout()
    return figure


def weights_figure(weight: np.ndarray) -> object:
    """One square tile per hidden unit of a first-layer weight (in_features, units), zero drawn white.

    Each tile gets its own symmetric limits (+-its largest |weight|): a few large weights elsewhere
    would otherwise wash every other tile out to white.
    """
    plt = pyplot()
    weight = np.asarray(weight, dtype=np.float64)
    side = math.isqrt(weight.shape[0])
    if side * side != weight.shape[0]:
        raise GpunnError(
            f"the first layer takes {weight.shape[0]} inputs, not a square image: nothing to draw as tiles"
        )
    units = weight.shape[1]
    columns = math.ceil(math.sqrt(units))
    rows = math.ceil(units / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(0.8 * columns, 0.8 * rows + 0.5), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for unit, axis in zip(range(units), axes.flat, strict=False):
        limit = float(np.abs(weight[:, unit]).max()) or 1.0  # symmetric: zero at the colour map's centre
        axis.imshow(weight[:, unit].reshape(side, side), cmap=WEIGHTS_CMAP, vmin=-limit, vmax=limit)
    figure.suptitle(f"first-layer weights: one {side}x{side} tile per hidden unit (red +, blue -, white 0)")
    figure.tight_layout()
    return figure


def run_folder(checkpoint_path: str | Path) -> Path:
    """The folder pictures go to: the run folder itself, or the one holding the checkpoint file."""
    path = Path(checkpoint_path)
    return path if path.is_dir() else path.parent


def evaluation_pictures(checkpoint_path: str | Path, force: bool = False) -> tuple[Path, Path]:
    """Where evaluate --plot writes (confusion.png, mistakes.png), checked before any work."""
    pyplot()  # the missing-extra error before any work
    folder = run_folder(checkpoint_path)
    return check_output(folder / "confusion.png", force), check_output(folder / "mistakes.png", force)


def write_evaluation_pictures(
    model, data, confusion: np.ndarray, checkpoint_path: str | Path, force: bool = False
) -> list[str]:
    """confusion.png and mistakes.png in the run folder; probabilities come from the model's predict path."""
    confusion_png, mistakes_png = evaluation_pictures(checkpoint_path, force)
    probabilities = model.predict_proba(data.features)
    return [
        save_png(confusion_figure(confusion, data.class_names), confusion_png, force=force),
        save_png(
            mistakes_figure(data.images, data.labels, probabilities, data.class_names),
            mistakes_png,
            force=force,
        ),
    ]


def write_weights_pictures(
    runs: list[str | Path], output: str | Path | None = None, force: bool = False
) -> list[str]:
    """weights.png of each run's first layer, in the run folder (or `output` when there is one run)."""
    from gpunn.checkpoint import load_checkpoint

    if output is not None and len(runs) != 1:
        raise GpunnError(f"--output names one PNG but {len(runs)} runs were given: drop --output")
    pyplot()
    outputs = [
        check_output(Path(output) if output else run_folder(run) / "weights.png", force) for run in runs
    ]
    checkpoints = [load_checkpoint(run) for run in runs]  # every run checked before anything is written
    return [
        save_png(weights_figure(checkpoint.weights[0]), path, force=force)
        for path, checkpoint in zip(outputs, checkpoints, strict=True)
    ]
