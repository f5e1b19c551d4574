"""evaluate --plot and plot --weights: the figures hold the right content, and the CLI writes them."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")

from gpunn.cli.pictures import (  # noqa: E402
    CONFUSION_CMAP,
    confusion_figure,
    mistakes_figure,
    most_confident_mistakes,
    weights_figure,
)
from gpunn.training.run import train  # noqa: E402

pytestmark = pytest.mark.subprocess  # gpunn evaluate --plot / plot --weights as processes


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "gpunn", *args], capture_output=True, text=True, env=os.environ
    )


def pixel(figure, axis, x, y) -> np.ndarray:
    """RGB (0..255) of the rendered figure at data point (x, y) of `axis`."""
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    column, row_from_bottom = axis.transData.transform((x, y))
    return rgba[rgba.shape[0] - int(round(row_from_bottom)), int(round(column)), :3]


def test_confusion_heatmap_colours_each_cell_by_its_row_fraction():
    import matplotlib

    confusion = np.array([[8, 2, 0], [0, 5, 5], [1, 0, 0]])
    figure = confusion_figure(confusion, ("a", "b", "c"))
    axis = figure.axes[0]
    cmap = matplotlib.colormaps[CONFUSION_CMAP]
    # off the cell centre, where the count is written
    for (true, predicted), fraction in {
        (0, 0): 0.8,
        (0, 1): 0.2,
        (1, 2): 0.5,
        (2, 0): 1.0,
        (2, 2): 0.0,
    }.items():
        expected = np.array(cmap(fraction)[:3]) * 255
        got = pixel(figure, axis, predicted + 0.35, true - 0.35)
        assert np.abs(got - expected).max() <= 2, ((true, predicted), got, expected)
    counts = [text.get_text() for text in axis.texts]
    assert counts == ["8", "2", "0", "0", "5", "5", "1", "0", "0"]
    assert [t.get_text() for t in axis.get_xticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in axis.get_yticklabels()] == ["a", "b", "c"]


def test_mistakes_are_the_most_confident_wrong_ones_titled_true_to_predicted():
    labels = np.array([0, 1, 2, 1])
    probabilities = np.array(
        [
            [0.9, 0.1, 0.0],  # right
            [0.6, 0.3, 0.1],  # 1 -> 0 at 0.60
            [0.05, 0.9, 0.05],  # 2 -> 1 at 0.90
            [0.2, 0.1, 0.7],  # 1 -> 2 at 0.70
        ]
    )
    assert most_confident_mistakes(labels, probabilities, 2).tolist() == [2, 3]
    images = np.arange(4 * 4 * 4, dtype=np.uint8).reshape(4, 4, 4)
    figure = mistakes_figure(images, labels, probabilities, ("zero", "one", "two"))
    shown = [axis for axis in figure.axes if axis.images]
    assert [axis.get_title() for axis in shown] == [
        "two -> one (0.90)",
        "one -> two (0.70)",
        "one -> zero (0.60)",
    ]
    np.testing.assert_array_equal(shown[0].images[0].get_array(), images[2])


def test_weights_are_one_tile_per_unit_on_a_zero_centred_diverging_map():
    weight = np.random.default_rng(0).normal(size=(64, 10))
    weight[5, 3] = -4.0  # the tile's largest magnitude sets both of its limits
    figure = weights_figure(weight)
    tiles = [axis for axis in figure.axes if axis.images]
    assert len(tiles) == 10 and len(figure.axes) == 12  # a 3x4 grid, two empty cells
    image = tiles[3].images[0]
    np.testing.assert_array_equal(image.get_array(), weight[:, 3].reshape(8, 8))
    assert image.get_clim() == (-4.0, 4.0)
    assert tiles[0].images[0].get_clim() == (-np.abs(weight[:, 0]).max(), np.abs(weight[:, 0]).max())
    assert image.get_cmap()(0.5)[:3] == pytest.approx((0.97, 0.97, 0.97), abs=0.03)  # white-ish at zero


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pictures") / "digits"
    train(out=out, dataset="digits", epochs=3, batch_size=32, hidden=(16,), verbose=False)
    return out


def test_evaluate_plot_writes_confusion_and_mistakes(digits_run):
    from PIL import Image

    run = cli("evaluate", str(digits_run), "--plot")
    assert run.returncode == 0, run.stderr
    assert f"wrote {digits_run / 'confusion.png'}" in run.stdout
    assert f"wrote {digits_run / 'mistakes.png'}" in run.stdout
    for name in ("confusion.png", "mistakes.png"):
        with Image.open(digits_run / name) as image:
            assert image.format == "PNG" and min(image.size) > 200


def test_plot_weights_writes_a_tile_picture_and_rejects_non_square_inputs(digits_run, tmp_path):
    run = cli("plot", str(digits_run), "--weights")
    assert run.returncode == 0, run.stderr
    assert (digits_run / "weights.png").stat().st_size > 1000
    weights = np.zeros((10, 3))
    with pytest.raises(Exception, match="10 inputs, not a square image"):
        weights_figure(weights)
    run = cli("plot", str(digits_run), str(digits_run), "--weights", "--output", str(tmp_path / "w.png"))
    assert run.returncode == 1 and "drop --output" in run.stderr and "Traceback" not in run.stderr
