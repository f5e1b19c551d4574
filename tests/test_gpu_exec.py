"""gpunn's CUDA kernels executed on the CPU with CUDA's execution model (tests/gpu_proof), and the GPU
bugs that model must catch, each planted as a text edit of a correct kernel (gpu_proof/planted.py).

Needs g++ and the unpacked CuPy 14.2 (.cupy-real at the repository root, or GPUNN_CUPY_REAL): its headers, and
its code generation for the translation units (gpu_proof/cupy_codegen.py, all generated up front in one
subprocess); skipped with the install command otherwise. Executables are cached outside the repository
(gpu_proof/toolchain.py).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from gpunn.backend.kernels import KERNELS

gpu_proof = pytest.importorskip("gpu_proof")
from gpu_proof import (  # noqa: E402
    cupy_codegen,
    elementwise,
    executor,
    gpunn_kernels,
    limits,
    planted,
    raw_kernels,
    run_all,
    sizes,
)
from gpu_proof.toolchain import ToolchainError, cupy_include  # noqa: E402

try:
    cupy_include()
    MISSING = None if shutil.which("g++") else "g++ is not installed (apt-get install g++)"
except ToolchainError as exc:
    MISSING = str(exc)
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))

TOTALS = "softmax_xent_totals"
ROWS, WIDTH = gpunn_kernels.ROWS, gpunn_kernels.WIDTH


@pytest.fixture(scope="module", autouse=True)
def cupy_sources():
    """CuPy's source of every launch below, generated in one subprocess (and the shipped calls', for
    comparing); skipped without the unpacked CuPy, failed in CI (GPUNN_REQUIRE_CUPY_CODEGEN=1)."""
    cupy_codegen.require_for_tests([*run_all.executor_calls(), *_ad_hoc_calls()])


def _zero_size_args(memory):
    return [memory.alloc((0, 3), np.float32), memory.alloc((0, 3), np.float32)]


def _huge_view_args(memory):
    """relu's input: the last 300 x 37 elements of a (sparse) float32 buffer of 2^31 + 44,400 bytes."""
    buffer = memory.alloc(2**29 + ROWS * WIDTH, np.float32)
    return [buffer[-ROWS * WIDTH :].reshape(ROWS, WIDTH), memory.alloc((ROWS, WIDTH), np.float32)]


def _transposed_args(memory):
    """relu's input: a transposed (not C-contiguous) 300 x 37 array."""
    return [memory.alloc((WIDTH, ROWS), np.float32).T, memory.alloc((ROWS, WIDTH), np.float32)]


def _relu_right_on(args_of) -> str:
    """relu launched on args_of(memory) filled with normal values, checked against NumPy; its source."""
    with executor.DeviceMemory() as memory:
        x, y = args_of(memory)
        host = np.random.default_rng(2).standard_normal(x.shape).astype(np.float32)
        x[...] = host
        launch = elementwise.call(KERNELS["relu"], "float32", [x, y], memory=memory)
        assert np.array_equal(y, np.maximum(host, 0))
        return launch.source


def _ad_hoc_calls():
    """The calls of the tests below that launch with arguments of their own."""
    calls = []
    for args_of in (_zero_size_args, _huge_view_args, _transposed_args):
        with executor.DeviceMemory() as memory:
            calls.append((KERNELS["relu"], "float32", elementwise.describe(args_of(memory), memory=memory)))
    return calls


def wrong(name, dtype="float32", **options):
    return gpunn_kernels.mismatches(gpunn_kernels.run(name, dtype, **options), dtype)


def fault(call) -> executor.KernelFault:
    with pytest.raises(executor.KernelFault) as caught:
        call()
    return caught.value


# ---- every kernel, as CUDA runs it, against base.py -----------------------------------------------------
@pytest.mark.parametrize("name", sorted(KERNELS))
def test_every_kernel_matches_the_generic_primitive(name):
    assert wrong(name) == []


@pytest.mark.parametrize("name", [TOTALS, "flat_adam", "gather_batch"])
def test_float64_kernels_match_too(name):
    assert wrong(name, "float64") == []


def test_each_kernel_runs_the_source_of_a_call_gpunn_makes():
    """Each launch above, described as CuPy sees it (dtypes, shapes, strides, allocations, scalar kinds),
    makes CuPy generate the very source of a call in the kernel's table, the calls CupyBackend makes
    (tests/test_cupy_codegen.py): the executor runs what gpunn runs and scripts/check_kernels.py compiles."""
    for kernel, dtype, call in gpunn_kernels.calls():
        ours = cupy_codegen.generated_source(kernel, dtype, call).source
        shipped = {cupy_codegen.generated_source(kernel, dtype, c).source for c in kernel.calls}
        assert ours in shipped, f"{kernel.name} ({dtype}): {call}"


def test_the_source_run_is_cupys_for_the_arguments_given():
    """Not a rendering of our own: a non-contiguous input gets CuPy's strided 2-d CArray (no reduction to
    one dimension) and runs right through its strides."""
    source = _relu_right_on(_transposed_args)
    assert "const CArray<float, 2, 0, 1> _raw_x, CArray<float, 2, 1, 1> _raw_y" in source


def test_a_wrong_kernel_is_a_mismatch():
    """The comparison itself can fail: relu clamping at 0.5 instead of 0."""
    edit = planted.replace("y = x > (T)0 ? x : (T)0", "y = x > (T)0.5 ? x : (T)0")
    assert wrong("relu", edit=edit) != []


# ---- launch geometry: CuPy's ---------------------------------------------------------------------------
def test_elementwise_geometry_is_linear_launch():
    """cupy/cuda/function.pyx linear_launch: grid = min(2^31 - 1, ceil(size / 128)), block = min(128, size)."""
    assert limits.elementwise_geometry(1000) == (8, 128)
    assert limits.elementwise_geometry(5) == (1, 5)
    assert limits.elementwise_geometry(2**40) == (2**31 - 1, 128)  # the grid-stride loop does the rest
    assert limits.elementwise_geometry(1000, block_size=256) == (4, 256)
    assert limits.elementwise_geometry(0) is None  # ElementwiseKernel.__call__ returns before launching
    with pytest.raises(ValueError, match="block_size must be greater than zero"):
        limits.elementwise_geometry(10, block_size=0)


def test_a_size_zero_call_launches_nothing(monkeypatch):
    monkeypatch.setattr(executor, "launch", lambda *a, **k: pytest.fail("launched"))
    with executor.DeviceMemory() as memory:
        assert elementwise.call(KERNELS["relu"], "float32", _zero_size_args(memory), memory=memory) is None


def test_the_grid_stride_loop_covers_what_a_small_grid_does_not():
    """CUPY_FOR strides by blockDim.x * gridDim.x: 2 blocks of 32 threads cover 300 x 37 = 11,100 elements."""
    with executor.DeviceMemory() as memory:
        host = np.random.default_rng(1).standard_normal((ROWS, WIDTH)).astype(np.float32)
        x, y = memory.put(host), memory.alloc((ROWS, WIDTH), np.float32)
        launch = elementwise.prepare(KERNELS["relu"], "float32", [x, y], memory=memory)
        executor.launch(launch.source, "gpunn_relu", 2, 32, launch.args, memory=memory)
        assert np.array_equal(y, np.maximum(host, 0))


def test_a_skipped_tail_is_caught():
    assert wrong("relu", edit=planted.SKIP_TAIL) != []  # 300 x 37 elements: the last block is partial


# ---- concurrency: blocks in a random order, threads at once -------------------------------------------------
def block_order(seed, mode="weak"):
    with executor.DeviceMemory() as memory:
        counter, ticket = memory.alloc(1, np.uint32), memory.alloc(16, np.uint32)
        executor.launch(
            raw_kernels.BLOCK_ORDER,
            "block_order",
            16,
            32,
            [counter, ticket],
            memory=memory,
            mode=mode,
            seed=seed,
        )
        return ticket.tolist()


def test_blocks_start_in_a_seeded_random_order():
    first, again, other = block_order(1), block_order(1), block_order(2)
    assert sorted(first) == list(range(16)) and first != list(range(16))
    assert first == again and first != other


@pytest.mark.parametrize("mode", ["weak", "tsan"])
def test_the_threads_of_a_block_run_at_once(mode):
    """Thread 0 spins until thread 1 raises its flag: a block run one thread after another never ends."""
    with executor.DeviceMemory() as memory:
        flag, out = memory.alloc(4, np.uint32), memory.alloc(4, np.uint32)
        executor.launch(
            raw_kernels.HANDSHAKE, "handshake", 4, 64, [flag, out], memory=memory, mode=mode, timeout=60
        )
        assert out.tolist() == [7, 7, 7, 7]


# ---- the totals ticket: fences (weak memory model) and atomics (ThreadSanitizer) ---------------------------
@pytest.mark.parametrize("seed", range(4))
def test_the_totals_ticket_is_right_on_every_schedule(seed):
    assert wrong(TOTALS, seed=seed) == []


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("fence", ["writer", "reader"])
def test_a_missing_fence_gives_wrong_totals(fence, seed):
    edit = planted.DROP_WRITER_FENCE if fence == "writer" else planted.DROP_READER_FENCE
    assert wrong(TOTALS, edit=edit, seed=seed) != []


def test_the_same_seed_gives_the_same_schedule():
    runs = [gpunn_kernels.run(TOTALS, edit=planted.DROP_READER_FENCE, seed=5) for _ in range(2)]
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(*runs, strict=True))


def test_the_totals_kernel_is_race_free_under_tsan():
    assert wrong(TOTALS, mode="tsan") == []


def test_a_deatomised_ticket_is_a_data_race():
    found = run_all.tsan_finds(
        lambda seed: wrong(TOTALS, mode="tsan", edit=planted.DEATOMISE_TICKET, seed=seed)
    )
    assert found == "data-race"


def test_a_ticket_reset_by_a_plain_store_is_a_data_race():
    """CUDA's atomicAdd is relaxed, and so is the TSan build's: the last thread's plain done[0] = 0 is
    ordered after no other thread's atomicAdd (the kernel resets it with atomicExch)."""
    found = run_all.tsan_finds(lambda seed: wrong(TOTALS, mode="tsan", edit=planted.PLAIN_RESET, seed=seed))
    assert found == "data-race"


def test_a_deatomised_ticket_loses_the_totals_on_the_weak_model():
    assert wrong(TOTALS, edit=planted.DEATOMISE_TICKET) != []


# ---- shared memory and barriers (gpunn ships none: raw_kernels.py) ------------------------------------------
@pytest.mark.parametrize("mode", ["weak", "tsan"])
def test_a_shared_memory_reduction_is_right(mode):
    got, want = run_all.block_sum(raw_kernels.BLOCK_SUM, mode=mode)
    assert got == want
    got, want = run_all.block_sum(
        raw_kernels.BLOCK_SUM_DYNAMIC, "block_sum_dynamic", mode=mode, shared_mem=512
    )
    assert got == want


def test_a_reduction_without_its_barrier_is_wrong_and_a_race():
    racy = planted.NO_SYNC_REDUCTION(raw_kernels.BLOCK_SUM)
    got, want = run_all.block_sum(racy)
    assert got != want
    assert run_all.tsan_finds(lambda seed: run_all.block_sum(racy, mode="tsan", seed=seed)) == "data-race"


@pytest.mark.parametrize("mode", ["weak", "tsan"])
def test_a_barrier_not_reached_by_every_thread_is_reported(mode):
    divergent = planted.DIVERGENT_BARRIER(raw_kernels.BLOCK_SUM)
    found = fault(lambda: run_all.block_sum(divergent, mode=mode))
    assert found.kind == "barrier-divergence" and "not reached by every thread" in found.report


def test_shared_memory_past_its_end_is_an_invalid_address():
    found = fault(lambda: run_all.block_sum(raw_kernels.BLOCK_SUM, grid=1, block=512))  # partial[256]
    assert found.kind == "invalid-address" and "shared memory offset" in found.report


# ---- AddressSanitizer + UndefinedBehaviorSanitizer ------------------------------------------------------------
@pytest.mark.parametrize("name", [TOTALS, "gather_batch", "relu_backward_bias"])
def test_kernels_are_clean_under_asan_and_ubsan(name):
    assert wrong(name, mode="asan") == []


@pytest.mark.parametrize("mode", ["asan", "weak"])
def test_a_write_past_the_end_is_caught(mode):
    found = fault(lambda: wrong(TOTALS, mode=mode, edit=planted.PAST_THE_END))
    assert found.kind == "invalid-address"


# ---- real sizes: index math past 2^31 elements --------------------------------------------------------------
@pytest.mark.parametrize("name", sizes.KERNEL_NAMES)
def test_index_math_is_right_past_2_31_elements(name):
    assert sizes.run(name) == []


@pytest.mark.parametrize("name", sizes.ROW_CASES)
def test_a_gather_of_more_than_2_31_rows_and_images_is_right(name):
    """One-pixel images: the row of each element (i / width) and the image it reads (rows[r]) pass 2^31, so
    a row or an image number held in 32 bits reads outside the buffers."""
    assert sizes.run(name) == []


@pytest.mark.parametrize("name", sizes.KERNEL_NAMES)
def test_32_bit_index_math_is_caught_past_2_31(name):
    found = fault(lambda: sizes.run(name, edit=sizes.planted(name)))
    assert found.kind == "invalid-address" and "bytes before buffer" in found.report


def test_a_view_of_a_buffer_past_2_gib_is_indexed_with_64_bits():
    """CuPy takes an array's 32-bit indexing from its allocation and every view inherits it (core.pyx
    _ndarray_base._init, _view): 11,100 elements at the end of a buffer past 2 GiB are a CArray<..., 0>, the
    small output a CArray<..., 1>; the kernel runs right on them."""
    source = _relu_right_on(_huge_view_args)
    assert "const CArray<float, 1, 1, 0> _raw_x, CArray<float, 1, 1, 1> _raw_y" in source


def test_the_arrays_past_2_gib_of_the_size_cases_get_64_bit_indexing():
    """Each array of sizes.py's launches: CArray<..., 0> exactly when its buffer is past 2^31 bytes, and the
    loop's CIndexer<..., 0> exactly past 2^31 elements (cupy/_core/_carray.pyx Indexer)."""
    flags = set()
    for kernel, dtype, call in sizes.calls():
        generated = cupy_codegen.generated_source(kernel, dtype, call)
        params = executor.kernel_params(generated.source, kernel.name)
        for arg, ctype in zip(call.args, params, strict=False):
            if not isinstance(arg, str):
                flags.add(arg[3] <= 2**31)
                assert ctype.endswith(f", {int(arg[3] <= 2**31)}>"), (kernel.name, arg, ctype)
        loop = int(np.prod(generated.loop_shape, dtype=object))
        assert params[-1] == f"CIndexer<{len(generated.loop_shape)}, {int(loop <= 2**31)}>"
    assert flags == {True, False}


def test_32_bit_offset_overflow_is_undefined_behaviour_under_ubsan():
    found = fault(lambda: sizes.run("gather_images", edit=sizes.planted("gather_images"), mode="asan"))
    assert found.kind == "undefined-behavior" and "signed integer overflow" in found.report


# ---- launch limits ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("grid", "block", "shared", "named"),
    [
        ((1,), (1025,), 0, "block.x = 1025 exceeds the limit of 1024"),
        ((1,), (32, 33), 0, "block of 1056 threads exceeds the limit of 1024 threads per block"),
        ((1,), (1, 1, 65), 0, "block.z = 65 exceeds the limit of 64"),
        ((1, 65536), (1,), 0, "grid.y = 65536 exceeds the limit of 65535"),
        ((2**31,), (1,), 0, "grid.x = 2147483648 exceeds the limit of 2147483647"),
        ((0,), (1,), 0, "grid.x = 0: every dimension must be at least 1"),
        ((1,), (1,), 48 * 1024 + 4, "49156 bytes of shared memory per block exceed the limit of 49152"),
    ],
)
def test_launch_limits_are_the_hardwares(grid, block, shared, named):
    assert named in str(_refusal(grid, block, shared))


def _refusal(grid, block, shared) -> limits.LaunchError:
    try:
        limits.check_launch(grid, block, dynamic_shared=shared)
    except limits.LaunchError as exc:
        return exc
    pytest.fail(f"grid {grid} block {block} shared {shared} accepted")


def test_launches_at_the_limits_run():
    limits.check_launch((2**31 - 1, 65535, 65535), (1024, 1, 1), dynamic_shared=48 * 1024)
    limits.check_launch(1, (1, 1024, 1), static_shared=48 * 1024)
    limits.check_launch(1, 1, dynamic_shared=232448, opt_in_shared=232448)  # 227 KiB on an H100
    dynamic = raw_kernels.BLOCK_SUM_DYNAMIC
    assert run_all.block_sum(dynamic, "block_sum_dynamic", grid=1, block=1024, shared_mem=4096) == (
        2997.0,
        2997.0,
    )
    got = run_all.block_sum(dynamic, "block_sum_dynamic", shared_mem=65536, opt_in_shared=65536)
    assert got == (2997.0, 2997.0)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (
            lambda: run_all.block_sum(
                raw_kernels.BLOCK_SUM_DYNAMIC, "block_sum_dynamic", block=2048, shared_mem=8192
            ),
            "block.x = 2048 exceeds the limit of 1024",
        ),
        (lambda: run_all.static_shared_launch(49 * 1024), "static __shared__ data exceed the limit of 49152"),
        (
            lambda: run_all.block_sum(raw_kernels.BLOCK_SUM_DYNAMIC, "block_sum_dynamic", shared_mem=65536),
            "48 KiB without an opt-in",
        ),
        (
            lambda: run_all.block_sum(
                raw_kernels.BLOCK_SUM_DYNAMIC, "block_sum_dynamic", shared_mem=65536, opt_in_shared=240000
            ),
            "opt-in of 240000 bytes exceeds",
        ),
    ],
)
def test_the_executor_refuses_an_oversize_launch_before_running_it(call, named):
    with pytest.raises(limits.LaunchError, match=named):
        call()


# ---- argument packing ---------------------------------------------------------------------------------------
def test_parameters_are_read_from_the_kernels_signature():
    source = 'extern "C" __global__ void k(const CArray<float, 2, 1, 0> _raw_x, const long long n, CIndexer<1, 1> _ind) {}'
    assert executor.kernel_params(source, "k") == [
        "const CArray<float, 2, 1, 0>",
        "const long long",
        "CIndexer<1, 1>",
    ]


def test_an_argument_of_the_wrong_shape_is_refused():
    with executor.DeviceMemory() as memory:
        x, y = memory.alloc((ROWS, WIDTH), np.float32), memory.alloc((ROWS, WIDTH), np.float32)
        launch = elementwise.prepare(KERNELS["relu"], "float32", [x, y], memory=memory)  # 1-d views
        with pytest.raises(TypeError, match="needs a 1-d device array"):
            executor.launch(launch.source, "gpunn_relu", 1, 16, [x, y, launch.args[2]], memory=memory)


# ---- the entry point for scripts/check_gpu.py -----------------------------------------------------------------
def test_check_all_reports_each_part_and_can_stop_at_the_first_failure(monkeypatch):
    def broken():
        raise AssertionError("a planted bug passed\nsecond line")

    monkeypatch.setattr(run_all, "PARTS", {"a": lambda: "fine", "b": broken, "c": lambda: "fine"})
    results = run_all.check_all(("a", "b", "c"))
    assert [(part, ok) for part, ok, _ in results] == [("a", True), ("b", False), ("c", True)]
    assert results[1][2].startswith("AssertionError: a planted bug passed (")
    assert [part for part, _, _ in run_all.check_all(("a", "b", "c"), stop_at_first_failure=True)] == [
        "a",
        "b",
    ]
    assert run_all.main([]) == 1
