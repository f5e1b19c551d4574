"""A run stuck at chance level is told by its cause: dead units stop it, a slow start trains on."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpunn.cli.main import main
from gpunn.errors import TrainingStalledError
from gpunn.nn.layers import Dense, ReLU, Sigmoid
from gpunn.nn.model import Sequential
from gpunn.training.config import ConfigError
from gpunn.training.run import train
from gpunn.training.stall import constant_unit_fractions

DIGITS = dict(dataset="digits", verbose=False)


def test_constant_units_are_counted_per_hidden_layer():
    model = Sequential([Dense(2, 4), ReLU(), Dense(4, 2), Sigmoid(), Dense(2, 3)], "cpu", dtype="float64")
    # units 0 and 1 see the inputs (alive); unit 2's weights and bias keep it below 0 for x >= 0 (dead ReLU);
    # unit 3 ignores the inputs (constant bias 1: the same output for every row). Layer 2: one unit
    # ignores its inputs, one does not.
    w1 = np.array([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, -1.0, 0.0]])
    b1 = np.array([0.0, 0.0, -1.0, 1.0])
    w2 = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    model.set_weights([w1, b1, w2, np.zeros(2), np.ones((2, 3)), np.zeros(3)])
    x = model.backend.from_host(np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 3.0]]))
    assert constant_unit_fractions(model, x) == [0.5, 0.5]


def test_a_sigmoid_slow_start_is_not_stopped():
    # near ln 10 for its first epochs while onecycle warms up; it learns after that (it was stopped at
    # epoch 2 with the advice of a lower lr, which failed again)
    result = train(epochs=20, activation="sigmoid", **DIGITS)
    assert len(result.history) == 20
    assert result.history[1]["loss"] > 2.25 and result.test_accuracy > 0.9


def test_dead_relus_stop_the_run_with_a_smaller_lr_as_the_fix(tmp_path):
    with pytest.raises(TrainingStalledError) as stopped:
        train(out=tmp_path / "r", epochs=5, lr=2.0, **DIGITS)
    message = str(stopped.value)
    assert "give the same output for every image" in message
    assert "the lr 2 is too high for batch size 128; try lr=0.5 or a larger batch_size=" in message
    assert len((tmp_path / "r" / "metrics.jsonl").read_text().splitlines()) < 5  # stopped, epochs saved


def test_a_run_that_ends_at_chance_with_live_units_is_told_to_raise_the_lr(tmp_path):
    with pytest.raises(TrainingStalledError) as stopped:
        train(out=tmp_path / "r", epochs=2, lr=0.01, activation="sigmoid", **DIGITS)
    message = str(stopped.value)
    assert "with the hidden units alive" in message
    assert "the lr 0.01 is too low to leave the start in 2 epochs; try lr=0.05 or more epochs=" in message


def test_the_stall_check_can_be_turned_off(tmp_path, capsys):
    assert len(train(out=tmp_path / "a", epochs=5, lr=2.0, stall_check=False, **DIGITS).history) == 5
    flags = ["--dataset", "digits", "--epochs", "5", "--lr", "2", "--quiet", "--no-stall-check"]
    assert main(["train", "--out", str(tmp_path / "b"), *flags]) == 0
    assert len((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()) == 5
    last = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["train_accuracy"] < 0.15  # it was indeed stuck: the flag let it train on
    with pytest.raises(ConfigError, match="stall_check= must be True or False"):
        train(out=tmp_path / "c", stall_check="no", **DIGITS)
