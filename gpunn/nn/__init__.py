"""Layers, losses, initialisers, optimizers and the Sequential model, written once for every backend."""

from gpunn.nn.layers import GELU, Dense, Dropout, Layer, LeakyReLU, Param, ReLU, Sigmoid, Softmax, Tanh
from gpunn.nn.losses import (
    MSE,
    BinaryCrossEntropy,
    BinaryCrossEntropyWithLogits,
    CategoricalCrossEntropy,
    SoftmaxCrossEntropy,
)
from gpunn.nn.model import Sequential, mlp
from gpunn.nn.optim import SGD, Adam, Optimizer, make_optimizer

__all__ = [
    "GELU",
    "MSE",
    "SGD",
    "Adam",
    "BinaryCrossEntropy",
    "BinaryCrossEntropyWithLogits",
    "CategoricalCrossEntropy",
    "Dense",
    "Dropout",
    "Layer",
    "LeakyReLU",
    "Optimizer",
    "Param",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropy",
    "Tanh",
    "make_optimizer",
    "mlp",
]
