"""An ElementwiseKernel call of gpunn's, launched on the executor as CuPy 14.2 would launch it.

The translation unit is CuPy's own (cupy_codegen.py: its code generation run in a subprocess, results cached
for the process): each argument is described as a kernels.Call (an array's dtype, shape, strides and the
size of the allocation it views, from which CuPy takes its 32-bit indexing; a scalar's type as passed), and
CuPy answers with the source and the views it launches (its broadcast and _reduce_dims) and the loop shape
(the CIndexer); an empty loop launches nothing. The geometry is Function.linear_launch(indexer.size,
block_max_size=block_size) (limits.elementwise_geometry).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpu_proof import cupy_codegen, executor, limits
from gpunn.backend.kernels import Call


@dataclass(frozen=True)
class Launch:
    """What CuPy would hand the driver for one call: the translation unit, the geometry, the arguments."""

    source: str
    grid: int
    block: int
    args: list


def _scalar_kind(value) -> str:
    """A host scalar as kernels.Call names it: Python's bool/int/float by name, a NumPy scalar by dtype."""
    if isinstance(value, np.generic):
        return value.dtype.name
    for kind in (bool, int, float):  # bool first: a bool is an int
        if isinstance(value, kind):
            return kind.__name__
    raise TypeError(f"{type(value).__name__} is neither a device array nor a scalar CuPy passes by value")


def describe(args: list, *, memory: executor.DeviceMemory, size: int | None = None) -> Call:
    """The kernels.Call of device arrays/scalars `args`: each array (dtype, shape, strides, bytes of the
    DeviceMemory buffer it views)."""
    described = []
    for a in args:
        if isinstance(a, np.ndarray):
            allocation = memory.buffers[memory.locate(a)[0]].nbytes
            described.append((a.dtype.name, a.shape, a.strides, allocation))
        else:
            described.append(_scalar_kind(a))
    return Call(tuple(described), size)


def prepare(
    kernel,
    dtype: str,
    args: list,
    *,
    memory: executor.DeviceMemory,
    size: int | None = None,
    block_size: int = 128,
) -> Launch | None:
    """The launch of `kernel` (an ElementwiseSource) with T = dtype on device arrays/scalars `args` (inputs
    then outputs, all given); None when CuPy launches nothing. CuPy's refusals raise CupyRefused."""
    try:
        generated = cupy_codegen.generated_source(kernel, dtype, describe(args, memory=memory, size=size))
    except cupy_codegen.CupyLaunchesNothing:
        return None
    if len(generated.views) != len(args):
        raise TypeError(f"{kernel.name} takes {len(generated.views)} arguments here, {len(args)} given")
    views = [
        a if view is None else np.lib.stride_tricks.as_strided(a, *view)
        for a, view in zip(args, generated.views, strict=True)
    ]
    loop = generated.loop_shape
    grid, block = limits.elementwise_geometry(int(np.prod(loop, dtype=object)), block_size)
    return Launch(generated.source, grid, block, [*views, executor.Indexer(loop)])


def call(
    kernel,
    dtype: str,
    args: list,
    *,
    memory: executor.DeviceMemory,
    size: int | None = None,
    block_size: int = 128,
    edit=None,
    **launch_options,
) -> Launch | None:
    """prepare(), then executor.launch() of it; `edit` (text -> text) plants a bug in the translation unit."""
    launch = prepare(kernel, dtype, args, memory=memory, size=size, block_size=block_size)
    if launch is not None:
        text = launch.source if edit is None else edit(launch.source)
        if edit is not None and text == launch.source:
            raise ValueError(f"the edit changed nothing in {kernel.name}'s source")
        executor.launch(
            text, kernel.name, launch.grid, launch.block, launch.args, memory=memory, **launch_options
        )
    return launch
