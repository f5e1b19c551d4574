"""The per-epoch metrics record: one a line in a run's metrics.jsonl, and the list a run checkpoint's
'history' holds. One reader checks both, so a hand-edited file is one line naming the file, the line (or
record) and the field, never a KeyError in whatever reads it later (plot, sweep, resume, the summary).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from gpunn.errors import GpunnError

METRICS = "metrics.jsonl"
_FRACTION, _NONNEGATIVE = (0.0, 1.0), (0.0, math.inf)
FIELDS = {  # every record has these (gpunn train has written all of them since its first version)
    "loss": _NONNEGATIVE,
    "train_accuracy": _FRACTION,
    "test_accuracy": _FRACTION,
    "lr": _NONNEGATIVE,
    "seconds": _NONNEGATIVE,
    "samples_per_second": _NONNEGATIVE,
}
VALIDATION_FIELDS = {"val_loss": _NONNEGATIVE, "val_accuracy": _FRACTION}  # both, with a validation split


def check_record(record, epoch: int) -> dict:
    """`record` if it is the metrics of epoch `epoch`; else ValueError saying which field is wrong."""
    if not isinstance(record, dict):
        raise ValueError(f"expected an object of one epoch's metrics, got {_shown(record)}")
    if record.get("epoch") != epoch or isinstance(record.get("epoch"), bool):
        raise ValueError(
            f"'epoch' must be {epoch} (the records count the epochs from 1), got {_shown(record.get('epoch'))}"
        )
    fields = dict(FIELDS)
    if any(key in record for key in VALIDATION_FIELDS):
        fields.update(VALIDATION_FIELDS)
    for key, (low, high) in fields.items():
        if key not in record:
            raise ValueError(f"{key!r} is missing")
        value = record[key]
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high
        if not ok:
            interval = "a number >= 0" if high == math.inf else f"a number in [{low:g}, {high:g}]"
            raise ValueError(f"{key!r} must be {interval}, got {_shown(value)}")
    return record


def check_history(records) -> list[dict]:
    """A run's history: the records of epochs 1, 2, ... in order."""
    if not isinstance(records, list):
        raise ValueError("not a list of per-epoch records")
    for epoch, record in enumerate(records, start=1):
        try:
            check_record(record, epoch)
        except ValueError as exc:
            raise ValueError(f"record {epoch}: {exc}") from None
    return records


def read_metrics(run: Path) -> list[dict]:
    """The checked records of run/metrics.jsonl; anything wrong is one GpunnError naming file, line, field."""
    path = Path(run) / METRICS
    if not path.is_file():
        raise GpunnError(f"{run}: no {METRICS} (is it a gpunn train --out folder?)")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise GpunnError(
            f"{path}: not UTF-8 text ({exc}); gpunn train writes one JSON object a line"
        ) from None
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(check_record(json.loads(line), len(records) + 1))
        except ValueError as exc:  # json's own errors are ValueErrors too
            raise GpunnError(
                f"{path}, line {number}: {exc}; the file is damaged (gpunn train writes one JSON object of an "
                "epoch's metrics a line)"
            ) from None
    if not records:
        raise GpunnError(f"{path}: holds no epochs (its run has not finished one yet)")
    return records


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
