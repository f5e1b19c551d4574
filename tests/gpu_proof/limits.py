"""The launch limits the hardware enforces, and the geometry CuPy chooses for an ElementwiseKernel.

Limits: CUDA C++ Programming Guide, "Technical Specifications per Compute Capability" (compute capability
9.0, H100): at most 1024 threads per block, block dimensions at most (1024, 1024, 64), grid dimensions at
most (2^31 - 1, 65535, 65535), 48 KiB of shared memory per block unless the kernel opts in
(cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize); CuPy: RawKernel
max_dynamic_shared_size_bytes) to at most 227 KiB (232448 bytes), and static __shared__ data at most 48 KiB
in any case. A dimension of 0 is CUDA_ERROR_INVALID_VALUE from cuLaunchKernel.
"""

from __future__ import annotations

MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK = (1024, 1024, 64)
MAX_GRID = (2**31 - 1, 65535, 65535)
SHARED_PER_BLOCK = 48 * 1024
SHARED_PER_BLOCK_OPT_IN = 232448  # 227 KiB on compute capability 9.0
STATIC_SHARED_PER_BLOCK = 48 * 1024


class LaunchError(ValueError):
    """A launch the hardware refuses; the message names the limit."""


def dims(value) -> tuple[int, int, int]:
    value = (value,) if isinstance(value, int) else tuple(value)
    if not 1 <= len(value) <= 3:
        raise LaunchError(f"a grid or block has 1 to 3 dimensions, not {len(value)}")
    return tuple(int(v) for v in value) + (1,) * (3 - len(value))


def check_launch(
    grid, block, static_shared: int = 0, dynamic_shared: int = 0, opt_in_shared: int = 0
) -> None:
    """Raise LaunchError as cuLaunchKernel would fail for this launch (on an H100)."""
    grid, block = dims(grid), dims(block)
    for what, value, limit in (("grid", grid, MAX_GRID), ("block", block, MAX_BLOCK)):
        for axis, n, most in zip("xyz", value, limit, strict=True):
            if n < 1:
                raise LaunchError(
                    f"{what}.{axis} = {n}: every dimension must be at least 1 (CUDA_ERROR_INVALID_VALUE)"
                )
            if n > most:
                raise LaunchError(
                    f"{what}.{axis} = {n} exceeds the limit of {most} (CUDA_ERROR_INVALID_VALUE)"
                )
    threads = block[0] * block[1] * block[2]
    if threads > MAX_THREADS_PER_BLOCK:
        raise LaunchError(
            f"block of {threads} threads exceeds the limit of {MAX_THREADS_PER_BLOCK} threads per block "
            "(CUDA_ERROR_INVALID_VALUE)"
        )
    if static_shared > STATIC_SHARED_PER_BLOCK:
        raise LaunchError(
            f"{static_shared} bytes of static __shared__ data exceed the limit of {STATIC_SHARED_PER_BLOCK} "
            "bytes per block (ptxas: too much shared data)"
        )
    if opt_in_shared > SHARED_PER_BLOCK_OPT_IN:
        raise LaunchError(
            f"opt-in of {opt_in_shared} bytes exceeds the device's {SHARED_PER_BLOCK_OPT_IN} bytes"
        )
    allowed = max(SHARED_PER_BLOCK, opt_in_shared)
    if static_shared + dynamic_shared > allowed:
        raise LaunchError(
            f"{static_shared + dynamic_shared} bytes of shared memory per block exceed the limit of {allowed} "
            "bytes (48 KiB without an opt-in, 227 KiB with one; CUDA_ERROR_INVALID_VALUE)"
        )


def elementwise_geometry(size: int, block_size: int = 128) -> tuple[int, int] | None:
    """(grid.x, block.x) of an ElementwiseKernel call over `size` elements; None for no launch.

    cupy/_core/_kernel.pyx ElementwiseKernel.__call__ returns before launching when the shape contains a 0
    (`if _contains_zero(shape): return ret`); otherwise cupy/cuda/function.pyx Function.linear_launch:
    gridx = min(0x7fffffff, ceil(size / block_max_size)), blockx = min(block_max_size, size), and the
    kernel's CUPY_FOR (cupy/carray.cuh) strides by blockDim.x * gridDim.x over the rest."""
    if block_size <= 0:
        raise ValueError("block_size must be greater than zero")  # ElementwiseKernel.__call__
    if size == 0:
        return None
    return min(0x7FFFFFFF, (size + block_size - 1) // block_size), min(block_size, size)
