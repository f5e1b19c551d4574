"""`--tensorboard DIR` and `--mlflow [URI]`: the flags and the loggers they ask for, for every command that
trains (train, sweep, tune): one place, so the commands cannot disagree.

`tracking_from_args(args)` checks the extras and opens the MLflow store before any run folder is made;
`Tracking.callbacks(group)` makes the loggers of one run (picklable: a sweep's worker process gets them).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from gpunn.tracking.mlflow_logger import DEFAULT_STORE

EXPERIMENT = "gpunn"  # the MLflow experiment every command logs into; a sweep or study is a tag:
GROUP_TAG = "gpunn.group"


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tensorboard",
        metavar="DIR",
        help="write each epoch's metrics as TensorBoard events into DIR/<run folder name>, a sweep's into "
        "DIR/<sweep folder name>/<run folder name> (gpunn[tensorboard])",
    )
    parser.add_argument(
        "--mlflow",
        nargs="?",
        const=DEFAULT_STORE,
        metavar="URI",
        help=f"log settings, metrics per epoch and the checkpoint to an MLflow store (gpunn[mlflow]): a "
        f"folder (default ./{DEFAULT_STORE}: an SQLite store in it), sqlite:///FILE or a tracking server URL",
    )


@dataclass(frozen=True)
class Tracking:
    """The loggers a command was asked for: the TensorBoard folder and the MLflow store (each None: off)."""

    tensorboard: Path | None = None
    mlflow: str | None = None

    def callbacks(self, group: str | None = None, tags: dict | None = None) -> list:
        """Fresh loggers for one run. `group` (a sweep's or a study's name) puts its TensorBoard events in
        DIR/<group>/<run folder name> and tags its MLflow run (named as its folder) gpunn.group=<group>;
        `tags` are added to the MLflow run."""
        from gpunn.tracking import MLflowLogger, TensorBoardLogger

        loggers = []
        if self.tensorboard is not None:
            loggers.append(TensorBoardLogger(parent=self.tensorboard / group if group else self.tensorboard))
        if self.mlflow is not None:
            tags = {**({GROUP_TAG: group} if group else {}), **(tags or {})}
            loggers.append(MLflowLogger(self.mlflow, EXPERIMENT, tags=tags))
        return loggers

    def flags(self) -> list[str]:
        """The command-line words that ask for the same logging (a sweep's --index command)."""
        words = []
        if self.tensorboard is not None:
            words += ["--tensorboard", str(self.tensorboard)]
        if self.mlflow is not None:
            words += ["--mlflow", self.mlflow]
        return words


def tracking_from_args(args: argparse.Namespace) -> Tracking:
    """The logging asked for on the command line; a missing extra or an unusable MLflow store is one
    TrackingError now, before any run folder is made."""
    tracking = Tracking(
        Path(args.tensorboard) if getattr(args, "tensorboard", None) else None,
        getattr(args, "mlflow", None),
    )
    if not getattr(args, "distributed", False):  # under MPI rank 0 alone logs, and opens the store then
        for logger in tracking.callbacks():
            if hasattr(logger, "prepare"):
                logger.prepare()  # the store made and its experiment created once, not by racing workers
    return tracking


def tracking_callbacks(args: argparse.Namespace, group: str | None = None, tags: dict | None = None) -> list:
    """The loggers one run of a command gets from its flags (see Tracking.callbacks)."""
    return tracking_from_args(args).callbacks(group, tags)
