"""The loop's view of the ranks of a run: totals, shards and the stop protocol; one process is one rank.

A signal reaches one rank only. In one process the loop stops at the next batch; across ranks the stop
request rides in the gradient Allreduce, so every rank sees it at the same step and stops there together.
"""

from __future__ import annotations

STOP_CHECK_EVERY = 32  # where device reads are a sync (a GPU), ranks read the shared stop flag every 32 steps


class Ranks:
    """`dist` is a gpunn.training.distributed.Distributed, or None for a run in one process."""

    def __init__(self, dist=None):
        self.dist = dist

    @property
    def is_root(self) -> bool:
        """Whether this rank writes the run's files (every rank holds the same weights)."""
        return self.dist is None or self.dist.is_root

    @property
    def stops_locally(self) -> bool:
        """One process acts on its own signal at once; ranks agree on the stop through the gradient sum."""
        return self.dist is None

    def total(self, *values) -> list:
        """Totals over all ranks of small host numbers (the values themselves in one process)."""
        return self.dist.sum_host(values).tolist() if self.dist is not None else list(values)

    def rows(self, n: int) -> slice:
        """This rank's contiguous share of n rows (all of them in one process)."""
        return slice(*self.dist.shard(n)) if self.dist is not None else slice(None)

    def share_of_batch(self, rows):
        """(this rank's part of a batch's rows, the index of its first row in the batch)."""
        if self.dist is None:
            return rows, 0
        start, stop = self.dist.shard(rows.shape[0])
        return rows[start:stop], start

    def gradient_hook(
        self, global_rows: int, rows: int, stop_requested: bool, step: int, reads_are_cheap: bool
    ):
        """The hook that sums a step's gradient over ranks and carries the stop request (None in one process).

        Each shard's gradient is a mean over its rows: it is weighted by its share of the global batch.
        """
        if self.dist is None:
            return None
        dist = self.dist
        read_flag = reads_are_cheap or step % STOP_CHECK_EVERY == 0
        share = rows / global_rows

        def hook(buffer):
            return dist.sum_gradients(buffer, share, stop_requested, read_flag)

        return hook
