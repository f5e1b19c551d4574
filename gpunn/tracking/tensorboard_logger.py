"""TensorBoardLogger: each epoch's metrics as TensorBoard scalars (step = the epoch), in event files that
`tensorboard --logdir` and TensorBoard's own EventAccumulator read.

The events are framed by TensorBoard's RecordWriter (the TFRecord format with its checksums, the writer
under PyTorch's SummaryWriter too); the file is opened, appended to and closed at each epoch, so no writer
thread and no open file outlive an epoch, and a run that fails or is interrupted leaves a complete file. A
resumed run writes a new file in the same folder, its steps going on from the epoch it resumes at.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from gpunn.tracking.extras import TrackingError, earlier_epochs, need, scalars

EXTRA = "tensorboard"
EVENTS = "*tfevents*"  # what TensorBoard reads as an event file


def _protos():
    need("tensorboard", EXTRA, "TensorBoard logging")
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    return event_pb2, summary_pb2, RecordWriter


class TensorBoardLogger:
    """Write the run's metrics into `log_dir`, or into `parent/<run folder name>` (one TensorBoard run per
    gpunn run under one `--logdir`). A new run refuses a folder that already holds events (an earlier run
    of the same name?): two runs' curves would be drawn as one."""

    def __init__(self, log_dir: str | Path | None = None, *, parent: str | Path | None = None):
        if (log_dir is None) == (parent is None):
            raise TrackingError("TensorBoardLogger takes either log_dir= or parent=, not both or neither")
        _protos()  # the missing extra is said now, before any run starts
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.parent = None if parent is None else Path(parent)
        self.events = None  # this run's event file, made at its first epoch

    def on_train_begin(self, run) -> None:
        if self.parent is not None:
            self.log_dir = self.parent / Path(run.out_dir).name
        logged = self.log_dir.is_dir() and any(self.log_dir.glob(EVENTS))
        if logged and not run.epochs_done:
            raise TrackingError(
                f"{self.log_dir} already holds TensorBoard events of another run: remove them, or log this "
                "run into another folder"
            )
        self.events = None
        if not logged:  # a resumed run logged for the first time: its earlier epochs first
            self._write(earlier_epochs(run))

    def on_epoch_end(self, record: dict) -> None:
        self._write([record])

    def _write(self, records: list[dict]) -> None:
        if not records:
            return
        event_pb2, summary_pb2, RecordWriter = _protos()
        events, new = [], self.events is None
        if new:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            stamp = f"{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
            self.events = self.log_dir / f"events.out.tfevents.{stamp}.{records[0]['epoch']}.gpunn"
            events.append(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
        for record in records:
            values = [summary_pb2.Summary.Value(tag=k, simple_value=v) for k, v in scalars(record).items()]
            event = event_pb2.Event(wall_time=time.time(), step=record["epoch"])
            event.summary.value.extend(values)
            events.append(event)
        with open(self.events, "xb" if new else "ab") as file:  # "xb": never a file it did not make
            writer = RecordWriter(file)
            for event in events:
                writer.write(event.SerializeToString())
            writer.flush()
