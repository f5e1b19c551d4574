"""skl2onnx converters for gpunn's estimators, registered by `import gpunn.sklearn` when skl2onnx is there.

`skl2onnx.to_onnx(estimator_or_pipeline, X[:1])` then converts them alone and inside pipelines. The graph
is the estimator's Sequential spelled by gpunn export's layer_nodes (one home for the layers' ONNX), then
the output: a classifier's softmax probabilities (a binary one's two logits (0, z), see persist.py) and its
label (the argmax looked up in classes_), a multilabel classifier's sigmoid outputs and 0/1 labels, a
regressor's values (identity, or exp for Poisson).
"""

from __future__ import annotations

import numpy as np


def register() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    from gpunn.sklearn.estimators import MLPClassifier, MLPRegressor

    update_registered_converter(
        MLPClassifier,
        "GpunnMLPClassifier",
        calculate_linear_classifier_output_shapes,
        _convert_classifier,
        options={"zipmap": [True, False, "columns"], "nocl": [True, False]},
    )
    update_registered_converter(
        MLPRegressor,
        "GpunnMLPRegressor",
        calculate_linear_regressor_output_shapes,
        _convert_regressor,
    )


def _stack(scope, operator, container):
    """(name of the output layer's result, what its outputs are, node()): the Sequential's nodes."""
    from skl2onnx.common.data_types import guess_proto_type
    from skl2onnx.proto import onnx_proto

    from gpunn.cli.export_onnx import layer_nodes
    from gpunn.sklearn.persist import portable_model

    proto = guess_proto_type(operator.inputs[0].type)
    if proto != onnx_proto.TensorProto.DOUBLE:
        proto = onnx_proto.TensorProto.FLOAT
    dtype = np.float64 if proto == onnx_proto.TensorProto.DOUBLE else np.float32
    model, outputs = portable_model(operator.raw_operator)

    def node(op: str, inputs: list[str], **attrs) -> str:
        out = scope.get_unique_variable_name(op.lower())
        container.add_node(op, inputs, out, name=scope.get_unique_operator_name(op), **attrs)
        return out

    def const(name: str, value) -> str:
        unique = scope.get_unique_variable_name(name.replace(".", "_"))
        value = np.asarray(value)
        container.add_initializer(unique, proto, value.shape, value.ravel().tolist())
        return unique

    x = node("Cast", [operator.inputs[0].full_name], to=proto)
    return layer_nodes(model, x, node, const, dtype), outputs, node


def _convert_classifier(scope, operator, container):
    from skl2onnx.proto import onnx_proto

    estimator = operator.raw_operator
    z, outputs, node = _stack(scope, operator, container)
    label, probabilities = operator.outputs[0].full_name, operator.outputs[1].full_name
    if outputs == "softmax":
        container.add_node(
            "Softmax", [z], probabilities, name=scope.get_unique_operator_name("Softmax"), axis=1
        )
        index = node("ArgMax", [probabilities], axis=1, keepdims=0)
        classes = estimator.classes_
        if classes.dtype.kind in "iub":
            table, kind = np.asarray(classes, dtype=np.int64), onnx_proto.TensorProto.INT64
        else:
            table, kind = np.array([str(c).encode("utf-8") for c in classes]), onnx_proto.TensorProto.STRING
        names = scope.get_unique_variable_name("classes")
        container.add_initializer(names, kind, table.shape, table.tolist())
        container.add_node(
            "Gather", [names, index], label, name=scope.get_unique_operator_name("Gather"), axis=0
        )
    else:  # multilabel: independent logistic outputs, label 1 where p > 0.5
        container.add_node("Sigmoid", [z], probabilities, name=scope.get_unique_operator_name("Sigmoid"))
        positive = node("Binarizer", [probabilities], threshold=0.5, op_domain="ai.onnx.ml")
        container.add_node(
            "Cast",
            [positive],
            label,
            name=scope.get_unique_operator_name("Cast"),
            to=onnx_proto.TensorProto.INT64,
        )


def _convert_regressor(scope, operator, container):
    z, outputs, _ = _stack(scope, operator, container)
    op = "Exp" if outputs == "exp" else "Identity"
    container.add_node(op, [z], operator.outputs[0].full_name, name=scope.get_unique_operator_name(op))
