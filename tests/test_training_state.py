"""The typed training state: the one writer and reader of a run checkpoint's header."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gpunn.errors import CheckpointError
from gpunn.training.config import TrainConfig
from gpunn.training.state import TrainingState


def epoch_record(epoch: int, loss: float) -> dict:
    """One epoch's metrics as the loop writes them (gpunn.training.metrics checks every field)."""
    return {
        "epoch": epoch, "loss": loss, "train_accuracy": 0.5, "test_accuracy": 0.5, "lr": 0.1, "seconds": 1.0,
        "samples_per_second": 100.0, "val_loss": loss, "val_accuracy": 0.5,
    }  # fmt: skip


def mid_epoch_state() -> TrainingState:
    """A run stopped in epoch 3 at step 5, with every field away from its default."""
    state = TrainingState.start(TrainConfig.from_recipe("default", dataset="digits", epochs=4, val_size=100))
    state.rng.permutation(10)  # the generator has moved on since the seed
    state.epoch, state.step_in_epoch, state.order = 2, 5, np.array([2, 0, 1], dtype=np.int64)
    state.loss_sum, state.correct = 12.5, 140
    state.history = [epoch_record(1, 0.9), epoch_record(2, 0.7)]
    state.best_val_loss, state.best_epoch, state.stopped_early = 0.65, 2, True
    state.data, state.classes = {"dir": "somewhere", "files": {"a": "00"}}, ["zero", "one", "two"]
    state.device, state.dtype = "strict", "float64"
    return state


def test_header_round_trip_keeps_every_field_and_the_rng_stream():
    state = mid_epoch_state()
    header = json.loads(json.dumps(state.to_header()))  # what a checkpoint stores
    back = TrainingState.from_header(header, state.order)
    for name in ("config", "epoch", "step_in_epoch", "loss_sum", "correct", "history", "best_val_loss"):
        assert getattr(back, name) == getattr(state, name), name
    for name in ("best_epoch", "stopped_early", "data", "classes", "device", "dtype"):
        assert getattr(back, name) == getattr(state, name), name
    np.testing.assert_array_equal(back.order, state.order)
    np.testing.assert_array_equal(back.rng.permutation(50), state.rng.permutation(50))


def test_a_header_from_before_validation_and_provenance_loads_with_defaults():
    header = mid_epoch_state().to_header()
    for key in ("best_val_loss", "best_epoch", "stopped_early", "data", "classes"):
        del header[key]
    state = TrainingState.from_header(header)
    assert (state.best_val_loss, state.best_epoch, state.stopped_early) == (None, 0, False)
    assert (state.data, state.classes, state.order) == (None, None, None)


@pytest.mark.parametrize(
    "key, value, what",
    [
        ("epoch", "2", "a count"),
        ("step_in_epoch", -1, "a count"),
        ("correct", True, "a count"),
        ("loss_sum", None, "a number"),
        ("history", {"epoch": 1}, "a list of per-epoch metrics"),
        ("rng_state", {"bit_generator": "MT19937"}, "a NumPy bit generator state"),
        ("config", {"epochs": 0}, "the run's settings"),
        ("best_val_loss", "low", "a number or null"),
        ("stopped_early", 1, "true or false"),
        ("classes", [0, 1, 2], "a list of class names"),
        ("written_on", "gpu7", "a device name"),
    ],
)
def test_a_malformed_field_is_one_checkpoint_error_naming_it(key, value, what):
    header = json.loads(json.dumps(mid_epoch_state().to_header()))
    header[key] = value
    with pytest.raises(CheckpointError) as info:
        TrainingState.from_header(header, path="runs/r/checkpoint.npz")
    message = str(info.value)
    assert message.startswith(
        f"runs/r/checkpoint.npz: malformed checkpoint header: {key!r} must be {what}, got "
    )
    assert "start a new run" in message and "\n" not in message


def test_history_that_disagrees_with_the_epoch_count_is_refused():
    header = mid_epoch_state().to_header()
    header["history"] = header["history"][:1]
    with pytest.raises(CheckpointError, match="2 epochs done but 1 in 'history'"):
        TrainingState.from_header(header)


def test_a_weights_only_header_names_what_is_missing():
    header = mid_epoch_state().to_header()
    del header["rng_state"], header["history"]
    with pytest.raises(
        CheckpointError, match="holds weights only .*missing history, rng_state.*cannot be resumed"
    ):
        TrainingState.from_header(header)


def test_a_saved_order_must_be_a_permutation_of_the_training_set():
    state = mid_epoch_state()
    state.check_order(3, "c.npz")
    with pytest.raises(CheckpointError, match="c.npz: its sample order does not fit the 4 training samples"):
        state.check_order(4, "c.npz")
