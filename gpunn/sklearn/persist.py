"""A fitted estimator as a gpunn checkpoint, and back: the same .npz format `gpunn train` writes.

The checkpoint holds the estimator's Sequential (so `gpunn evaluate / predict / export / serve` take a
classifier's) and, in its header, the input width, the class names, and a "sklearn" section with the
estimator's parameters and fitted attributes (plain JSON: nothing is unpickled). A binary classifier's one
logistic output z is saved as two softmax logits (0, z): softmax((0, z)) = (1 - sigmoid(z), sigmoid(z)),
its predict_proba, so every face reads it as a two-class model; loading takes the difference back.
A regressor's or a multilabel classifier's header says its outputs are not softmax, and the CLI refuses
them by name. The optimizer's state is not saved: partial_fit after load starts a fresh solver.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import sklearn
from sklearn.base import is_classifier
from sklearn.preprocessing import LabelBinarizer

from gpunn.backend import get_backend
from gpunn.checkpoint import load_checkpoint, save_checkpoint
from gpunn.errors import CheckpointError
from gpunn.sklearn.model import build_model

SECTION = "sklearn"
ATTRIBUTES = (
    "n_iter_",
    "t_",
    "loss_",
    "loss_curve_",
    "best_loss_",
    "validation_scores_",
    "best_validation_score_",
    "n_outputs_",
    "n_layers_",
    "out_activation_",
)


def _plain(value):
    """A JSON-able copy of a parameter or attribute (a RandomState instance cannot be saved: None)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return None


def _kind(estimator_or_class) -> str:
    instance = estimator_or_class() if isinstance(estimator_or_class, type) else estimator_or_class
    return "classifier" if is_classifier(instance) else "regressor"


def portable_model(estimator):
    """(the estimator's Sequential on the host, what its outputs are: "softmax" for logits, else the
    out_activation_ to apply), a binary classifier's one logit z made the two softmax logits (0, z)."""
    weights = [np.array(w) for w in estimator._host_weights()]
    binary = is_classifier(estimator) and estimator._label_binarizer.y_type_ == "binary"
    if binary:
        weights[-2] = np.concatenate([np.zeros_like(weights[-2]), weights[-2]], axis=1)
        weights[-1] = np.concatenate([np.zeros_like(weights[-1]), weights[-1]])
    units = [weights[0].shape[0], *(w.shape[1] for w in weights[0::2])]
    model = build_model(units, estimator.activation, get_backend("cpu", weights[0].dtype.name))
    model.set_weights(weights)
    softmax = binary or (is_classifier(estimator) and estimator.out_activation_ == "softmax")
    return model, "softmax" if softmax else estimator.out_activation_


def save_estimator(estimator, path) -> Path:
    """Write a fitted estimator to `path` (a .npz checkpoint), atomically."""
    model, outputs = portable_model(estimator)
    binary = is_classifier(estimator) and estimator._label_binarizer.y_type_ == "binary"
    section = {
        "kind": _kind(estimator),
        "scikit_learn_version": sklearn.__version__,
        "params": {k: _plain(v) for k, v in estimator.get_params(deep=False).items()},
        "attributes": {name: _plain(getattr(estimator, name, None)) for name in ATTRIBUTES},
        "binary_as_two_logits": binary,
        "feature_names_in": _plain(getattr(estimator, "feature_names_in_", None)),
    }
    header = {"outputs": outputs}
    header["input_width"] = int(estimator.n_features_in_)
    if is_classifier(estimator):
        header["classes"] = [str(c) for c in estimator.classes_]
        section["classes"] = _plain(estimator.classes_)
        section["y_type"] = estimator._label_binarizer.y_type_
    return save_checkpoint(path, model, {**header, SECTION: section})


def load_estimator(cls, path, device=None):
    """The fitted `cls` (MLPClassifier or MLPRegressor) saved in `path`; device: where it predicts (default:
    the device it was fitted with)."""
    checkpoint = load_checkpoint(path)
    section = checkpoint.header.get(SECTION)
    if not isinstance(section, dict):
        raise CheckpointError(
            f"{path}: not a scikit-learn estimator's checkpoint (load a gpunn model with gpunn.nn.Sequential.load)"
        )
    if section.get("kind") != _kind(cls):
        raise CheckpointError(f"{path}: holds a scikit-learn {section.get('kind')}, not an {cls.__name__}")
    try:
        return _restore(cls, checkpoint, section, device)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(
            f"{path}: its scikit-learn section is malformed ({type(exc).__name__}: {exc})"
        ) from None


def _restore(cls, checkpoint, section: dict, device):
    known = cls().get_params(deep=False)
    params = {k: v for k, v in section["params"].items() if k in known}
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    if device is not None:
        params["device"] = device
    estimator = cls(**params)
    weights = list(checkpoint.weights)
    if section["binary_as_two_logits"]:  # sigmoid(z1 - z0) is softmax's second column
        weights[-2] = weights[-2][:, 1:] - weights[-2][:, :1]
        weights[-1] = weights[-1][1:] - weights[-1][:1]
    estimator._set_weights(weights)
    units = [weights[0].shape[0], *(w.shape[1] for w in weights[0::2])]
    expected = [d["type"] for d in build_model(units, estimator.activation, "cpu").describe()]
    if [d.get("type") for d in checkpoint.architecture] != expected:
        raise ValueError(f"its layers are not an MLP of {estimator.activation} units")
    for name in ATTRIBUTES:
        setattr(estimator, name, section["attributes"][name])
    estimator.n_features_in_ = int(checkpoint.header["input_width"])
    if section.get("feature_names_in") is not None:
        estimator.feature_names_in_ = np.asarray(section["feature_names_in"], dtype=object)
    if _kind(cls) == "classifier":
        binarizer = LabelBinarizer()
        if section["y_type"] == "multilabel-indicator":
            binarizer.fit(np.eye(len(section["classes"]), dtype=int))
        else:
            binarizer.fit(np.asarray(section["classes"]))
        estimator._label_binarizer, estimator.classes_ = binarizer, binarizer.classes_
    return estimator
