"""An ElementwiseKernel call of gpunn's, launched on the executor as CuPy 14.2 would launch it.

cupy/_core/_kernel.pyx ElementwiseKernel.__call__: the loop shape is the broadcast of the non-raw arrays
(or size=, when every array is raw); a shape containing 0 launches nothing; all-C-contiguous non-raw arrays
are reduced to one dimension (_reduced_view_core; a non-contiguous 2-d operand keeps its shape, the
"short cut"; other non-contiguous shapes are kept too, where CuPy may merge axes); a CIndexer over the
shape is the last argument (_carray.Indexer: 32-bit when its size <= 2^31); each array's index_32_bits is
its allocation's size in bytes <= 2^31 (core.pyx _ndarray_base._init_fast; views inherit it); the launch is
Function.linear_launch(indexer.size, block_max_size=block_size) (limits.elementwise_geometry).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpu_proof import executor, limits, sources
from gpunn.backend.kernels import parse_params


@dataclass(frozen=True)
class Launch:
    """What CuPy would hand the driver for one call: the translation unit, the geometry, the arguments."""

    source: str
    grid: int
    block: int
    args: list


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
    then outputs, all given); None when CuPy launches nothing."""
    params = parse_params(kernel.in_params) + parse_params(kernel.out_params)
    if len(args) != len(params):
        raise TypeError(f"{kernel.name} takes {len(params)} arguments here, {len(args)} given")
    nonraw = [a for a, p in zip(args, params, strict=True) if isinstance(a, np.ndarray) and not p.raw]
    if size is not None:
        if nonraw:
            raise ValueError("Specified 'size' can be used only if all of the ndarray are 'raw'.")
        shape = (size,)
    else:
        if not nonraw:
            raise ValueError("Loop size is undecided.")
        shape = np.broadcast_shapes(*[a.shape for a in nonraw])
    n = int(np.prod(shape, dtype=object))
    geometry = limits.elementwise_geometry(n, block_size)
    if geometry is None:
        return None
    views = []
    for a, p in zip(args, params, strict=True):
        if isinstance(a, np.ndarray) and not p.raw:
            a = np.broadcast_to(a, shape)
        views.append(a)
    if len(shape) > 1 and all(
        v.flags.c_contiguous
        for v, p in zip(views, params, strict=True)
        if isinstance(v, np.ndarray) and not p.raw
    ):
        views = [
            v.reshape(-1) if isinstance(v, np.ndarray) and not p.raw else v
            for v, p in zip(views, params, strict=True)
        ]
        shape = (n,)
    arginfos = []
    type_map = {"T": dtype, **kernel.types}
    for v, p in zip(views, params, strict=True):
        if isinstance(v, np.ndarray):
            whole = memory.buffers[memory.locate(v)[0]].nbytes
            arginfos.append(
                sources.ArgInfo("ndarray", v.dtype.name, v.ndim, v.flags.c_contiguous, whole <= 2**31)
            )
        else:
            resolved = type_map.get(p.type_name, p.type_name)
            arginfos.append(sources.ArgInfo("scalar", resolved))
    arginfos.append(sources.ArgInfo("indexer", None, len(shape), True, n <= 2**31))
    grid, block = geometry
    return Launch(
        sources.kernel_source(kernel, type_map, arginfos),
        grid,
        block,
        [*views, executor.Indexer(tuple(shape))],
    )


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
