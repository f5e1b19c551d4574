"""The executor's part of the CPU-side GPU proof, one line per part: `python -m gpu_proof.run_all`
(tests/ on sys.path; exit 1 on any failure) or check_all() -> [(part, ok, line)].

- executor: every kernel of gpunn/backend/kernels.py against base.py's primitive (weak memory model,
  fibers); the totals ticket right, and wrong without either of its fences;
- tsan: the kernels that share memory between threads race-free (atomics relaxed, as CUDA's); a de-atomised
  ticket, a ticket reset by a plain store and a shared reduction without its barrier reported as data races;
- asan+ubsan: every kernel clean; a write past the end and 32-bit index overflow reported;
- sizes: every kernel whose index mixes a row and a width right past 2^31 elements, its 32-bit version caught;
- limits: each hardware launch limit refused, naming it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # python tests/gpu_proof/run_all.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_proof import cupy_codegen, executor, gpunn_kernels, limits, planted, raw_kernels, sizes  # noqa: E402
from gpunn.backend.kernels import KERNELS  # noqa: E402

TOTALS = "softmax_xent_totals"


def _wrong(name: str, **options) -> list[str]:
    return gpunn_kernels.mismatches(gpunn_kernels.run(name, **options), options.get("dtype", "float32"))


def _fault(call) -> str | None:
    """The fault kind call() raised, or None when it ran."""
    try:
        call()
    except executor.KernelFault as fault:
        return fault.kind
    return None


def tsan_finds(launch, tries: int = 5) -> str | None:
    """The fault kind of the first of `tries` launches (seeds 0, 1, ...) that raised one, else None.

    ThreadSanitizer keeps the last 4 accesses of each 8 bytes: where many threads touch neighbouring words
    one launch can miss a race that the next one reports (an unsynchronised reduction: about 1 in 6). A race
    found costs one launch, so the tries only add up when none is."""
    for seed in range(tries):
        if kind := _fault(lambda seed=seed: launch(seed)):
            return kind
    return None


def block_sum(
    source: str,
    name: str = "block_sum",
    *,
    mode: str = "weak",
    seed: int = 0,
    grid: int = 4,
    block: int = 128,
    shared_mem: int = 0,
    opt_in_shared: int = 0,
    n: int = 1000,
) -> tuple[float, float]:
    """(what raw_kernels.BLOCK_SUM-like `source` summed, the true sum) over n small integers."""
    with executor.DeviceMemory() as memory:
        values = np.arange(n, dtype=np.float32) % 7
        x, out = memory.put(values), memory.alloc(grid, np.float32)
        executor.launch(
            source,
            name,
            grid,
            block,
            [x, out, np.int64(n)],
            memory=memory,
            mode=mode,
            seed=seed,
            shared_mem=shared_mem,
            opt_in_shared=opt_in_shared,
        )
        return float(out.sum()), float(values.sum())


def part_executor() -> str:
    wrong = {name: _wrong(name) for name in KERNELS}
    bad = [f"{name}: {lines[0]}" for name, lines in wrong.items() if lines]
    for seed in range(3):
        bad += [f"{TOTALS} seed {seed}: {line}" for line in _wrong(TOTALS, seed=seed)]
        for what, edit in (("writer", planted.DROP_WRITER_FENCE), ("reader", planted.DROP_READER_FENCE)):
            if not _wrong(TOTALS, edit=edit, seed=seed):
                bad.append(f"{TOTALS} without its {what} fence gave right results (seed {seed})")
    if bad:
        raise AssertionError("; ".join(bad))
    return f"{len(KERNELS)} kernels match base.py; the totals ticket is caught without either fence (3 seeds)"


def part_tsan() -> str:
    bad = [
        f"{name}: {kind}"
        for name in (TOTALS, "gather_batch", "relu_backward_bias")
        if (kind := _fault(lambda name=name: _wrong(name, mode="tsan")))
    ]
    if _fault(lambda: block_sum(raw_kernels.BLOCK_SUM, mode="tsan")):
        bad.append("block_sum is reported")
    if (
        tsan_finds(lambda seed: _wrong(TOTALS, mode="tsan", edit=planted.DEATOMISE_TICKET, seed=seed))
        != "data-race"
    ):
        bad.append("a de-atomised ticket is not reported as a data race")
    if (
        tsan_finds(lambda seed: _wrong(TOTALS, mode="tsan", edit=planted.PLAIN_RESET, seed=seed))
        != "data-race"
    ):
        bad.append("a ticket reset by a plain store is not reported as a data race")
    racy = planted.NO_SYNC_REDUCTION(raw_kernels.BLOCK_SUM)
    if tsan_finds(lambda seed: block_sum(racy, mode="tsan", seed=seed)) != "data-race":
        bad.append("a reduction without __syncthreads is not reported as a data race")
    if bad:
        raise AssertionError("; ".join(bad))
    return (
        "race-free; a de-atomised ticket, a plain reset of it and an unsynchronised shared reduction are "
        "data races"
    )


def part_asan() -> str:
    bad = [
        f"{name}: {kind}" for name in KERNELS if (kind := _fault(lambda name=name: _wrong(name, mode="asan")))
    ]
    if _fault(lambda: _wrong(TOTALS, mode="asan", edit=planted.PAST_THE_END)) != "invalid-address":
        bad.append("a write past the end is not reported")
    gather = sizes.planted("gather_images")
    if _fault(lambda: sizes.run("gather_images", edit=gather, mode="asan")) != "undefined-behavior":
        bad.append("int overflow of a 32-bit image offset is not reported")
    if bad:
        raise AssertionError("; ".join(bad))
    return f"{len(KERNELS)} kernels clean; a write past the end and a 32-bit offset overflow are reported"


def part_sizes() -> str:
    bad = []
    for name in sizes.KERNEL_NAMES:
        bad += [f"{name}: {line}" for line in sizes.run(name)]
        if _fault(lambda name=name: sizes.run(name, edit=sizes.planted(name))) is None:
            bad.append(f"{name} with 32-bit index math passed")
    if bad:
        raise AssertionError("; ".join(bad))
    return f"{len(sizes.KERNEL_NAMES)} row x width kernels right past 2^31 elements, their 32-bit versions caught"


OVER_LIMIT = (  # (grid, block, dynamic shared bytes) the hardware refuses, one limit each
    ((1,), (1025,), 0),
    ((1,), (1, 1, 65), 0),
    ((1, 65536), (1,), 0),
    ((2**31,), (1,), 0),
    ((0,), (1,), 0),
    ((1,), (1,), 48 * 1024 + 4),
)


def static_shared_launch(nbytes: int) -> None:
    with executor.DeviceMemory() as memory:
        out = memory.alloc(32, np.float32)
        executor.launch(raw_kernels.static_shared(nbytes), "big_shared", 1, 32, [out], memory=memory)


def part_limits() -> str:
    accepted = []
    for grid, block, shared in OVER_LIMIT:
        try:
            limits.check_launch(grid, block, dynamic_shared=shared)
            accepted.append(f"grid {grid} block {block} shared {shared}")
        except limits.LaunchError:
            pass
    dynamic = raw_kernels.BLOCK_SUM_DYNAMIC
    refused_before_running = {
        "a 2048-thread block": lambda: block_sum(
            dynamic, "block_sum_dynamic", grid=1, block=2048, shared_mem=8192
        ),
        "49 KiB of static shared memory": lambda: static_shared_launch(49 * 1024),
        "64 KiB of dynamic shared memory without an opt-in": lambda: block_sum(
            dynamic, "block_sum_dynamic", shared_mem=65536
        ),
    }
    for what, call in refused_before_running.items():
        try:
            call()
            accepted.append(what)
        except limits.LaunchError:
            pass
    within = [
        block_sum(dynamic, "block_sum_dynamic", grid=1, block=1024, shared_mem=4096),
        block_sum(dynamic, "block_sum_dynamic", shared_mem=65536, opt_in_shared=65536),
    ]
    if accepted or any(got != want for got, want in within):
        raise AssertionError(f"accepted: {accepted}; within the limits: {within}")
    return f"{len(OVER_LIMIT) + len(refused_before_running)} over-limit launches refused; launches at the limits run"


PARTS = {
    "executor": part_executor,
    "tsan": part_tsan,
    "asan+ubsan": part_asan,
    "sizes": part_sizes,
    "limits": part_limits,
}


def executor_calls() -> list:
    """(kernel, dtype, kernels.Call) of every ElementwiseKernel launch the parts make."""
    return [*gpunn_kernels.calls(), *sizes.calls()]


def generate_sources() -> None:
    """The CuPy source of every launch of the parts, generated in one subprocess (cupy_codegen caches them
    for the process; elementwise.prepare asks for generated_source's default architecture, sm_80)."""
    cupy_codegen.generate([(kernel, dtype, call, "sm_80") for kernel, dtype, call in executor_calls()])


def check_all(parts=tuple(PARTS), stop_at_first_failure: bool = False) -> list[tuple[str, bool, str]]:
    results = []
    try:
        generate_sources()
    except Exception:  # noqa: BLE001 (nothing is cached then: each part's first launch reports it as its line)
        pass
    for part in parts:
        start = time.monotonic()
        try:
            line, ok = PARTS[part](), True
        except Exception as exc:  # a part's failure is its line, whatever it raised
            line, ok = f"{type(exc).__name__}: {exc}".splitlines()[0][:500], False
        results.append((part, ok, f"{line} ({time.monotonic() - start:.0f} s)"))
        if stop_at_first_failure and not ok:
            break
    return results


def main(argv=None) -> int:
    results = check_all(stop_at_first_failure="-x" in (argv or sys.argv[1:]))
    for part, ok, line in results:
        print(f"{'ok  ' if ok else 'FAIL'} {part}: {line}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
