"""A CuPy stand-in for CPU-only test runs (GPUNN_CUDA_STANDIN=1): the CuPy API gpunn and its tests use,
on virtual devices whose memory is host memory, enforcing the rules real CuPy enforces so code that
breaks them fails here as it would on a GPU. Never imported by gpunn itself: tests/conftest.py puts
tests/cuda_standin on the path only when the variable is set and CUDA is unusable.

Rules and where CuPy has them (github.com/cupy/cupy, v14.2.0):
- an array lives on the device that was current when it was made (cupy/_core/core.pyx ndarray.__init__
  allocates with memory.alloc on the current device); `a.device` is that device; `a.data.ptr` is the
  address of its first element (here the host address of the buffer standing in for device memory).
- a kernel runs on the current device; an operand on another device raises ValueError "The device where
  the array resides (i) is different from the current device (j). Peer access is unavailable between these
  devices." unless the devices have peer access, which is then enabled with a PerformanceWarning
  (cupy/_core/_kernel.pyx _check_peer_access, used by _preprocess_args for ufuncs and ElementwiseKernel, by
  cupy/_core/_reduction.pyx line 608 for reductions and by _routines_manipulation.pyx line 879 for
  concatenate). The virtual devices have no peer access unless GPUNN_STANDIN_PEER_ACCESS=1 (_state).
- asarray/array/copy of an array of another device copy it to the current device (core.pyx
  _array_from_cupy_ndarray, ndarray.copy).
- implicit conversion to NumPy raises TypeError (cupy/_core/core.pyx ndarray.__array__);
  a NumPy array, 0-d included, as a ufunc operand or kernel scalar: TypeError "Unsupported type"
  (cupy/_core/_scalar.pyx CScalar.__init__ line 344); comparisons take a 0-d one as its Python scalar.
- float(a), int(a), bool(a), repr(a), a.item(), a.get(), asnumpy(a) copy device-to-host and wait for
  the device (core.pyx __float__/__int__/__nonzero__/__repr__ all call self.get()); so do the CuPy routines
  that read a value back to decide something (boolean-mask indexing, nanmax/nanmin).
- an int/slice index is a view (no kernel); reductions and ufuncs write out= and return it.
- a launch returns before it runs: it is queued on the current stream and runs when something waits
  (a read-back, a synchronize, an event, a full queue), in stream order, with CUDA's ordering between
  streams (cupy._state, "asynchronous streams").
"""

from __future__ import annotations

import builtins as _builtins

import numpy as _np

from cupy import _state, cuda
from cupy._kernels import ElementwiseKernel, RawKernel, ReductionKernel
from cupy._state import counters

__version__ = "14.0.0+gpunn-standin"
STANDIN = True

__all__ = ["ElementwiseKernel", "RawKernel", "ReductionKernel", "counters", "cuda"]

# dtypes and constants are NumPy's (CuPy re-exports them: cupy/__init__.py `from numpy import float32...`)
for _name in (
    "bool_ dtype finfo iinfo float16 float32 float64 int8 int16 int32 int64 uint8 uint16 uint32 uint64 "
    "inf nan pi newaxis can_cast result_type"
).split():
    globals()[_name] = getattr(_np, _name)


class _MemoryPointer:
    """cupy.cuda.MemoryPointer of an array: `ptr` is the address of the array's first element (a view's
    pointer is its base's plus the offset, cupy/_core/_routines_indexing.pyx _view_getitem `a.data + offset`);
    here it is the host address of the buffer playing the device memory, so code that reads device memory
    outside CuPy (a CUDA-aware MPI, NCCL) reads what a GPU would show it."""

    def __init__(self, array):
        self.mem = array._memory
        self.ptr = array._data.ctypes.data if array.size else 0
        self.device_id = array._memory.device_id

    @property
    def device(self):
        return cuda.Device(self.device_id)


class ndarray:
    """A device array: `_data` is the host buffer standing in for device memory, `_memory` its allocation
    (shared by views)."""

    __slots__ = ("_data", "_memory", "__weakref__")

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("the stand-in does not wrap raw device memory")
        data = _np.empty(shape, dtype=dtype, order=order)
        self._data = data
        self._memory = _state.Memory(_state.get_device_id(), data.nbytes)

    @classmethod
    def _view(cls, data: _np.ndarray, memory) -> ndarray:
        array = object.__new__(cls)
        array._data, array._memory = data, memory
        return array

    @classmethod
    def _new(cls, data: _np.ndarray) -> ndarray:
        """A fresh allocation on the current device, and a copy of `data` (as it is now) into it queued on
        the current stream (the caller counts it)."""
        snapshot = _np.array(data, copy=True, order="C")
        made = cls(snapshot.shape, dtype=snapshot.dtype)
        target = made._data
        _state.launch(lambda: _np.copyto(target, snapshot))
        return made

    # ---- attributes ----------------------------------------------------------------------------------
    shape = property(lambda self: self._data.shape)
    ndim = property(lambda self: self._data.ndim)
    size = property(lambda self: self._data.size)
    dtype = property(lambda self: self._data.dtype)
    itemsize = property(lambda self: self._data.itemsize)
    nbytes = property(lambda self: self._data.nbytes)
    strides = property(lambda self: self._data.strides)
    flags = property(lambda self: self._data.flags)
    data = property(lambda self: _MemoryPointer(self))
    device = property(lambda self: cuda.Device(self._memory.device_id))
    T = property(lambda self: self.transpose())

    def __len__(self):
        return len(self._data)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self)))

    def __dlpack_device__(self):
        # cupy/_core/core.pyx ndarray.__dlpack_device__ (dlpack.get_dlpack_device): (kDLCUDA = 2, device id)
        # for memory from CuPy's pool; kDLCUDAManaged (13) is for managed memory, which gpunn never allocates
        return (2, self._memory.device_id)

    @property
    def __cuda_array_interface__(self):
        """cupy/_core/core.pyx ndarray.__cuda_array_interface__ (version 3): shape, typestr, strides (None when
        C-contiguous), data = (pointer, read-only False) and the current stream's pointer."""
        from cupy.cuda import get_current_stream

        stream = get_current_stream().ptr or 1  # CAI v3 forbids 0: the legacy default stream is 1
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "descr": [("", self.dtype.str)],
            "stream": stream,
            "version": 3,
            "strides": None if self.flags.c_contiguous else self.strides,
            "data": (self.data.ptr, False),
        }

    # ---- leaving the device -------------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        # cupy/_core/core.pyx ndarray.__array__
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. "
            "Please use `.get()` to construct a NumPy array explicitly."
        )

    def get(self, stream=None, order="C", out=None, blocking=True):
        """Device-to-host copy on the current stream, which it waits for (core.pyx ndarray.get: a copy
        queued on the stream, then stream.synchronize()): what that stream has queued runs first."""
        counters.d2h_reads += 1
        _state.wait_for_current_stream(self._memory.device_id)
        data = _np.array(self._data, order=order, copy=True)
        if out is not None:
            out[...] = data
            return out
        return data

    def item(self):
        return self.get().item()

    def tolist(self):
        return self.get().tolist()

    def __float__(self):
        return float(self.get())

    def __int__(self):
        return int(self.get())

    def __complex__(self):
        return complex(self.get())

    def __bool__(self):
        if self.size != 1:
            raise ValueError(
                "The truth value of an array with more than one element is ambiguous. Use a.any() or a.all()"
            )
        return bool(self.get())

    def __repr__(self):
        return repr(self.get())

    def __str__(self):
        return str(self.get())

    # ---- views, copies, conversions ------------------------------------------------------------------
    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _call(_np.reshape, self, shape, order=order)

    def transpose(self, *axes):
        return _call(_np.transpose, self, axes or None)

    def ravel(self, order="C"):
        return _call(_np.ravel, self, order=order)

    def flatten(self):
        return _call(lambda a: a.flatten(), self)

    def squeeze(self, axis=None):
        return _call(_np.squeeze, self, axis=axis)

    def copy(self, order="C"):
        """cupy/_core/core.pyx ndarray.copy: a copy on the *current* device, from any device (a device-to-
        device copy, which needs no peer access: cudaMemcpyPeer)."""
        if self._memory.device_id == _state.get_device_id():
            return _call(lambda a: a.copy(order=order), self)
        made = ndarray(self.shape, dtype=self.dtype)
        source, target = self._data, made._data
        _queued(lambda: _np.copyto(target, source))  # on this device's stream: it reads what is there then
        return made

    def astype(self, dtype, order="K", casting=None, subok=None, copy=True):
        if not copy and _np.dtype(dtype) == self.dtype:
            return self
        return _call(lambda a: a.astype(dtype, order=order, copy=True), self)

    def fill(self, value):
        _launch_into(self, lambda a: _np.full_like(a, value))

    def __getitem__(self, key):
        """cupy/_core/_routines_indexing.pyx _ndarray_getitem: ints, slices, None and Ellipsis make a view
        (_view_getitem, no kernel; x[i] of a 1-d array is a 0-d view); an integer array is a take kernel; a
        boolean mask is a scan, a read-back of its count (`n_true = int(mask_scanned[-1])`, line 802, a
        synchronisation) and a gather kernel."""
        key = _index(key)
        keys = key if isinstance(key, tuple) else (key,)
        if _builtins.all(_is_basic(k) for k in keys):
            view = self._data[keys if _builtins.any(k is Ellipsis for k in keys) else (*keys, Ellipsis)]
            return ndarray._view(view, self._memory)
        if _builtins.any(isinstance(k, ndarray) and k.dtype == _np.bool_ for k in keys):
            _check_device(self)
            _read_back_inside_cupy()  # the scan's last element, the count
            counters.launches += 2  # the scan, then the masked gather (_getitem_mask_single)
            return ndarray._new(self._data[_unwrap(key)])
        return _call(lambda a, k: a[k], self, key)

    def __setitem__(self, key, value):
        key = _index(key)
        _check_device(self)
        keys = key if isinstance(key, tuple) else (key,)
        if _builtins.any(isinstance(k, ndarray) and k.dtype == _np.bool_ for k in keys):
            # _scatter_op_mask_single -> _prepare_mask_indexing_single reads the mask's count back (line 802)
            counters.launches += 1
            _read_back_inside_cupy()
        host = _operand(value)

        def assign(a):
            out = a.copy()
            out[_unwrap(key)] = host
            return out

        _launch_into(self, assign)

    # reductions and friends as methods; out= is written and returned (cupy/_core/_routines_math.pyx
    # _ndarray_sum -> _sum_auto_dtype(self, axis, dtype, out, keepdims); _routines_statistics.pyx _ndarray_max)
    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return _call(_np.sum, self, axis=axis, dtype=dtype, out=out, keepdims=keepdims)

    def max(self, axis=None, out=None, keepdims=False):
        return _call(_np.max, self, axis=axis, out=out, keepdims=keepdims)

    def min(self, axis=None, out=None, keepdims=False):
        return _call(_np.min, self, axis=axis, out=out, keepdims=keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return _call(_np.mean, self, axis=axis, dtype=dtype, out=out, keepdims=keepdims)

    def argmax(self, axis=None):
        return _call(_np.argmax, self, axis=axis)

    def any(self, axis=None, keepdims=False):
        return _call(_np.any, self, axis=axis, keepdims=keepdims)

    def all(self, axis=None, keepdims=False):
        return _call(_np.all, self, axis=axis, keepdims=keepdims)

    # ---- arithmetic: each operator is one kernel on the current device ------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        """NumPy ufuncs on device arrays run as CuPy ufuncs (cupy/_core/core.pyx ndarray.__array_ufunc__):
        out=(array,) is unpacked and written; a NumPy array operand reaches the ufunc and is refused there
        (CScalar: TypeError "Unsupported type"), except that a 0-d one becomes a Python scalar for the
        comparisons (the numpy/numpy#12142 workaround)."""
        if method != "__call__":
            return NotImplemented
        if "out" in kwargs:
            out = kwargs["out"]
            if len(out) != 1:
                raise ValueError("The 'out' parameter must have exactly one array value")
            kwargs["out"] = out[0]
        if ufunc.__name__ in _COMPARISONS:
            inputs = tuple(_scalar_if_0d(x) for x in inputs)
        return _call(ufunc, *inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        mine = globals().get(func.__name__)
        if mine is None or not callable(mine):
            return NotImplemented
        return mine(*args, **kwargs)


def _binary(ufunc):
    def forward(self, other):
        return _call(ufunc, self, other)

    def reverse(self, other):
        return _call(ufunc, other, self)

    def inplace(self, other):
        _launch_into(self, lambda a, b: ufunc(a, b), other)
        return self

    return forward, reverse, inplace


for _name, _ufunc in {
    "add": _np.add,
    "sub": _np.subtract,
    "mul": _np.multiply,
    "truediv": _np.true_divide,
    "floordiv": _np.floor_divide,
    "mod": _np.remainder,
    "pow": _np.power,
    "matmul": _np.matmul,
    "and": _np.bitwise_and,
    "or": _np.bitwise_or,
    "xor": _np.bitwise_xor,
    # cupy/_core/core.pyx ndarray.__lshift__/__rshift__ (the left_shift/right_shift ufuncs)
    "lshift": _np.left_shift,
    "rshift": _np.right_shift,
}.items():
    _f, _r, _i = _binary(_ufunc)
    setattr(ndarray, f"__{_name}__", _f)
    setattr(ndarray, f"__r{_name}__", _r)
    setattr(ndarray, f"__i{_name}__", _i)
_COMPARISONS = ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal")


def _scalar_if_0d(value):
    return value.item() if isinstance(value, _np.ndarray) and value.ndim == 0 else value


def _comparison(ufunc):
    # cupy/_core/core.pyx ndarray.__richcmp__: a 0-d NumPy array is compared as its Python scalar
    return lambda self, other: _call(ufunc, self, _scalar_if_0d(other))


for _name, _ufunc in {
    "lt": _np.less,
    "le": _np.less_equal,
    "gt": _np.greater,
    "ge": _np.greater_equal,
    "eq": _np.equal,
    "ne": _np.not_equal,
}.items():
    setattr(ndarray, f"__{_name}__", _comparison(_ufunc))
ndarray.__neg__ = lambda self: _call(_np.negative, self)
ndarray.__pos__ = lambda self: _call(_np.positive, self)
ndarray.__abs__ = lambda self: _call(_np.absolute, self)
ndarray.__invert__ = lambda self: _call(_np.invert, self)
ndarray.__hash__ = None


# ---- the one path every operation takes -------------------------------------------------------------
def _check_device(array: ndarray) -> None:
    """cupy/_core/_kernel.pyx _check_peer_access: an operand of another device is refused unless the two
    devices can access each other's memory (cupy/cuda/device.pyx _enable_peer_access asks
    runtime.deviceCanAccessPeer), in which case peer access is enabled and a PerformanceWarning says so."""
    current = _state.get_device_id()
    if array._memory.device_id == current:
        return
    message = (
        f"The device where the array resides ({array._memory.device_id}) is different from the "
        f"current device ({current})."
    )
    if not cuda.runtime.deviceCanAccessPeer(current, array._memory.device_id):
        raise ValueError(f"{message} Peer access is unavailable between these devices.")
    import warnings

    from cupy._util import PerformanceWarning

    warnings.warn(
        f"{message} Peer access has been activated automatically.", PerformanceWarning, stacklevel=3
    )


def _operand(value):
    """Host view of one operand: device arrays (on the current device), or scalars as CuPy takes them."""
    if isinstance(value, ndarray):
        _check_device(value)
        return value._data
    if isinstance(value, _np.ndarray):
        # cupy/_core/_scalar.pyx CScalar.__init__ line 344: not a Python or NumPy scalar (0-d arrays too)
        raise TypeError(f"Unsupported type {type(value)}")
    if isinstance(value, (tuple, list)):
        return type(value)(_operand(v) for v in value)
    return value


def _index(key):
    """Index keys: device arrays stay device arrays (checked when used); host int arrays are uploaded."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, _np.ndarray):
        counters.h2d_copies += 1
        return ndarray._new(key)
    return key


def _is_basic(key) -> bool:
    """An index _view_getitem turns into a view: an integer, a slice, None or Ellipsis."""
    return (
        key is None
        or key is Ellipsis
        or isinstance(key, (slice, int, _np.integer))
        and not isinstance(key, bool)
    )


def _unwrap(key):
    if isinstance(key, tuple):
        return tuple(_unwrap(k) for k in key)
    if isinstance(key, ndarray):
        _check_device(key)
        return key._data
    return key


def _source_memory(args, result):
    for arg in args:
        if isinstance(arg, ndarray) and _np.may_share_memory(result, arg._data):
            return arg._memory
        if isinstance(arg, (tuple, list)):
            found = _source_memory(arg, result)
            if found is not None:
                return found
    return None


def _call(func, *args, **kwargs):
    """`func` on the host buffers. A result that is a view of an operand is a view (no kernel, as in CuPy);
    anything else is one kernel on the current device, queued on the current stream, writing a new
    allocation there (or `out`). `func` runs once now, to learn the result's shape and dtype and to raise
    what CuPy raises before it launches, and again when the launch runs, on what the buffers hold then."""
    host_args = [_peek(a) for a in args]
    host_kwargs = {k: _peek(v) for k, v in kwargs.items()}
    out = kwargs.get("out")
    if isinstance(out, ndarray):
        # a kernel writing into `out`, which CuPy returns itself (cupy/_core/_routines_linalg.pyx matmul
        # `return out`; cupy/_core/_reduction.pyx _AbstractReductionKernel._call `ret = out_args[0]`)
        for arg in list(args) + list(kwargs.values()):
            _operand(arg)
        _quiet(func, *host_args, **{**host_kwargs, "out": _np.empty_like(out._data)})
        _queued(lambda: _quiet(func, *host_args, **host_kwargs))
        return out
    result = _dry_run(func, host_args, host_kwargs)
    results = result if isinstance(result, tuple) else (result,)
    wrapped, targets = [], []
    for value in results:
        value = _np.asarray(value)
        memory = _source_memory(list(args) + list(kwargs.values()), value)
        if memory is not None:
            wrapped.append(ndarray._view(value, memory))
            targets.append(None)
        else:
            wrapped.append(ndarray(value.shape, dtype=value.dtype))
            targets.append(wrapped[-1]._data)
    launched = [t for t in targets if t is not None]
    if launched:
        for arg in list(args) + list(kwargs.values()):
            _operand(arg)  # device rule: every array operand must be on the current device

        def run():
            again = _quiet(func, *host_args, **host_kwargs)
            for target, value in zip(targets, again if isinstance(again, tuple) else (again,), strict=True):
                if target is not None:
                    target[...] = value

        _queued(run, launches=len(launched))
    return tuple(wrapped) if isinstance(result, tuple) else wrapped[0]


def _dry_run(func, host_args, host_kwargs):
    """func now, for the result's shape and dtype (and whether it is a view). Buffers whose launches are still
    queued hold stale values: an index array among them may point anywhere, so an IndexError is retried on
    zeros of the same shapes (the shape of a gather does not depend on the indices' values)."""
    try:
        return _quiet(func, *host_args, **host_kwargs)
    except IndexError:
        return _quiet(func, *_zeroed(host_args), **{k: _zeroed(v) for k, v in host_kwargs.items()})


def _zeroed(value):
    if isinstance(value, _np.ndarray):
        return _np.zeros_like(value)
    if isinstance(value, (tuple, list)):
        return type(value)(_zeroed(v) for v in value)
    return value


def _quiet(func, *args, **kwargs):
    """func under CuPy's floating-point rules: no warnings (a GPU raises no flags)."""
    with _np.errstate(all="ignore"):
        return func(*args, **kwargs)


def _queued(write, launches: int = 1) -> None:
    """`write` (no arguments; it writes device memory) queued on the current stream as `launches` launches."""
    counters.launches += launches
    _state.launch(write)


def _read_back_inside_cupy() -> None:
    """A CuPy routine's own read-back of a device value (an int() of a device scalar): a synchronisation
    of the current stream."""
    counters.d2h_reads += 1
    _state.wait_for_current_stream()


def _peek(value):
    """Host data of an operand without the device check (done once we know a kernel runs)."""
    if isinstance(value, ndarray):
        return value._data
    if isinstance(value, (tuple, list)):
        return type(value)(_peek(v) for v in value)
    if isinstance(value, _np.ndarray):
        raise TypeError(f"Unsupported type {type(value)}")  # cupy/_core/_scalar.pyx line 344, 0-d too
    return value


def _launch_into(target: ndarray, func, *args) -> None:
    """An in-place kernel: func(target, *args), written into target's memory when the launch runs."""
    _check_device(target)
    host_args = [_operand(a) for a in args]
    data = target._data

    def run():
        data[...] = _np.asarray(_quiet(func, data, *host_args)).astype(
            data.dtype, casting="same_kind", copy=False
        )

    _np.asarray(_quiet(func, data, *host_args)).astype(
        data.dtype, casting="same_kind", copy=False
    )  # raises now
    _queued(run)


# ---- creation and moving data ------------------------------------------------------------------------
def _created(data) -> ndarray:
    counters.launches += 1  # a fill kernel (memset) on the current device
    return ndarray._new(data)


def array(obj, dtype=None, copy=True, order="K", ndmin=0):
    """cupy/_core/core.pyx array. A device array (_array_from_cupy_ndarray): on the current device it is
    astype(dtype, copy=copy), elsewhere it is copied to the current device whatever `copy` says. A host
    array (_array_default) is copied to the current device, except that with CUPY_ENABLE_UMP=1 and
    copy not True it is wrapped in place (_try_skip_h2d_copy: the device array *is* the NumPy memory)."""
    if isinstance(obj, ndarray):
        if obj._memory.device_id != _state.get_device_id():
            moved = obj.copy()
            return moved if dtype is None else moved.astype(dtype, copy=False)
        if dtype is None and not copy:
            return obj
        return obj.astype(dtype or obj.dtype, copy=bool(copy) or _np.dtype(dtype) != obj.dtype)
    if copy is not True and _state.ump_wraps(obj, dtype, ndmin):
        return ndarray._view(obj, _state.Memory(_state.get_device_id(), 0))
    counters.h2d_copies += 1  # host-to-device copy (cupy/_core/core.pyx _array_default)
    return ndarray._new(_np.array(obj, dtype=dtype, ndmin=ndmin))


def asarray(a, dtype=None, order=None, copy=None):
    """cupy/_creation/from_data.py asarray -> _core.array(a, dtype, copy, order): a device array of the
    current device passes through, one of another device is copied here, a host array is uploaded."""
    return array(a, dtype=dtype, copy=copy)


def ascontiguousarray(a, dtype=None):
    return asarray(a, dtype=dtype) if a.flags.c_contiguous else a.copy().astype(dtype or a.dtype)


def asnumpy(a, stream=None, order="C", out=None, blocking=True):
    """cupy/__init__.py asnumpy: a.get() for device arrays, numpy.asarray otherwise."""
    if isinstance(a, ndarray):
        return a.get(stream=stream, order=order, out=out, blocking=blocking)
    return _np.asarray(a, order=order)


def zeros(shape, dtype=float, order="C"):
    return _created(_np.zeros(shape, dtype=dtype))


def ones(shape, dtype=float, order="C"):
    return _created(_np.ones(shape, dtype=dtype))


def empty(shape, dtype=float, order="C"):
    return ndarray(shape, dtype=dtype)  # allocation only, no kernel


def full(shape, fill_value, dtype=None, order="C"):
    return _created(_np.full(shape, fill_value, dtype=dtype))


def arange(start, stop=None, step=1, dtype=None):
    return _created(
        _np.arange(start, stop, step, dtype=dtype) if stop is not None else _np.arange(start, dtype=dtype)
    )


def eye(n, m=None, k=0, dtype=float):
    return _created(_np.eye(n, m, k, dtype=dtype))


def _like(fill):
    def make(a, dtype=None, order="K", subok=None, shape=None):
        # the new array goes to the *current* device, laid out as empty_like lays it out
        # (cupy/_creation/basic.py zeros_like etc.)
        made = empty_like(a, dtype=dtype, order=order, shape=shape)
        target = made._data
        _queued(lambda: target.__setitem__(Ellipsis, fill(target)))  # the fill kernel
        return made

    return make


zeros_like = _like(_np.zeros_like)
ones_like = _like(_np.ones_like)


def empty_like(a, dtype=None, order="K", subok=None, shape=None):
    """cupy/_creation/basic.py empty_like -> _new_like_order_and_strides: order 'K' keeps the prototype's
    memory layout (a transposed prototype gives a transposed array), as NumPy's PyArray_NewLikeArray does."""
    data = _np.empty_like(a._data, dtype=dtype, order=order, shape=shape)
    return ndarray._view(data, _state.Memory(_state.get_device_id(), data.nbytes))


def full_like(a, fill_value, dtype=None, order="K", subok=None, shape=None):
    return _like(lambda t: _np.full_like(t, fill_value))(a, dtype, order, subok, shape)


def get_default_memory_pool():
    return cuda.memory._default_pool


def get_default_pinned_memory_pool():
    return cuda.memory._default_pinned_pool


# ---- NumPy functions as device operations (one kernel each unless the result is a view) -------------
def _device_function(np_func):
    def run(*args, **kwargs):
        return _call(np_func, *args, **kwargs)

    run.__name__ = np_func.__name__
    run.__doc__ = f"numpy.{np_func.__name__} as one device operation"
    return run


for _name in (
    "exp log log1p expm1 tanh sqrt square abs absolute sign negative maximum minimum clip where add subtract "
    "multiply divide true_divide power sum max amax min amin mean var std prod argmax argmin any all matmul "
    "dot take concatenate stack isfinite isnan equal not_equal greater greater_equal less less_equal "
    "logical_and logical_or logical_not floor ceil around cumsum reshape transpose ravel squeeze expand_dims "
    "broadcast_to outer einsum tensordot count_nonzero sin cos tan arctan log2 log10 floor_divide remainder "
    "fmax fmin isclose nanmax nanmin"
).split():
    if hasattr(_np, _name):
        globals()[_name] = _device_function(getattr(_np, _name))


def _reads_back(function):
    """A CuPy routine that reads a result back to decide something (a synchronisation inside CuPy)."""

    def run(*args, **kwargs):
        result = function(*args, **kwargs)
        counters.launches += 1  # the isnan(...).any() whose result is read
        _read_back_inside_cupy()
        return result

    run.__name__, run.__doc__ = function.__name__, function.__doc__
    return run


# cupy/_statistics/order.py nanmin/nanmax: `if content.isnan(res).any():  # synchronize!` (lines 114, 145);
# nonzero/argwhere/flatnonzero and one-argument where go through _routines_indexing.pyx _ndarray_argwhere,
# `count_nonzero = int(scan_index[-1])  # synchronize!` (line 123)
for _name in ("nanmin", "nanmax", "nonzero", "argwhere", "flatnonzero"):
    globals()[_name] = _reads_back(_device_function(getattr(_np, _name)))
_where, _nonzero = globals()["where"], globals()["nonzero"]


def where(condition, x=None, y=None):
    """cupy/_sorting/search.py where: with the condition alone, condition.nonzero() (a read-back)."""
    if x is None and y is None:
        return _nonzero(condition)
    return _where(condition, x, y)


ndarray.nonzero = lambda self: _nonzero(self)
