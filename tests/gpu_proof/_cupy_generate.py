"""Run inside real CuPy 14.2 (never the test process): the translation unit and NVRTC options CuPy itself
produces for ElementwiseKernel calls, read from JSON requests on stdin, answered as JSON on stdout.

No GPU is needed and none is touched: arrays are real cupy.ndarrays over unowned memory that is never
read, and the compile is stopped where CuPy hands its source and options to NVRTC.

ElementwiseKernel.__call__ (cupy/_core/_kernel.pyx, v14.2.0) cannot run without a device: its first step
is device.get_device_id(). So `_arginfos` takes its steps one by one, each through the CuPy function that
step calls where Python can reach it (cupy.broadcast for _broadcast's internal._broadcast_core,
ElementwiseKernel._decide_params_type, CScalar and CScalar.apply_dtype, ndarray.reduced_view, view and
_set_shape_and_strides for _reduce_dims' _view, ndarray._c_contiguous/_index_32_bits for
_ArgInfo.from_ndarray); only the control flow between them is restated here, with its line in __call__.
From the arginfos on, CuPy does everything: _get_elementwise_kernel (the code, then compile_with_cache,
the CuPy headers, assemble_cupy_compiler_options, _compile_with_cache_cuda, _compile_using_nvrtc_no_warning).
"""

from __future__ import annotations

import json
import os
import sys

os.environ["CUPY_CACHE_IN_MEMORY"] = "1"  # cupy/cuda/compiler.py: no kernel cache on disk, always "compile"

try:
    import cupy
    import numpy
    from cupy._core import _carray, _kernel, _scalar
    from cupy.cuda import compiler, memory
except ImportError as exc:  # e.g. a NumPy older than CuPy 14.2 needs (2.0)
    print(json.dumps({"fatal": f"the unpacked CuPy does not import with {sys.executable}: {exc}"}))
    sys.exit(0)

# cupy/_core/_kernel.pxd _ArgKind
ARG_KIND_NDARRAY, ARG_KIND_INDEXER, ARG_KIND_SCALAR = 1, 2, 3
_SCALAR_VALUES = {"int": 1, "float": 1.0, "bool": True}  # Python scalars; NumPy scalars below


class _Handed(Exception):
    """Raised where CuPy hands a program to NVRTC: carries the source and the options."""

    def __init__(self, source, options):
        super().__init__()
        self.source, self.options = source, tuple(options)


class _CapturingProgram:
    """Stands in for cupy/cuda/compiler.py _NVRTCProgram: keeps what CuPy would give nvrtcCreateProgram and
    nvrtcCompileProgram."""

    def __init__(self, src, name="default_program", headers=(), include_names=(), **kwargs):
        if headers or include_names:
            raise AssertionError("CuPy passed NVRTC headers by name; the capture does not carry them")
        self.src = src

    def compile(self, options=(), log_stream=None):
        raise _Handed(self.src, options)


def _device_array(dtype, shape, strides=None, allocation=None):
    """A cupy.ndarray over unowned memory that is never read. With `allocation` (bytes), a view of a
    contiguous allocation that size: CuPy then decides its 32-bit indexing from the allocation, as for any
    view (core.pyx _ndarray_base._init: the allocation's bytes <= 2**31; _view copies _index_32_bits)."""
    dtype = numpy.dtype(dtype)
    extent = max(1, int(numpy.prod(shape)) * dtype.itemsize)
    if strides is not None and shape:
        extent = max(
            extent, sum((n - 1) * abs(s) for n, s in zip(shape, strides, strict=True)) + dtype.itemsize
        )
    if allocation is None:
        unowned = memory.UnownedMemory(1 << 40, extent, None, device_id=0)
        return cupy.ndarray(tuple(shape), dtype, memptr=memory.MemoryPointer(unowned, 0), strides=strides)
    if extent > max(allocation, 1):
        raise ValueError(f"an array spanning {extent} bytes does not fit in its allocation of {allocation}")
    # whole elements of any dtype, on the same side of 2**31 (a multiple of 16)
    rounded = max(16, -(-allocation // 16) * 16)
    unowned = memory.UnownedMemory(1 << 40, rounded, None, device_id=0)
    whole = cupy.ndarray((rounded,), numpy.uint8, memptr=memory.MemoryPointer(unowned, 0))
    view = whole.view(dtype)
    if strides is None:
        strides = tuple(int(numpy.prod(shape[k + 1 :])) * dtype.itemsize for k in range(len(shape)))
    view._set_shape_and_strides(tuple(shape), tuple(strides), True, True)
    return view


def _argument(arg):
    """_preprocess_arg: an array stays an array, anything else becomes CScalar(arg)."""
    if isinstance(arg, str):
        value = _SCALAR_VALUES[arg] if arg in _SCALAR_VALUES else numpy.dtype(arg).type(1)
        return _scalar.CScalar(value)
    dtype, shape, strides, allocation = arg
    return _device_array(dtype, shape, strides, allocation)


def _reduce_dims(args, params, shape):
    """_reduce_dims and _reduced_view_core (_kernel.pyx), on the kernel's in+out arguments."""
    if len(shape) <= 1 or not args:
        return shape
    if len(args) == 1:
        a = args[0]
        if params[0].raw or not isinstance(a, cupy.ndarray):
            return shape
        view = a.reduced_view()
        if view is a:
            return shape
        args[0] = view
        return view.shape
    ndim = len(shape)
    array_indexes, strides_indexes = [], []
    for i, a in enumerate(args):
        if params[i].raw or not isinstance(a, cupy.ndarray):
            continue
        array_indexes.append(i)
        if not a._c_contiguous:
            if ndim == 2:
                return shape
            strides_indexes.append(i)
    if not array_indexes:
        return shape
    if not strides_indexes:
        total = args[array_indexes[0]].size
        for i in array_indexes:
            args[i] = _view(args[i], (total,), (args[i].dtype.itemsize,))
        return (total,)
    vecshape, axes, last_ax = list(shape), [], -1
    for ax in range(ndim):
        if vecshape[ax] == 1:
            continue
        if last_ax < 0:
            last_ax = ax
            continue
        for i in strides_indexes:
            if args[i].strides[ax] * vecshape[ax] != args[i].strides[last_ax]:
                axes.append(last_ax)
                break
        else:
            vecshape[ax] *= vecshape[last_ax]
        last_ax = ax
    if last_ax >= 0:
        axes.append(last_ax)
    if len(axes) == ndim:
        return shape
    newshape = tuple(vecshape[ax] for ax in axes)
    for i in array_indexes:
        args[i] = _view(args[i], newshape, tuple(args[i].strides[ax] for ax in axes))
    return newshape


def _view(a, shape, strides):
    """core.pyx _view(type(a), shape, strides, False, True, a): a view keeping a's contiguity and 32-bit
    flags, then _set_shape_and_strides updating the F flag only."""
    v = a.view()
    v._set_shape_and_strides(shape, strides, False, True)
    return v


def _arginfos(kernel, args, size):
    """ElementwiseKernel.__call__ from _preprocess_args to _get_arginfos: (arginfos, type_map, the arguments
    as the kernel gets them, the loop shape); None where CuPy launches nothing."""
    if len(args) not in (kernel.nin, kernel.nargs):
        raise TypeError(
            f"Wrong number of arguments for {kernel.name!r}. It must be either {kernel.nin} or "
            f"{kernel.nargs} (with outputs), but given {len(args)}."
        )
    arg_list = [_argument(a) for a in args]
    out_args = arg_list[kernel.nin :]
    # _broadcast: the non-raw arrays, in and out, broadcast together; raw arrays and scalars as they came
    nonraw = [i for i, a in enumerate(arg_list) if not kernel.params[i].raw and isinstance(a, cupy.ndarray)]
    if size is not None and nonraw:
        raise ValueError("Specified 'size' can be used only if all of the ndarray are 'raw'.")
    if size is None and not nonraw:
        raise ValueError("Loop size is undecided.")
    broadcast = list(arg_list)
    shape = ()
    if nonraw:
        together = cupy.broadcast(*[arg_list[i] for i in nonraw])
        shape = together.shape
        for i, value in zip(nonraw, together.values, strict=True):
            broadcast[i] = value
    in_args = broadcast[: kernel.nin]
    in_types, out_types, type_map = kernel._decide_params_type(
        tuple(a.dtype if isinstance(a, cupy.ndarray) else None for a in in_args),
        tuple(a.dtype for a in out_args),
    )
    if size is not None:
        shape = (size,)
    # _get_out_args_with_params
    if not out_args:
        if size is None and any(p.raw for p in kernel.out_params):
            raise ValueError("Output array size is Undecided")
        out_args = [_device_array(t, shape, None) for t in out_types]
    else:
        for p, a in zip(kernel.out_params, out_args, strict=True):
            if not isinstance(a, cupy.ndarray):
                raise TypeError("Output arguments type must be cupy.ndarray")
            if not p.raw and a.shape != shape:
                raise ValueError("Out shape is mismatched")
    if 0 in shape:  # _contains_zero(shape): return before any kernel
        return None
    for i, a in enumerate(in_args):
        if isinstance(a, _scalar.CScalar):
            a.apply_dtype(in_types[i])
    inout = in_args + out_args
    if kernel.reduce_dims:
        shape = _reduce_dims(inout, kernel.params, shape)
    infos = []
    for a in inout:
        if isinstance(a, cupy.ndarray):  # _ArgInfo.from_ndarray
            infos.append(
                _kernel._ArgInfo(
                    ARG_KIND_NDARRAY, type(a), a.dtype, a.ndim, a._c_contiguous, a._index_32_bits
                )
            )
        else:  # _ArgInfo.from_scalar
            infos.append(_kernel._ArgInfo(ARG_KIND_SCALAR, _scalar.CScalar, a.descr, 0, True, True))
    # _carray._indexer_init(shape); Indexer.init: 32-bit when size <= 2**31; _ArgInfo.from_indexer
    indexer_size = int(numpy.prod(shape))
    infos.append(
        _kernel._ArgInfo(ARG_KIND_INDEXER, _carray.Indexer, None, len(shape), True, indexer_size <= 1 << 31)
    )
    return tuple(infos), type_map, inout, tuple(shape)


def _handed(kernel, arginfos, type_map, arch):
    """What ElementwiseKernel._get_elementwise_kernel hands NVRTC for a device of compute capability `arch`."""
    compiler._get_arch = lambda: arch  # _compile_with_cache_cuda asks the device for it
    # its for_each_device memo asks the device which one is current; the function itself decides sm_/compute_
    compiler._get_arch_for_options_for_nvrtc = _ARCH_OPTION
    try:
        _kernel._get_elementwise_kernel.__wrapped__(
            arginfos, type_map, kernel.params, kernel.operation, kernel.name, kernel.preamble, **kernel.kwargs
        )
    except _Handed as handed:
        return handed
    raise AssertionError("CuPy compiled without handing a program to NVRTC")


def _generate(request):
    kernel = cupy.ElementwiseKernel(*request["kernel"])
    decided = _arginfos(kernel, request["args"], request["size"])
    if decided is None:
        return {"error": "CuPy launches no kernel for this call: its loop is empty", "empty": True}
    arginfos, type_map, inout, loop = decided
    code = _kernel._get_elementwise_kernel_code(
        arginfos, type_map, kernel.params, kernel.operation, kernel.name, kernel.preamble, **kernel.kwargs
    )
    options = {}
    source = None
    for arch in request["archs"]:
        handed = _handed(kernel, arginfos, type_map, arch)
        if source is not None and handed.source != source:
            raise AssertionError("CuPy generated different sources for two architectures")
        source, options[arch] = handed.source, list(handed.options)
    if not source.endswith(code):
        raise AssertionError("the source CuPy hands NVRTC does not end with its generated kernel code")
    views = [[list(a.shape), list(a.strides)] if isinstance(a, cupy.ndarray) else None for a in inout]
    return {
        "source": source,
        "header": source[: len(source) - len(code)],
        "options": options,
        "views": views,
        "loop": list(loop),
    }


def _answer(request):
    try:
        return _generate(request)
    except Exception as exc:  # CuPy's own refusals (type mismatch, argument count...) are the answer
        return {"error": f"{type(exc).__name__}: {exc}"}


_ARCH_OPTION = compiler._get_arch_for_options_for_nvrtc.__wrapped__
compiler._NVRTCProgram = _CapturingProgram
compiler._preprocess = lambda *args, **kwargs: ""  # only feeds the cache key: an empty program's PTX comments


def main() -> int:
    if cupy.__version__ != sys.argv[1]:
        print(json.dumps({"fatal": f"CuPy {cupy.__version__} unpacked where {sys.argv[1]} is pinned"}))
        return 0
    requests = json.load(sys.stdin)
    print(json.dumps({"cupy": cupy.__file__, "answers": [_answer(r) for r in requests]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
