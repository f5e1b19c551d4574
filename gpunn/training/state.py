"""Where a training run stands, typed: the one writer and the one reader of a run checkpoint's header.

Everything a resume needs to continue bit-exactly lives here (settings, position inside the epoch, the
epoch's partial sums, history, early-stopping state, the host RNG); the header keys are the ones gpunn has
always written, so checkpoints from earlier versions load (keys added later have defaults).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gpunn.backend import parse_device
from gpunn.checkpoint import count, flag, malformed, mapping, names, number, optional, text
from gpunn.errors import CheckpointError, GpunnError
from gpunn.rng import host_rng
from gpunn.training.config import TrainConfig
from gpunn.training.metrics import check_history

# the keys every run checkpoint has had since the first version; without them a file holds weights only
REQUIRED = ("config", "epoch", "step_in_epoch", "loss_sum", "correct", "history", "rng_state")


@dataclass
class TrainingState:
    """A run's settings and position; the loop advances it, a checkpoint stores it."""

    config: TrainConfig
    rng: np.random.Generator  # shuffles every epoch; its state is saved so a resume draws the same orders
    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0
    order: np.ndarray | None = None  # this epoch's shuffled order (host), kept for a mid-epoch resume
    loss_sum: float = 0.0  # the epoch's partial sums up to step_in_epoch (over all ranks)
    correct: int = 0
    history: list[dict] = field(default_factory=list)
    best_val_loss: float | None = None  # early stopping's state: the best validation loss so far
    best_epoch: int = 0
    stopped_early: bool = False
    data: dict | None = None  # provenance of the data files (gpunn.data.provenance.record)
    classes: list[str] | None = None
    device: str | None = None  # where the run trains; a resume without a device continues there
    dtype: str | None = None

    @classmethod
    def start(cls, config: TrainConfig) -> TrainingState:
        """A run that has trained nothing yet."""
        return cls(config, host_rng(config.seed))

    def to_header(self) -> dict:
        """The checkpoint header fields (JSON); the order goes in `arrays()`."""
        return {
            "config": self.config.to_dict(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "loss_sum": self.loss_sum,
            "correct": self.correct,
            "history": self.history,
            "rng_state": self.rng.bit_generator.state,
            "best_val_loss": self.best_val_loss,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
            "data": self.data,
            "classes": self.classes,
            "written_on": self.device,
            "dtype": self.dtype,
        }

    def arrays(self) -> dict[str, np.ndarray] | None:
        return {"order": self.order} if self.order is not None else None

    @classmethod
    def from_header(
        cls, header: dict, order: np.ndarray | None = None, path: str | Path = "checkpoint"
    ) -> TrainingState:
        """The state a checkpoint header describes; a missing or malformed field is one CheckpointError."""
        missing = [key for key in REQUIRED if key not in header]
        if missing:
            raise CheckpointError(
                f"{path}: holds weights only (written by Model.save(), or missing {', '.join(missing)}), not a "
                "training run: it cannot be resumed; evaluate or predict with it, or start a new run"
            )
        read = _Reader(header, path)
        state = cls(
            config=read("config", _config, "the run's settings"),
            rng=read("rng_state", _rng, "a NumPy bit generator state"),
            epoch=read("epoch", count, "a count"),
            step_in_epoch=read("step_in_epoch", count, "a count"),
            order=order,
            loss_sum=read("loss_sum", number, "a number"),
            correct=read("correct", count, "a count"),
            history=read("history", check_history, "a list of per-epoch metrics"),
            best_val_loss=read("best_val_loss", optional(number), "a number or null", None),
            best_epoch=read("best_epoch", count, "a count", 0),
            stopped_early=read("stopped_early", flag, "true or false", False),
            data=read("data", optional(mapping), "an object or null", None),
            classes=read("classes", optional(names), "a list of class names", None),
            device=read("written_on", optional(_device), "a device name", None),
            dtype=read("dtype", optional(text), "a dtype name", None),
        )
        if state.best_epoch > state.epoch or len(state.history) != state.epoch:
            raise CheckpointError(
                f"{path}: malformed checkpoint header: {state.epoch} epochs done but {len(state.history)} in "
                f"'history' and best epoch {state.best_epoch}; the file is damaged: start a new run"
            )
        return state

    def check_order(self, samples: int, path) -> None:
        """A saved mid-epoch order must be a permutation of this training set."""
        if self.order is not None and sorted(self.order.tolist()) != list(range(samples)):
            raise CheckpointError(f"{path}: its sample order does not fit the {samples} training samples")


class _Reader:
    """Reads one header field through its converter; a bad value names the field and what it must be."""

    _REQUIRED = object()

    def __init__(self, header: dict, path):
        self.header, self.path = header, path

    def __call__(self, key: str, convert, what: str, default=_REQUIRED):
        if key not in self.header and default is not self._REQUIRED:
            return default
        value = self.header[key]
        try:
            return convert(value)
        except (GpunnError, TypeError, ValueError) as exc:
            raise malformed(self.path, key, what, value, exc) from None


def _config(value) -> TrainConfig:
    return TrainConfig.from_dict(mapping(value))


def _device(value) -> str:
    parse_device(text(value))
    return value


def _rng(value) -> np.random.Generator:
    rng = host_rng(0)
    rng.bit_generator.state = mapping(value)
    return rng
