"""Loggers for the tools people already watch training with, as callbacks (`gpunn.train(callbacks=[...])`):
TensorBoardLogger writes event files, MLflowLogger logs to an MLflow tracking store. Each needs its extra
(`pip install "gpunn[tensorboard]"`, `"gpunn[mlflow]"`), imported only when a logger is made: gpunn itself
imports without them."""

from gpunn.tracking.extras import TrackingError
from gpunn.tracking.mlflow_logger import MLflowLogger
from gpunn.tracking.tensorboard_logger import TensorBoardLogger

__all__ = ["MLflowLogger", "TensorBoardLogger", "TrackingError"]
