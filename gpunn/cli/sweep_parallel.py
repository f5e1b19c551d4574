"""`gpunn sweep --jobs K`: combinations in K worker processes, the CPU's BLAS threads split between them.

Each worker limits BLAS to cores // K threads (threadpoolctl) so K runs do not oversubscribe the cores.
A run's result does not depend on where it ran: the same settings train the same weights.

Every worker is a `python -m gpunn.cli.sweep_worker` process in a process group of its own, started only
while the sweep goes on. SIGINT or SIGTERM to the sweep (alone, or to its whole process group) starts no
further combination, passes SIGTERM to the running ones (each saves where it stands and exits), waits for
them at most GRACE_SECONDS (a second signal: not at all), then SIGKILLs what is left: no process outlives
the sweep. A worker that dies (SIGKILL, the OOM killer) is a failed row, like a run that diverges.
"""

from __future__ import annotations

import os
import pickle
import selectors
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from gpunn.errors import GpunnError
from gpunn.training.loop import SignalCatcher
from gpunn.training.store import CHECKPOINT

GRACE_SECONDS = 30.0  # a signalled run saves within a batch; one still starting up dies at once
REAP_SECONDS = 10.0  # how long a worker that sent its outcome (or was SIGKILLed) may take to exit


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class _StopSignals(SignalCatcher):
    """SIGINT/SIGTERM as a flag, a count and a byte on a socket the sweep waits on (so a wait ends at once)."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.wakeup, self._wake = socket.socketpair()
        self.wakeup.setblocking(False)
        self._wake.setblocking(False)

    def _catch(self, signum, frame):
        self.signum = self.signum or signum  # the first one names the stop
        self.count += 1
        try:
            self._wake.send(b"\0")
        except BlockingIOError:  # the sweep has not read the earlier wake-ups yet: it will wake anyway
            pass

    def drain(self) -> None:
        try:
            while self.wakeup.recv(4096):
                pass
        except BlockingIOError:
            pass

    def __exit__(self, *exc):
        super().__exit__(*exc)
        self.wakeup.close()
        self._wake.close()


_OWN_PROCESS_GROUP = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}


class _Worker:
    """One combination's process: the job written to its stdin, its outcome read from its stdout."""

    def __init__(self, run, common: dict, threads: int):
        from gpunn.cli.sweep_worker import encode_job

        self.run, self.received = run, bytearray()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gpunn.cli.sweep_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            **_OWN_PROCESS_GROUP,
        )
        try:
            self.process.stdin.write(encode_job(run, common, threads))  # far below a pipe's buffer
            self.process.stdin.flush()
        except BrokenPipeError:  # it died at once: its exit status tells
            pass

    def fileno(self) -> int:
        return self.process.stdout.fileno()

    def read(self) -> bool:
        """Take what the worker wrote; True at the end of its output (it is exiting)."""
        chunk = os.read(self.fileno(), 65536)
        self.received += chunk
        return not chunk

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            try:
                self.process.send_signal(signum)
            except ProcessLookupError:
                pass

    def finish(self) -> tuple | None:
        """Reap the process (SIGKILL if it lingers); its outcome, or None when it sent none."""
        try:
            self.process.wait(REAP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(REAP_SECONDS)
        while not self.read():  # what it wrote before it exited and was not read yet
            pass
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except BrokenPipeError:
                pass
        try:
            return pickle.loads(self.received) if self.received else None
        except (pickle.UnpicklingError, EOFError, ValueError):  # cut short by its death
            return None

    @property
    def death(self) -> str:
        code = self.process.returncode
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            oom = " (the signal the OOM killer sends when memory runs out)" if -code == signal.SIGKILL else ""
            return f"its process was killed by {name}{oom}"
        return f"its process exited with status {code} without a result"


def how_to_go_on(run) -> str:
    """The command that continues a combination cut short (its checkpoint) or redoes it (none yet)."""
    if (Path(run.out) / CHECKPOINT).exists():
        return f"continue with: gpunn train --resume {shlex.quote(str(run.out))}"
    return f"redo it with: {run.redo}"


def _row(run, worker: _Worker | None, outcome: tuple | None, stopping: bool = False):
    """The table row of a combination from its worker's outcome (None: not started, or no outcome);
    `stopping`: the sweep was told to stop, so a worker that ended without an outcome was interrupted."""
    from gpunn.cli.sweep import not_started_row, unfinished_row

    def stopped(status: str, why: str):
        return unfinished_row(run, status, why)

    if worker is None:
        return not_started_row(run)
    kind = outcome[0] if outcome else None
    if kind == "row":
        return outcome[1]
    if kind == "interrupted":
        return stopped("interrupted", outcome[1])
    if kind == "error":
        return stopped("failed", outcome[1])
    if kind == "crash":
        return stopped("failed", f"{outcome[1]} (traceback above); {how_to_go_on(run)}")
    if stopping:
        return stopped("interrupted", f"stopped; {how_to_go_on(run)}")
    return stopped("failed", f"{worker.death}; {how_to_go_on(run)}")


def _line(row, done: int, total: int, run) -> str:
    if row.failure is None:
        outcome = f"test {row.test_accuracy:.2%} in {row.seconds:.2f} s"
    else:
        outcome = f"{row.status}: {row.failure}"
    return f"[{run.number}/{run.total}] {run.label}: {outcome} ({done}/{total} done)"


def run_parallel(runs: list, jobs: int, common: dict) -> tuple[list, int | GpunnError | None]:
    """(rows in combination order, what stopped the sweep early: a signal's number, an error, or None);
    a line as each run ends.

    A run that diverges, stalls or whose worker dies is a failed row and the others go on; a signal stops
    the sweep, and so does any other error of a run (a missing dataset would fail them all alike).
    """
    jobs = min(jobs, len(runs))
    threads = max(1, cores() // jobs)
    print(f"{len(runs)} combinations in {jobs} processes, {threads} BLAS thread(s) each", flush=True)
    rows, queue, running = {}, list(runs), []
    stop: int | GpunnError | None = None
    selector = selectors.DefaultSelector()

    def end(worker: _Worker) -> None:
        nonlocal stop
        selector.unregister(worker)
        running.remove(worker)
        outcome = worker.finish()
        stopping = signals.signum is not None or stop is not None
        rows[worker.run.number] = row = _row(worker.run, worker, outcome, stopping)
        print(_line(row, len(rows), len(runs), worker.run), flush=True)
        if outcome and outcome[0] == "error" and stop is None:
            stop = GpunnError(outcome[1])
            stop.exit_code = outcome[2]

    def going_on() -> bool:
        return signals.signum is None and stop is None

    def wait(timeout: float | None) -> None:
        for key, _ in selector.select(timeout):
            if key.fileobj is signals.wakeup:
                signals.drain()
            elif key.fileobj.read():
                end(key.fileobj)

    with _StopSignals() as signals:
        selector.register(signals.wakeup, selectors.EVENT_READ)
        try:
            while (queue or running) and going_on():
                while queue and len(running) < jobs and going_on():  # nothing starts after a signal
                    worker = _Worker(queue.pop(0), common, threads)
                    running.append(worker)
                    selector.register(worker, selectors.EVENT_READ)
                wait(None)  # until a worker ends or a signal arrives: each worker's end closes its pipe
            if running:  # stopped: every running combination saves and exits, within the grace period
                for worker in running:
                    worker.signal(signal.SIGTERM)
                deadline, signals_seen = time.monotonic() + GRACE_SECONDS, signals.count
                while running and signals.count == signals_seen and time.monotonic() < deadline:
                    wait(max(0.0, deadline - time.monotonic()))
        finally:  # whatever happened (a second signal, the grace period over, an error here): none is left
            for worker in running:
                worker.signal(signal.SIGKILL)
            for worker in list(running):
                end(worker)
            selector.close()
        if signals.signum is not None:
            stop = signals.signum
    for run in queue:
        rows[run.number] = _row(run, None, None)
    return [rows[run.number] for run in runs], stop
