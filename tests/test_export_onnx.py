"""ONNX export: onnxruntime's predictions equal gpunn's for every activation and input contract."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_train import gpunn_cli

from gpunn.cli.export_onnx import build_onnx, export_onnx, input_contract
from gpunn.data import load_dataset
from gpunn.nn import mlp
from gpunn.training.run import train

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ACTIVATIONS = ["relu", "leaky_relu", "sigmoid", "tanh", "gelu"]
CONTRACTS = [("uint8", "image"), ("uint8", "flat"), ("float32", "image"), ("float32", "flat")]


def run_onnx(proto, data, contract):
    x = data.images if len(contract["shape"]) == 3 else data.features
    if contract["dtype"] == "float32":
        x = (x / 255.0).astype(np.float32)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})


def assert_same_predictions(model, data, contract):
    probabilities, labels = run_onnx(build_onnx(model, contract, []), data, contract)
    expected = model.predict_proba(data.features)
    np.testing.assert_array_equal(labels, expected.argmax(axis=1))
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype, shape", CONTRACTS)
def test_digits_predictions_equal_gpunn(activation, dtype, shape):
    model = mlp([64, 32, 16, 10], activation=activation, seed=1, dropout=0.3)
    assert_same_predictions(model, load_dataset("digits", "test"), input_contract(64, dtype, shape))


@pytest.fixture(scope="module")
def mnist_test(data_root):
    return load_dataset("mnist", "test", data_dir=data_root)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_mnist_test_set_predictions_equal_gpunn(mnist_test, activation):
    # the headline architecture; He-initialised weights keep the test fast, the graph is the same
    model = mlp([784, 128, 64, 10], activation=activation, seed=2, dropout=0.2)
    for dtype, shape in (("uint8", "image"), ("float32", "flat")):
        assert_same_predictions(model, mnist_test, input_contract(784, dtype, shape))


def test_cli_writes_the_contract_into_the_metadata(tmp_path):
    train(out=tmp_path / "r", dataset="digits", epochs=1, val_size=100, verbose=False)
    result = gpunn_cli("export", str(tmp_path / "r" / "best.npz"), "--onnx", str(tmp_path / "m.onnx"))
    assert result.returncode == 0, result.stderr
    assert "input uint8 Nx8x8" in result.stdout
    proto = onnx.load(tmp_path / "m.onnx")
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["input_dtype"] == "uint8" and json.loads(meta["input_shape"]) == ["N", 8, 8]
    assert json.loads(meta["class_names"]) == [str(i) for i in range(10)]
    graph_input = proto.graph.input[0].type.tensor_type
    assert graph_input.elem_type == onnx.TensorProto.UINT8 and len(graph_input.shape.dim) == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input-dtype", "float64"], "--input-dtype must be one of uint8, float32"),
        (["--input-shape", "square"], "--input-shape must be one of flat, image"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(tmp_path, args, message):
    train(out=tmp_path / "r", dataset="digits", epochs=1, verbose=False)
    result = gpunn_cli("export", str(tmp_path / "r"), "--onnx", str(tmp_path / "m.onnx"), *args)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "m.onnx").exists()


def test_an_existing_file_is_not_overwritten(tmp_path):
    train(out=tmp_path / "r", dataset="digits", epochs=1, verbose=False)
    (tmp_path / "m.onnx").write_bytes(b"keep")
    with pytest.raises(Exception, match="already exists"):
        export_onnx(tmp_path / "r", tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == b"keep"


def test_non_square_inputs_refuse_the_image_shape():
    with pytest.raises(Exception, match="needs square images"):
        input_contract(10, "uint8", "image")
    assert input_contract(10)["shape"] == ["N", 10]
