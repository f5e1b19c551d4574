"""What gpunn chooses for the user is said and fits: the schedule under early stopping, the scaled lr in
the first line, samples/s of a resumed epoch, and a finite blow-up of the loss treated as divergence."""

from __future__ import annotations

import signal

import pytest

from gpunn.checkpoint import load_checkpoint
from gpunn.cli.sweep import run_sweep
from gpunn.errors import TrainingDivergedError, TrainingInterrupted
from gpunn.training import loop as train_loop
from gpunn.training.config import TrainConfig
from gpunn.training.run import train
from gpunn.training.schedules import EXPONENTIAL_DECAY, lr_at

DIGITS = dict(dataset="digits", verbose=False)


def test_exponential_warms_up_over_one_epoch_then_decays_per_epoch_whatever_the_budget():
    base, per_epoch = 0.2, 10
    for total in (40, 300):  # 4 or 30 epochs: the same lr at every step
        assert lr_at("exponential", base, 0, total, per_epoch) == pytest.approx(base / 25, rel=1e-12)
        assert lr_at("exponential", base, 5, total, per_epoch) == pytest.approx(
            base / 25 + (base - base / 25) / 2
        )
        assert lr_at("exponential", base, 10, total, per_epoch) == pytest.approx(base, rel=1e-12)
        assert lr_at("exponential", base, 30, total, per_epoch) == pytest.approx(base * EXPONENTIAL_DECAY**2)


def test_early_stopping_trains_with_a_schedule_that_needs_no_epoch_budget():
    stopping = TrainConfig.from_recipe(val_size=5000, early_stopping=3, epochs=30)
    assert stopping.schedule == "exponential"
    assert stopping.chosen == (
        "schedule exponential, not onecycle, which is stretched over all the epochs that early stopping "
        "may cut short",
    )
    assert TrainConfig.from_recipe(val_size=5000, epochs=30).schedule == "onecycle"  # no early stopping
    asked = TrainConfig.from_recipe(val_size=5000, early_stopping=3, schedule="onecycle")
    assert asked.schedule == "onecycle" and asked.chosen == ()  # an explicit schedule is used as given
    classic = TrainConfig.from_recipe("classic", val_size=5000, early_stopping=3)
    assert classic.schedule == "constant"  # constant needs no budget


def test_the_first_line_says_what_was_chosen(tmp_path, capsys):
    train(out=tmp_path / "a", epochs=1, batch_size=16, dataset="digits")
    first = capsys.readouterr().out.splitlines()[0]
    assert "| recipe default (lr 0.025: the recipe's 0.2 scaled to batch 16) |" in first
    train(out=tmp_path / "b", epochs=1, batch_size=16, lr=0.025, dataset="digits")
    assert "| recipe default |" in capsys.readouterr().out.splitlines()[0]  # asked for: nothing chosen


def test_a_resumed_epoch_reports_samples_per_second_over_the_samples_it_trained(tmp_path, monkeypatch):
    real_step, calls = train_loop.Loop._step, {"n": 0}

    def interrupting(self, *args):
        calls["n"] += 1
        if calls["n"] == 15:  # digits: 12 steps of 128 an epoch; this is step 3 of epoch 2
            signal.raise_signal(signal.SIGINT)  # caught: the loop saves before the next step
        return real_step(self, *args)

    monkeypatch.setattr(train_loop.Loop, "_step", interrupting)
    with pytest.raises(TrainingInterrupted):
        train(out=tmp_path / "r", epochs=2, **DIGITS)
    monkeypatch.undo()
    step = load_checkpoint(tmp_path / "r").header["step_in_epoch"]
    assert step == 3
    resumed = train(resume=tmp_path / "r", verbose=False).history[1]
    trained = 1437 - step * 128
    assert resumed["samples_per_second"] * resumed["seconds"] == pytest.approx(trained, rel=1e-9)


def test_a_finite_blow_up_is_divergence(tmp_path):
    # lr 1.0 at batch 128 on digits: loss 9.5 in epoch 1, then 25.8 (over 10 x ln 10 = 23.0), finite
    with pytest.raises(TrainingDivergedError) as diverged:
        train(out=tmp_path / "r", epochs=3, lr=1.0, **DIGITS)
    message = str(diverged.value)
    assert "in epoch 2" in message and "(over 10x chance level, ln 10)" in message
    assert "nan" not in message and "last good checkpoint (epoch 1)" in message
    assert load_checkpoint(tmp_path / "r").header["epoch"] == 1


def test_a_sweep_lists_a_blown_up_combination_as_failed(tmp_path):
    finished, blown = run_sweep({"dataset": ["digits"], "epochs": [3], "lr": [0.2, 1.0]}, tmp_path / "sw")
    assert finished.failure is None and finished.test_accuracy > 0.8
    assert (
        blown.test_accuracy is None and "over 10x chance level" in blown.failure and "--lr" in blown.failure
    )
