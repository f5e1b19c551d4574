"""--val-size, --early-stopping and best.npz: the split, the choice on validation, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_train import gpunn_cli

from gpunn.checkpoint import load_checkpoint
from gpunn.data import load_dataset
from gpunn.nn.model import Sequential
from gpunn.training.config import ConfigError
from gpunn.training.evaluate import loss_and_correct
from gpunn.training.run import train
from gpunn.training.validation_split import split_validation

DIGITS = dict(dataset="digits", batch_size=32, verbose=False, dtype="float64", schedule="constant")


def test_split_is_stratified_disjoint_and_seeded():
    full = load_dataset("digits", "train")
    rest, val = split_validation(full, 300, seed=0)
    assert (len(rest), len(val)) == (len(full) - 300, 300)
    # stratified: each class holds its share of the 300, to within one image
    expected = np.bincount(full.labels) * 300 / len(full)
    assert np.all(np.abs(np.bincount(val.labels) - expected) <= 1)
    rows = {img.tobytes() for img in full.images}
    assert {img.tobytes() for img in rest.images} | {img.tobytes() for img in val.images} == rows
    assert not {img.tobytes() for img in rest.images} & {img.tobytes() for img in val.images}
    again, other = split_validation(full, 300, seed=0)[1], split_validation(full, 300, seed=1)[1]
    np.testing.assert_array_equal(again.images, val.images)
    assert not np.array_equal(other.images, val.images)


def test_validation_metrics_and_best_checkpoint(tmp_path):
    run = train(out=tmp_path / "r", epochs=5, val_size=200, lr=0.3, **DIGITS)
    lines = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert all({"val_loss", "val_accuracy", "test_accuracy"} <= set(line) for line in lines)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["val_size"] == 200
    losses = [line["val_loss"] for line in lines]
    assert run.best_epoch == 1 + int(np.argmin(losses)) and run.best["val_loss"] == min(losses)
    # best.npz holds the weights of that epoch: its validation loss, recomputed, is the recorded one
    best = Sequential.load(tmp_path / "r" / "best.npz")
    _, val = split_validation(load_dataset("digits", "train"), 200, seed=0)
    b = best.backend
    total, correct = loss_and_correct(best, b.from_host(val.features), b.from_host(val.labels), val.n_classes)
    assert b.to_scalar(total) / 200 == pytest.approx(run.best["val_loss"], rel=1e-12)
    assert int(b.to_host(correct)) / 200 == run.best["val_accuracy"]
    assert load_checkpoint(tmp_path / "r" / "best.npz").header["epoch"] == run.best_epoch


def test_without_val_size_nothing_changes(tmp_path):
    run = train(out=tmp_path / "r", epochs=2, **DIGITS)
    assert run.best is None and not (tmp_path / "r" / "best.npz").exists()
    assert "val_loss" not in run.history[0]


def test_early_stopping_stops_after_patience_and_resume_keeps_its_state(tmp_path):
    # a constant lr of 0.5 overfits digits: the validation loss turns up after a few epochs (an lr of 2,
    # used before, collapses the network to chance level, which the stall check now stops on its own)
    settings = dict(val_size=200, lr=0.5, optimizer="sgd", **DIGITS)
    run = train(out=tmp_path / "r", epochs=30, early_stopping=2, **settings)
    assert len(run.history) == run.best_epoch + 2 < 30
    header = load_checkpoint(tmp_path / "r").header
    assert header["stopped_early"] and header["best_epoch"] == run.best_epoch
    resumed = train(resume=tmp_path / "r", verbose=False)
    assert len(resumed.history) == len(run.history)  # a stopped run stays stopped

    # stopping one epoch after the best and resuming gives the same history, stop and best.npz as one go
    train(out=tmp_path / "part", epochs=run.best_epoch + 1, early_stopping=2, **settings)
    resumed = train(resume=tmp_path / "part", epochs=30, verbose=False)
    strip = [
        {k: v for k, v in h.items() if k not in ("seconds", "samples_per_second")} for h in resumed.history
    ]
    assert strip == [
        {k: v for k, v in h.items() if k not in ("seconds", "samples_per_second")} for h in run.history
    ]
    for a, b in zip(
        load_checkpoint(tmp_path / "r" / "best.npz").weights,
        load_checkpoint(tmp_path / "part" / "best.npz").weights,
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--early-stopping", "3"], "--early-stopping watches the validation loss: add --val-size"),
        (["--val-size", "-1"], "--val-size must be an integer >= 0"),
        (["--val-size", "5"], "--val-size 5 does not fit digits's 1437 training images"),
        (["--dropout", "1.5"], "--dropout must be a probability in [0, 1)"),
    ],
)
def test_bad_options_are_one_line(tmp_path, args, message):
    result = gpunn_cli("train", "--dataset", "digits", "--out", str(tmp_path / "r"), *args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_python_api_takes_the_same_settings():
    # from Python the message names keywords, not flags (issue 16)
    with pytest.raises(ConfigError, match="early_stopping= watches the validation loss: add val_size="):
        train(dataset="digits", early_stopping=1, verbose=False)
