"""The GPU bugs the CPU proof must catch, each a text edit of a correct kernel's translation unit.

Every edit checks that it changed something, so a kernel rewritten under it fails loudly instead of
silently testing the unchanged source.
"""

from __future__ import annotations


def replace(old: str, new: str, nth: int = 0):
    """An edit replacing the nth occurrence of `old` with `new`."""

    def edit(text: str) -> str:
        parts = text.split(old)
        if len(parts) <= nth + 1:
            raise ValueError(f"planted bug: {old!r} occurs {len(parts) - 1} time(s), no occurrence {nth}")
        return old.join(parts[: nth + 1]) + new + old.join(parts[nth + 1 :])

    return edit


# softmax_xent_totals: the rows' values published without a fence before the ticket / read without one after
DROP_WRITER_FENCE = replace("__threadfence();", "", 0)
DROP_READER_FENCE = replace("__threadfence();", "", 1)
# softmax_xent_totals: the ticket read and bumped as a plain increment (a data race; no thread may see it last)
DEATOMISE_TICKET = replace("atomicAdd(&done[0], 1u)", "done[0]++")
# softmax_xent_totals: the ticket reset by a plain store (other threads' relaxed atomicAdds order nothing)
PLAIN_RESET = replace("atomicExch(&done[0], 0u);", "done[0] = 0;")
# softmax_xent_totals: each column sum written one element further on (the last one past the end)
PAST_THE_END = replace("column_sums[k] = column;", "column_sums[k + 1] = column;")
# any ElementwiseKernel: the grid-stride loop stops at the last whole block (the tail is skipped)
SKIP_TAIL = replace("CUPY_FOR(i, _ind.size())", "CUPY_FOR(i, _ind.size() / blockDim.x * blockDim.x)")
# raw_kernels.BLOCK_SUM: the tree reduction without its barrier (threads read partial sums not yet written)
NO_SYNC_REDUCTION = replace("        __syncthreads();\n    }", "    }")
# raw_kernels.BLOCK_SUM: the barrier inside the branch only some threads take
DIVERGENT_BARRIER = replace(
    "        if (t < s) partial[t] += partial[t + s];\n        __syncthreads();",
    "        if (t < s) { partial[t] += partial[t + s]; __syncthreads(); }",
)
