"""A run folder's files as training writes them: checkpoint.npz and metrics.jsonl after every epoch (and on a
stop mid-epoch), best.npz for the epoch with the lowest validation loss. Rank 0 alone writes."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from gpunn.atomic import write_text
from gpunn.checkpoint import save_checkpoint
from gpunn.errors import Options, TrainingInterrupted, flag_name
from gpunn.training.metrics import METRICS
from gpunn.training.state import TrainingState

CHECKPOINT = "checkpoint.npz"
BEST = "best.npz"  # the weights of the epoch with the lowest validation loss (with --val-size)


class RunStore:
    def __init__(self, out: Path, model, optimizer, writes: bool = True):
        self.out, self.model, self.optimizer, self.writes = out, model, optimizer, writes

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT

    @property
    def best(self) -> Path:
        return self.out / BEST

    def save(self, state: TrainingState) -> None:
        """The exact position (atomically): a resume from here continues bit-exactly."""
        if not self.writes:
            return
        save_checkpoint(self.checkpoint, self.model, state.to_header(), self.optimizer, state.arrays())
        write_text(self.out / METRICS, "".join(json.dumps(h) + "\n" for h in state.history))

    def save_best(self, state: TrainingState, record: dict) -> None:
        """The weights of the epoch `record` describes; written before checkpoint.npz, which names that epoch."""
        if self.writes:
            header = {"config": state.config.to_dict(), "epoch": record["epoch"], "metrics": record}
            header.update(data=state.data, classes=state.classes)  # evaluate finds the run's data
            save_checkpoint(self.best, self.model, header)

    def interrupted(self, state: TrainingState, signum: int, steps_per_epoch: int) -> None:
        """Save the position and raise TrainingInterrupted with the command that continues the run."""
        self.save(state)
        name = signal.Signals(signum).name
        where = f"{name} received in epoch {state.epoch + 1}, step {state.step_in_epoch}/{steps_per_epoch}"
        raise TrainingInterrupted(
            Options(
                lambda n: (
                    f"{where}: saved {self.checkpoint}; continue with: "
                    + (
                        f"gpunn train --resume {self.out}"
                        if n is flag_name
                        else f"train(resume={str(self.out)!r})"
                    )
                )
            ),
            signum,
        )
