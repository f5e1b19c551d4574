"""scikit-learn estimators backed by gpunn: drop-in MLPClassifier and MLPRegressor.

Same parameters (plus `device` and `dtype`), attributes and training as sklearn.neural_network's, so code,
grids and pipelines written for scikit-learn work unchanged; the arithmetic runs on `device` (cpu, cuda,
cuda:N, auto, strict). Inputs may be NumPy arrays, lists or scipy sparse matrices (the first layer's
product stays sparse); predictions come back as NumPy arrays of the input's dtype. A pickle holds host
arrays only, so a model fitted on cuda unpickles anywhere; to predict on another device,
set_params(device=...): gpunn never moves work from a GPU to the CPU on its own.
"""

import importlib.util

from gpunn.sklearn.estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]

if importlib.util.find_spec("skl2onnx") is not None:  # skl2onnx.to_onnx converts them (the onnx extra)
    from gpunn.sklearn.to_onnx import register

    register()
