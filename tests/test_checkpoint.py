"""Checkpoints through the library: what a round trip keeps, what the header says, and every refusal."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gpunn
from gpunn.checkpoint import architecture_summary, load_checkpoint, save_checkpoint
from gpunn.errors import CheckpointError
from gpunn.nn import SGD, Dense, ReLU, Sequential, Tanh, mlp


def trained_a_step(backend="cpu", dtype="float64"):
    model = mlp([5, 4, 3], backend=backend, dtype=dtype, seed=2)
    optimizer = SGD(0.1, momentum=0.9)
    for param in model.parameters():
        param.grad = model.backend.xp.ones_like(param.value)
    optimizer.step(model.parameters(), model.backend)
    return model, optimizer


def rewrite(path, **changes):
    """Re-save a checkpoint's arrays with some replaced (None drops the key)."""
    with np.load(path) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)


def header_bytes(header: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)


def test_round_trip_keeps_weights_optimizer_state_arrays_and_header(tmp_path):
    model, optimizer = trained_a_step()
    order = np.array([2, 0, 1])
    save_checkpoint(tmp_path / "c.npz", model, {"epoch": 3}, optimizer, {"order": order})
    loaded = load_checkpoint(tmp_path / "c.npz")
    for saved, original in zip(loaded.weights, model.get_weights(), strict=True):
        assert saved.tobytes() == original.tobytes()
    assert set(loaded.optimizer_state) == {"steps", "velocity.0", "velocity.1", "velocity.2", "velocity.3"}
    assert int(loaded.optimizer_state["steps"]) == 1
    np.testing.assert_array_equal(loaded.optimizer_state["velocity.0"], np.ones((5, 4)))
    np.testing.assert_array_equal(loaded.arrays["order"], order)
    assert loaded.header == {
        "format": "gpunn-checkpoint",
        "version": 1,
        "gpunn_version": gpunn.__version__,
        "architecture": model.describe(),
        "dtype": "float64",
        "written_on": "cpu",
        "epoch": 3,
    }
    assert loaded.architecture == model.describe()


def test_header_records_the_device_and_dtype_written_on(tmp_path):
    model = mlp([3, 2], backend="strict", dtype="float32")
    save_checkpoint(tmp_path / "s.npz", model)
    header = load_checkpoint(tmp_path / "s.npz").header
    assert (header["written_on"], header["dtype"]) == ("strict", "float32")


def test_a_run_folder_loads_its_checkpoint_npz(tmp_path):
    model, _ = trained_a_step()
    save_checkpoint(tmp_path / "checkpoint.npz", model)
    rebuilt = Sequential.load(tmp_path, "strict")
    assert rebuilt.backend.device == "strict" and rebuilt.describe() == model.describe()
    for a, b in zip(rebuilt.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


UNPICKLED = []


class Payload:
    """Records its own unpickling: loading a checkpoint must never run code from the file."""

    def __reduce__(self):
        return (UNPICKLED.append, ("code ran",))


@pytest.mark.parametrize(
    "member, message",
    [
        ("array.x", r"evil.npz: unexpected member 'array.x.npy': not a gpunn checkpoint$"),
        ("array.order", r"evil.npz: corrupt or truncated checkpoint \(ValueError: member array.order.npy holds obj"),
        ("param.0", r"evil.npz: corrupt or truncated checkpoint \(ValueError: member param.0.npy holds objects"),
    ],
    ids=["unknown-member", "known-extra-array", "weights"],
)
def test_object_arrays_are_never_unpickled(tmp_path, member, message):
    path = tmp_path / "evil.npz"
    save_checkpoint(path, mlp([3, 2], backend="cpu"))
    rewrite(path, **{member: np.array([Payload()], dtype=object)})
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)
    assert UNPICKLED == []


def test_a_truncated_file_names_the_error(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, mlp([3, 2], backend="cpu"))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"c.npz: corrupt or truncated checkpoint \(BadZipFile: "):
        load_checkpoint(path)


def test_missing_file_and_missing_folder_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="nothing.npz: no checkpoint there"):
        load_checkpoint(tmp_path / "nothing.npz")
    with pytest.raises(CheckpointError, match="checkpoint.npz: no checkpoint there"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "header, message",
    [
        (None, "no readable header"),
        (np.frombuffer(b"\xff\xfe{", dtype=np.uint8), "no readable header"),
        (header_bytes(["gpunn-checkpoint"]), "not a gpunn checkpoint"),
        (header_bytes({"format": "other"}), "not a gpunn checkpoint"),
    ],
    ids=["missing", "not-utf8", "not-a-dict", "other-format"],
)
def test_foreign_headers_are_refused(tmp_path, header, message):
    save_checkpoint(tmp_path / "c.npz", mlp([3, 2], backend="cpu"))
    rewrite(tmp_path / "c.npz", header=header)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "c.npz")


def test_another_format_version_names_the_writer(tmp_path):
    model = mlp([3, 2], backend="cpu")
    save_checkpoint(tmp_path / "c.npz", model, {"version": 2, "gpunn_version": "9.9"})
    with pytest.raises(CheckpointError, match="format version 2 is not 1; it was written by gpunn 9.9"):
        load_checkpoint(tmp_path / "c.npz")


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, mlp([3, 2], backend="cpu"))
    rewrite(path, **{"param.1": None})
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == f"{path}: parameter 1 is missing"
    save_checkpoint(path, mlp([3, 2], backend="cpu"))
    rewrite(path, **{"param.1": np.zeros(3)})  # the architecture says (2,): refused before its data is read
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (
        f"{path}: corrupt or truncated checkpoint (ValueError: member param.1.npy declares float64 (3,), "
        "which the architecture does not allow)"
    )
    save_checkpoint(path, mlp([3, 2], backend="cpu"))
    rewrite(path, **{"param.2": np.zeros(2)})
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == f"{path}: parameter param.2 is not in the architecture"
    save_checkpoint(path, mlp([3, 2], backend="cpu"))
    rewrite(path, **{"param.0": None})
    with pytest.raises(CheckpointError, match="parameter 0 is missing"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "bad", [np.full((3, 2), np.nan), np.full((3, 2), np.inf), np.ones((3, 2), dtype=np.int64)]
)
def test_non_finite_or_integer_weights_are_refused(tmp_path, bad):
    path = tmp_path / "c.npz"
    save_checkpoint(path, mlp([3, 2], backend="cpu"))
    rewrite(path, **{"param.0": bad})
    with pytest.raises(CheckpointError, match="weights must be finite floats"):
        load_checkpoint(path)


def test_architecture_summary_lists_sizes_and_activations():
    assert architecture_summary(mlp([784, 128, 64, 10], backend="cpu").describe()) == "784-128-64-10 relu"
    assert architecture_summary(mlp([4, 2], backend="cpu").describe()) == "4-2"
    mixed = Sequential([Dense(4, 3), Tanh(), Dense(3, 3), ReLU(), Dense(3, 2)], "cpu").describe()
    assert architecture_summary(mixed) == "4-3-3-2 relu/tanh"
