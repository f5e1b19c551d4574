"""`gpunn export RUN --onnx FILE`: the trained model as an ONNX graph, its input contract in the metadata.

The graph is built from plain ONNX operators (MatMul, Add, Relu, LeakyRelu, Sigmoid, Tanh, GELU spelled
out in its tanh form, Softmax), so any runtime that reads opset 17 runs it. Dropout is identity at
inference and leaves no node. uint8 inputs are divided by 255 inside the graph, as gpunn does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

import gpunn
from gpunn.errors import ExportError
from gpunn.outputs import check_output, new_file

OPSET = 17
INPUT_DTYPES = ("uint8", "float32")
INPUT_SHAPES = ("flat", "image")


def image_side(features: int) -> int | None:
    """28 for 784 inputs, 8 for 64: the side of a square image, None when the inputs are not one."""
    side = math.isqrt(features)
    return side if side * side == features else None


def input_contract(features: int, input_dtype: str = "uint8", input_shape: str | None = None) -> dict:
    """What the exported graph takes, checked: the metadata that travels with it.

    input_shape None: "image" (N, side, side) for square images (MNIST's 28x28, digits' 8x8), else "flat".
    """
    if input_dtype not in INPUT_DTYPES:
        raise ExportError(f"--input-dtype must be one of {', '.join(INPUT_DTYPES)}, got {input_dtype!r}")
    side = image_side(features)
    if input_shape is None:
        input_shape = "image" if side is not None else "flat"
    if input_shape not in INPUT_SHAPES:
        raise ExportError(f"--input-shape must be one of {', '.join(INPUT_SHAPES)}, got {input_shape!r}")
    if input_shape == "image" and side is None:
        raise ExportError(
            f"--input-shape image needs square images; this model takes {features} inputs: use flat"
        )
    shape = ["N", side, side] if input_shape == "image" else ["N", features]
    scale = (
        "pixels 0-255, divided by 255 inside the graph"
        if input_dtype == "uint8"
        else "floats already scaled to [0, 1] (pixel / 255), as gpunn trains on"
    )
    return {"dtype": input_dtype, "shape": shape, "values": scale}


def layer_nodes(model, x: str, node, const, weights_dtype) -> str:
    """The nodes of `model`'s layers after the input named x; returns the output's name. The one home of
    the layers' ONNX spelling, for `gpunn export` and the skl2onnx converter (gpunn/sklearn/to_onnx.py):
    node(op, inputs, **attributes) adds a node and names its output, const(name, array) an initializer."""

    def scalar(value: float) -> str:
        return const("scalar", np.array(value, weights_dtype))

    weights = iter(model.get_weights())
    for index, layer in enumerate(model.describe()):
        kind = layer["type"]
        if kind == "Dense":
            w, b = next(weights), next(weights)
            x = node("MatMul", [x, const(f"dense{index}.weight", w.astype(weights_dtype))])
            x = node("Add", [x, const(f"dense{index}.bias", b.astype(weights_dtype))])
        elif kind in SIMPLE_NODES:
            x = node(SIMPLE_NODES[kind], [x])
        elif kind == "LeakyReLU":
            x = node("LeakyRelu", [x], alpha=float(layer["alpha"]))
        elif kind == "GELU":  # 0.5 x (1 + tanh(k (x + c x^3))), gpunn's tanh form
            cube = node("Mul", [node("Mul", [x, x]), x])
            inner = node("Add", [x, node("Mul", [cube, scalar(0.044715)])])
            t = node("Tanh", [node("Mul", [inner, scalar(math.sqrt(2.0 / math.pi))])])
            x = node("Mul", [node("Mul", [x, scalar(0.5)]), node("Add", [t, scalar(1.0)])])
        elif kind == "Softmax":
            x = node("Softmax", [x], axis=1)
        elif kind != "Dropout":  # Dropout is identity at inference
            raise ExportError(f"layer {kind} has no ONNX export")
    return x


# gpunn layers whose ONNX operator takes no attribute
SIMPLE_NODES = {"ReLU": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Identity": "Identity", "Exp": "Exp"}


def build_onnx(model, contract: dict, class_names: list[str], doc: str = ""):
    """An onnx.ModelProto computing softmax probabilities (and the argmax label) of `model`."""
    onnx = _import_onnx()
    from onnx import TensorProto, helper, numpy_helper

    weights_dtype = np.dtype(model.backend.dtype_name)
    elem = helper.np_dtype_to_tensor_dtype(weights_dtype)
    nodes, inits = [], []

    def const(name: str, value) -> str:
        if name == "scalar":
            name = f"scalar_{len(inits)}"
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def scalar(value: float) -> str:
        return const(f"scalar_{len(inits)}", np.array(value, weights_dtype))

    def node(op: str, inputs: list[str], **attrs) -> str:
        out = f"{op.lower()}_{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    x = "input"
    in_type = TensorProto.UINT8 if contract["dtype"] == "uint8" else TensorProto.FLOAT
    if contract["dtype"] == "uint8" or weights_dtype != np.float32:
        x = node("Cast", [x], to=elem)
    if contract["dtype"] == "uint8":
        x = node("Div", [x, scalar(255.0)])
    if len(contract["shape"]) == 3:
        x = node("Reshape", [x, const("flat_shape", np.array([-1, model.in_features], np.int64))])
    x = layer_nodes(model, x, node, const, weights_dtype)
    logits = x
    nodes.append(helper.make_node("Softmax", [logits], ["probabilities"], name="probabilities", axis=1))
    nodes.append(helper.make_node("ArgMax", [logits], ["label"], name="label", axis=1, keepdims=0))
    dims = list(contract["shape"])  # the batch axis keeps its name, N
    classes = model.describe()[-1]["out"] if model.describe()[-1]["type"] == "Dense" else None
    graph = helper.make_graph(
        nodes,
        "gpunn_mlp",
        [helper.make_tensor_value_info("input", in_type, dims)],
        [
            helper.make_tensor_value_info("probabilities", elem, ["N", classes]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
        ],
        inits,
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="gpunn", doc_string=doc
    )
    proto.producer_version = gpunn.__version__
    proto.ir_version = min(proto.ir_version, 9)  # readable by onnxruntime releases of the last two years
    metadata = {
        "gpunn_version": gpunn.__version__,
        "input_dtype": contract["dtype"],
        "input_shape": json.dumps(contract["shape"]),
        "input_values": contract["values"],
        "class_names": json.dumps(class_names),
        "architecture": json.dumps(model.describe()),
    }
    helper.set_model_props(proto, metadata)
    onnx.checker.check_model(proto)
    return proto


def export_onnx(
    checkpoint_path, output, input_dtype: str = "uint8", input_shape: str | None = None, force: bool = False
) -> tuple[Path, dict]:
    """Write the model of a checkpoint (a run folder, checkpoint.npz or best.npz) to `output` atomically,
    replacing no file unless `force` (and never a run's own, see gpunn.outputs).

    Returns the path and the input contract written into the metadata.
    """
    from gpunn.checkpoint import class_names, classifier_from_checkpoint, load_checkpoint

    output = check_output(output, force)
    checkpoint = load_checkpoint(checkpoint_path)
    model = classifier_from_checkpoint(checkpoint, checkpoint_path, "cpu")
    names = list(class_names(checkpoint, model.out_features))
    contract = input_contract(model.in_features, input_dtype, input_shape)
    proto = build_onnx(model, contract, names, doc=f"gpunn model from {checkpoint_path}")
    with new_file(output, force) as fh:
        fh.write(proto.SerializeToString())
    return output, contract


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ExportError('ONNX export needs the onnx package: pip install "gpunn[onnx]"') from None
    return onnx
