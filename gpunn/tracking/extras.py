"""The optional packages the loggers need: a missing one is one line naming the extra that brings it."""

from __future__ import annotations

import importlib

from gpunn.errors import TrackingError


def need(module: str, extra: str, what: str):
    """Import `module` (the package `extra` installs), or raise TrackingError with the pip command."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TrackingError(f'{what} needs the {extra} package: pip install "gpunn[{extra}]"') from None


def earlier_epochs(run) -> list[dict]:
    """The records of the epochs a resumed run trained before (`run` is the callbacks' TrainRun), for a
    logger that saw none of them; [] for a new run."""
    if not run.epochs_done:
        return []
    from gpunn.training.metrics import read_metrics

    return read_metrics(run.out_dir)[: run.epochs_done]


def scalars(record: dict) -> dict[str, float]:
    """An epoch's metrics as the loggers write them: every number of the record but the epoch itself."""
    return {k: float(v) for k, v in record.items() if k != "epoch"}
