"""gpunn.train(data=(X, y), test=(X_test, y_test)): your own arrays with every feature of a run."""

from __future__ import annotations

import numpy as np
import pytest

import gpunn
from gpunn.checkpoint import load_checkpoint
from gpunn.data import load_dataset
from gpunn.errors import DataError
from gpunn.training.config import ConfigError

SETTINGS = dict(epochs=2, hidden=(16,), batch_size=64, verbose=False)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


def test_uint8_arrays_train_exactly_as_the_dataset_they_came_from(tmp_path, digits):
    train_set, test_set = digits
    named = gpunn.train(out=tmp_path / "named", dataset="digits", **SETTINGS)
    arrays = gpunn.train(
        out=tmp_path / "arrays",
        data=(train_set.images, train_set.labels),
        test=(test_set.features, test_set.labels),
        **SETTINGS,
    )
    assert [h["loss"] for h in arrays.history] == [h["loss"] for h in named.history]
    assert arrays.test_accuracy == named.test_accuracy
    for a, b in zip(arrays.model.get_weights(), named.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_dataframe_of_floats_with_string_labels_trains_and_keeps_the_names(tmp_path, digits):
    pandas = pytest.importorskip("pandas")
    train_set, test_set = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    frame = pandas.DataFrame(train_set.features / 255.0)
    result = gpunn.train(
        out=tmp_path / "run",
        data=(frame, pandas.Series(names[train_set.labels])),
        test=(test_set.features.astype(np.float32) / 255, names[test_set.labels]),
        val_size=100,
        early_stopping=3,
        dropout=0.1,
        **{**SETTINGS, "epochs": 8},
    )
    assert result.test_accuracy > 0.8 and result.best is not None
    header = load_checkpoint(tmp_path / "run").header
    assert header["classes"] == sorted(names) and header["config"]["dataset"] == "arrays"
    assert (tmp_path / "run" / "best.npz").is_file()


def test_a_dlpack_host_array_is_read_without_a_conversion_by_the_caller(tmp_path, digits):
    xp = pytest.importorskip("array_api_strict")
    train_set, test_set = digits
    x = xp.asarray(train_set.features.astype(np.float64) / 255)
    result = gpunn.train(
        out=tmp_path / "run",
        data=(x, train_set.labels),
        test=(test_set.features / 255.0, test_set.labels),
        **SETTINGS,
    )
    assert result.test_accuracy > 0.5


def test_a_resume_takes_the_same_arrays_and_refuses_others(tmp_path, digits):
    train_set, test_set = digits
    data, test = (train_set.features, train_set.labels), (test_set.features, test_set.labels)
    gpunn.train(out=tmp_path / "run", data=data, test=test, **{**SETTINGS, "epochs": 1})
    resumed = gpunn.train(resume=tmp_path / "run", data=data, test=test, epochs=2, verbose=False)
    assert len(resumed.history) == 2
    changed = (train_set.features[::-1], train_set.labels[::-1])
    with pytest.raises(DataError, match="the train arrays are not the ones run .* was trained on"):
        gpunn.train(resume=tmp_path / "run", data=changed, test=test, epochs=3, verbose=False)
    with pytest.raises(ConfigError, match="trained on arrays given in memory: resume it with the same"):
        gpunn.train(resume=tmp_path / "run", epochs=3, verbose=False)


@pytest.mark.parametrize(
    "data, test, message",
    [
        (
            (np.zeros((4, 3)), np.zeros(3, int)),
            (np.zeros((2, 3)), np.zeros(2, int)),
            "one label per row of X",
        ),
        (
            (np.zeros((4, 3), np.int32), np.arange(4) % 2),
            (np.zeros((2, 3)), np.zeros(2, int)),
            "uint8 pixels or floats",
        ),
        (
            (np.full((4, 3), np.nan), np.arange(4) % 2),
            (np.zeros((2, 3)), np.zeros(2, int)),
            "NaN or infinite",
        ),
        (
            (np.zeros((4, 3)), np.arange(4) % 2),
            (np.zeros((2, 3)), np.array([0, 7])),
            "the label np.int64\\(7\\)|label 7",
        ),
        ((np.zeros((4, 3)), np.arange(4) % 2), (np.zeros((2, 5)), np.zeros(2, int)), "test's X rows"),
    ],
    ids=["labels-length", "int-features", "nan", "unknown-test-label", "widths"],
)
def test_bad_arrays_are_one_clear_error_before_any_folder(tmp_path, data, test, message):
    with pytest.raises(DataError, match=message):
        gpunn.train(out=tmp_path / "run", data=data, test=test, **SETTINGS)
    assert not (tmp_path / "run").exists()


def test_evaluate_of_a_run_on_arrays_asks_for_a_dataset_and_then_uses_it(tmp_path, digits, capsys):
    from gpunn.cli import main as cli

    train_set, test_set = digits
    run = tmp_path / "arrays"
    gpunn.train(
        out=run,
        data=(train_set.images, train_set.labels),
        test=(test_set.images, test_set.labels),
        **SETTINGS,
    )
    assert cli.main(["evaluate", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "trained on arrays given to gpunn.train(data=...)" in err[0]
        and "--dataset" in err[0]
    )
    assert cli.main(["evaluate", str(run), "--dataset", "digits"]) == 0
