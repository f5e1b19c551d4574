"""gpunn.train(callbacks=[...]): called at the start, after every saved epoch and at the end; one may stop."""

import numpy as np
import pytest

import gpunn
from gpunn.training.callbacks import STOP, StopTraining
from gpunn.training.config import ConfigError
from gpunn.training.store import CHECKPOINT

SETTINGS = dict(dataset="digits", batch_size=32, hidden=(16,), verbose=False)


class Recorder:
    def __init__(self, stop_after=None, stop_with=STOP):
        self.calls, self.stop_after, self.stop_with = [], stop_after, stop_with

    def on_train_begin(self, run):
        self.calls.append(("begin", run.epochs_done, run.out_dir, run.model.num_parameters()))

    def on_epoch_end(self, record):
        self.calls.append(("epoch", record["epoch"], record["loss"]))
        record["loss"] = -1.0  # a callback's copy: the run's history must not change
        if record["epoch"] == self.stop_after:
            if self.stop_with is StopTraining:
                raise StopTraining
            return self.stop_with

    def on_train_end(self, history):
        self.calls.append(("end", [r["epoch"] for r in history]))


def test_every_hook_sees_the_run_in_order(tmp_path):
    recorder = Recorder()
    result = gpunn.train(out=tmp_path / "run", epochs=3, callbacks=[recorder], **SETTINGS)
    begin, *epochs, end = recorder.calls
    assert begin == ("begin", 0, tmp_path / "run", result.model.num_parameters())
    assert [c[:2] for c in epochs] == [("epoch", 1), ("epoch", 2), ("epoch", 3)]
    assert [c[2] for c in epochs] == [r["loss"] for r in result.history]  # the copy was changed, not this
    assert end == ("end", [1, 2, 3])


@pytest.mark.parametrize("stop_with", [STOP, StopTraining])
def test_a_callback_stops_after_a_saved_epoch_and_the_run_resumes(tmp_path, stop_with):
    out = tmp_path / "run"
    stopper = Recorder(stop_after=2, stop_with=stop_with)
    stopped = gpunn.train(out=out, epochs=5, callbacks=[stopper], **SETTINGS)
    assert [r["epoch"] for r in stopped.history] == [1, 2]
    assert stopper.calls[-1] == ("end", [1, 2])
    resumed = gpunn.train(resume=out, verbose=False, callbacks=[later := Recorder()])
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4, 5]
    assert later.calls[0][:2] == ("begin", 2)
    # the stopped run plus its resume is the uninterrupted run, bit for bit
    whole = gpunn.train(out=tmp_path / "whole", epochs=5, **SETTINGS)
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_failing_callback_propagates_and_keeps_the_saved_epochs(tmp_path):
    class Boom:
        def on_epoch_end(self, record):
            if record["epoch"] == 2:
                raise KeyError("from the callback")

    out = tmp_path / "run"
    with pytest.raises(KeyError, match="from the callback"):
        gpunn.train(out=out, epochs=4, callbacks=[Boom()], **SETTINGS)
    assert gpunn.train(resume=out, verbose=False).history[1]["epoch"] == 2
    assert (out / CHECKPOINT).exists()


@pytest.mark.parametrize(
    "callbacks, words",
    [(Recorder(), "takes a list"), ([object()], "has none of the methods"), ([lambda r: None], "none of")],
)
def test_callbacks_that_nothing_would_call_are_refused_before_any_folder(tmp_path, callbacks, words):
    with pytest.raises(ConfigError, match=words):
        gpunn.train(out=tmp_path / "run", epochs=1, callbacks=callbacks, **SETTINGS)
    assert not (tmp_path / "run").exists()
