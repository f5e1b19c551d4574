"""Layers, losses, initialisers, optimizers and the Sequential model, written once for every backend."""

from gpunn.nn.layers import (
    GELU,
    Dense,
    Dropout,
    Exp,
    Identity,
    Layer,
    LeakyReLU,
    Param,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
)
from gpunn.nn.losses import (
    MSE,
    BinaryCrossEntropy,
    BinaryCrossEntropyWithLogits,
    BinaryLogLoss,
    CategoricalCrossEntropy,
    HalfSquaredError,
    LogLoss,
    PoissonLoss,
    SoftmaxCrossEntropy,
    WeightedTargets,
)
from gpunn.nn.model import Sequential, mlp
from gpunn.nn.optim import SGD, Adam, Optimizer, make_optimizer
from gpunn.nn.penalty import L2Penalty

__all__ = [
    "GELU",
    "MSE",
    "SGD",
    "Adam",
    "BinaryCrossEntropy",
    "BinaryCrossEntropyWithLogits",
    "BinaryLogLoss",
    "CategoricalCrossEntropy",
    "Dense",
    "Dropout",
    "Exp",
    "HalfSquaredError",
    "Identity",
    "L2Penalty",
    "Layer",
    "LeakyReLU",
    "LogLoss",
    "Optimizer",
    "Param",
    "PoissonLoss",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SoftmaxCrossEntropy",
    "Tanh",
    "WeightedTargets",
    "make_optimizer",
    "mlp",
]
