"""Checkpoints through the library: what a round trip keeps, what the header says, and every refusal."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

import gpunn
import gpunn.checkpoint as checkpoint_module
import gpunn.nn.model
from gpunn.checkpoint import (
    Checkpoint,
    architecture_summary,
    class_names,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from gpunn.data.sources import SOURCES
from gpunn.errors import CheckpointError
from gpunn.nn import SGD, Dense, ReLU, Sequential, Tanh, mlp
from gpunn.nn.layers import LAYER_TYPES


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
        (
            "array.order",
            r"evil.npz: corrupt or truncated checkpoint \(ValueError: member array.order.npy holds obj",
        ),
        (
            "param.0",
            r"evil.npz: corrupt or truncated checkpoint \(ValueError: member param.0.npy holds objects",
        ),
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
        (None, "not a gpunn checkpoint (no readable header)"),
        (np.frombuffer(b"\xff\xfe{", dtype=np.uint8), "not a gpunn checkpoint (no readable header)"),
        (header_bytes(["gpunn-checkpoint"]), "not a gpunn checkpoint"),
        (header_bytes({"format": "other"}), "not a gpunn checkpoint"),
    ],
    ids=["missing", "not-utf8", "not-a-dict", "other-format"],
)
def test_foreign_headers_are_refused(tmp_path, header, message):
    save_checkpoint(tmp_path / "c.npz", mlp([3, 2], backend="cpu"))
    rewrite(tmp_path / "c.npz", header=header)
    assert refusal(tmp_path / "c.npz") == f"{tmp_path / 'c.npz'}: {message}"


def test_a_dtype_gpunn_does_not_compute_in_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "c.npz", mlp([3, 2], backend="cpu"), {"dtype": "int8"})
    assert refusal(path) == f"{path}: dtype 'int8' is not float32 or float64"


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


FASHION = SOURCES["fashion-mnist"].class_names


def names_for(header: dict, classes: int) -> tuple[str, ...]:
    return class_names(Checkpoint(header, []), classes)


def test_class_names_come_from_the_run_then_its_dataset_then_numbers():
    fashion = {"config": {"dataset": "fashion-mnist"}}
    letters = [chr(ord("a") + i) for i in range(10)]
    assert names_for({**fashion, "classes": letters}, 10) == tuple(letters)  # the run's own names first
    assert names_for({**fashion, "classes": letters[:9]}, 10) == FASHION  # one name short: not the run's
    assert names_for({**fashion, "classes": [*letters[:9], 9]}, 10) == FASHION  # a number is not a name
    assert names_for({**fashion, "classes": "abcdefghij"}, 10) == FASHION  # a string is not a list of names
    assert names_for(fashion, 3) == ("0", "1", "2")  # the dataset has 10 names, the model 3 outputs
    assert names_for({"config": {"dataset": "nowhere"}}, 2) == ("0", "1")
    assert names_for({}, 10) == tuple("0123456789")  # no config: MNIST, whose names are its digits


def refusal(path) -> str:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    return str(err.value)


def corrupt(path, member: str, declares: str) -> str:
    return (
        f"{path}: corrupt or truncated checkpoint (ValueError: member {member} declares {declares}, "
        "which the architecture does not allow)"
    )


def replace_member(path, member: str, data: bytes) -> None:
    """Rewrite one member's raw bytes (an .npy np.savez would not write)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members[member] = data
    with zipfile.ZipFile(path, "w") as archive:
        for name, raw in members.items():
            archive.writestr(name, raw)


def test_a_member_in_npy_format_2_loads_like_format_1(tmp_path):
    """np.save writes format 2.0 when a header outgrows 64 KiB; its header is read with the 2.0 reader."""
    model = mlp([3, 2], backend="cpu", dtype="float64", seed=4)
    path = save_checkpoint(tmp_path / "c.npz", model)
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, model.get_weights()[0], version=(2, 0))
    replace_member(path, "param.0.npy", buffer.getvalue())
    np.testing.assert_array_equal(load_checkpoint(path).weights[0], model.get_weights()[0])


def test_the_header_must_be_one_row_of_bytes(tmp_path):
    path = tmp_path / "c.npz"
    save_checkpoint(path, mlp([3, 2], backend="cpu"))
    header = header_bytes(load_checkpoint(path).header)
    for refused in (header.reshape(1, -1), header.astype(np.int8)):  # the same bytes, another shape or dtype
        rewrite(path, header=refused)
        assert refusal(path) == f"{path}: not a gpunn checkpoint (no readable header)"
    rewrite(path, header=header)
    assert load_checkpoint(path).header["format"] == "gpunn-checkpoint"


def test_the_epoch_order_must_be_one_row_of_integers_within_the_cap(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "MAX_ORDER", 3)
    path = tmp_path / "c.npz"
    model = mlp([3, 2], backend="cpu")
    save_checkpoint(path, model, arrays={"order": np.array([2, 0, 1], dtype=np.uint16)})
    np.testing.assert_array_equal(load_checkpoint(path).arrays["order"], [2, 0, 1])  # exactly the cap
    for order, declares in [
        (np.arange(4), "int64 (4,)"),  # one past the cap
        (np.array([[2], [0], [1]]), "int64 (3, 1)"),
        (np.array([2.0, 0.0, 1.0]), "float64 (3,)"),
    ]:
        save_checkpoint(path, model, arrays={"order": order})
        assert refusal(path) == corrupt(path, "array.order.npy", declares)


def test_optimizer_state_for_a_parameter_the_architecture_lacks_is_refused(tmp_path):
    path = tmp_path / "c.npz"
    model, optimizer = trained_a_step()  # 4 parameters: velocity.0 to velocity.3
    for index in (4, 9):
        save_checkpoint(path, model, optimizer=optimizer)
        rewrite(path, **{f"optim.velocity.{index}": np.zeros(3)})
        assert refusal(path) == corrupt(path, f"optim.velocity.{index}.npy", "float64 (3,)")


@pytest.mark.parametrize(
    "architecture, message",
    [
        ([], "the header has no architecture: not a gpunn checkpoint"),
        ("Dense", "the header has no architecture: not a gpunn checkpoint"),
        (
            ["Dense"],
            f"unknown layer type None (this gpunn knows {', '.join(LAYER_TYPES)}); it may come from a newer gpunn",
        ),
        ([{"type": "Tanh"}], "the architecture has no layer with weights"),
        (
            [{"type": "Dense", "in": 1 << 15, "out": 1 << 13}],
            "the architecture declares more than 268,435,456 parameters",
        ),
    ],
    ids=["empty", "not-a-list", "layer-not-a-dict", "no-weights", "too-many-parameters"],
)
def test_architectures_that_cannot_be_loaded_are_named(tmp_path, architecture, message):
    path = tmp_path / "c.npz"
    save_checkpoint(path, mlp([3, 2], backend="cpu"), {"architecture": architecture})
    assert refusal(path) == f"{path}: {message}"


def test_the_parameter_cap_is_inclusive(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.npz", mlp([3, 2], backend="cpu"))  # 3 * 2 weights + 2 biases
    monkeypatch.setattr(gpunn.nn.model, "MAX_PARAMETERS", 8)
    assert [w.shape for w in load_checkpoint(path).weights] == [(3, 2), (2,)]
    monkeypatch.setattr(gpunn.nn.model, "MAX_PARAMETERS", 7)
    assert refusal(path) == f"{path}: the architecture declares more than 7 parameters"


def test_load_model_rebuilds_in_the_dtype_asked_for(tmp_path):
    model = mlp([3, 2], backend="cpu", dtype="float64", seed=3)
    path = save_checkpoint(tmp_path / "c.npz", model)
    assert load_model(path, "cpu").backend.dtype_name == "float64"  # the checkpoint's own by default
    as_float32 = load_model(path, "cpu", "float32")
    assert as_float32.backend.dtype_name == "float32"
    np.testing.assert_array_equal(as_float32.get_weights()[0], model.get_weights()[0].astype(np.float32))


def test_a_header_declaring_more_elements_than_int64_holds_is_refused(tmp_path):
    """The declared shape is checked against the member's size in exact integers (int64 would overflow)."""
    path = save_checkpoint(tmp_path / "c.npz", mlp([3, 2], backend="cpu"))
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": (2**70,)})
    replace_member(path, "header.npy", buffer.getvalue() + b"{}")
    assert refusal(path) == f"{path}: not a gpunn checkpoint (no readable header)"


def declare_size(path, member: str, size: int) -> None:
    """Make the zip's central directory claim `size` uncompressed bytes for `member` (a forged entry)."""
    raw = bytearray(path.read_bytes())
    entry = raw.rindex(member.encode()) - 46  # the central directory's copy of the name comes last
    assert raw[entry : entry + 4] == b"PK\x01\x02"
    raw[entry + 24 : entry + 28] = size.to_bytes(4, "little")
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("member, stored", [("param.1.npy", 144), ("optim.steps.npy", 0)])
def test_a_member_claiming_more_than_deflate_can_expand_is_refused_before_reading(tmp_path, member, stored):
    # deflate expands at most 1032-fold: a member may claim 1032 * max(stored, 1) + 1024 bytes and no more
    path = tmp_path / "c.npz"
    limit = 1032 * max(stored, 1) + 1024
    for claimed, refused in [(limit + 1, True), (limit, False)]:
        save_checkpoint(path, mlp([3, 2], backend="cpu", dtype="float64"))
        if stored == 0:
            replace_member(path, member, b"")
        declare_size(path, member, claimed)
        message = refusal(path)
        assert (message == f"{path}: member {member!r} claims an impossible size") == refused, message


def test_the_header_may_be_as_large_as_the_cap_and_no_larger(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.npz", mlp([3, 2], backend="cpu"))
    with zipfile.ZipFile(path) as archive:
        size = archive.getinfo("header.npy").file_size
    monkeypatch.setattr(checkpoint_module, "MAX_HEADER_BYTES", size)
    assert load_checkpoint(path).header["format"] == "gpunn-checkpoint"
    monkeypatch.setattr(checkpoint_module, "MAX_HEADER_BYTES", size - 1)
    assert refusal(path) == f"{path}: header larger than {size - 1} bytes: not a gpunn checkpoint"


@pytest.mark.parametrize(
    "forged_size, problem",
    [(False, ": its size does not match the shape it declares"), (True, " is truncated")],
    ids=["short-member", "short-data-behind-a-forged-size"],
)
def test_a_parameter_with_half_its_data_is_refused(tmp_path, forged_size, problem):
    path = save_checkpoint(tmp_path / "c.npz", mlp([3, 2], backend="cpu", dtype="float64"))
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (2,)})
    replace_member(path, "param.1.npy", buffer.getvalue() + bytes(8))  # (2,) float64 declared, 8 bytes given
    if forged_size:  # the zip entry claims the 16 bytes the shape needs
        declare_size(path, "param.1.npy", len(buffer.getvalue()) + 16)
    assert (
        refusal(path) == f"{path}: corrupt or truncated checkpoint (ValueError: member param.1.npy{problem})"
    )
