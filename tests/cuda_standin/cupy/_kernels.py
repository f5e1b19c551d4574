"""ElementwiseKernel, ReductionKernel and RawKernel: CuPy's argument and type rules, with the kernel
body compiled by the host C++ compiler and run over every element, so its arithmetic is real.

Type rules (cupy/_core/_kernel.pyx):
- ElementwiseKernel.__call__ (line ~832): nin or nin+nout arguments, else TypeError; each array operand
  must be on the current device (_preprocess_args -> _check_peer_access); anything that is not an array
  becomes a CScalar, which takes Python and NumPy scalars only: a NumPy array there, 0-d included, is
  TypeError "Unsupported type" (cupy/_core/_scalar.pyx CScalar.__init__, line 344).
- _decide_params_type_core (line ~557): a parameter of fixed type (float32, bool...) accepts only arrays
  of exactly that dtype; a placeholder (T) takes the dtype of the first array bound to it and every
  other array bound to it must match ("Type is mismatched"). Scalars do not bind a placeholder: they are
  converted to the parameter's resolved type (CScalar.apply_dtype); a placeholder bound by no array is
  unresolved (KeyError, as in CuPy).
- output arrays, when passed, must already have the broadcast shape (_get_out_args_with_params:
  "Out shape is mismatched"); missing outputs are allocated on the current device.
- RawKernel arguments (cupy/cuda/function.pyx _pointer): a device array passes its pointer, a NumPy array
  of size one passes its value, larger NumPy arrays are TypeError; Python scalars are typed by
  _scalar.pyx numpy_dtype_from_pyscalar: bool -> bool, int -> int64, float -> float64.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from cupy import _state

C_TYPES = {
    "bool": "bool",
    "int8": "signed char",
    "int16": "short",
    "int32": "int",
    "int64": "long long",
    "uint8": "unsigned char",
    "uint16": "unsigned short",
    "uint32": "unsigned int",
    "uint64": "unsigned long long",
    "float32": "float",
    "float64": "double",
}

# What CUDA device code has and host C++ needs spelled out.
_PRELUDE = """
#include <cmath>
#include <cstdint>
#include <cstddef>
#include <algorithm>
using namespace std;
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
// The host runs a launch's threads one after another: a valid interleaving of the device's, in which an
// atomic is a plain read-modify-write and every write is already visible (so a fence has nothing to do).
template <typename T> inline T atomicAdd(T* address, T value) { T old = *address; *address = old + value; return old; }
template <typename T> inline T atomicExch(T* address, T value) { T old = *address; *address = value; return old; }
inline void __threadfence() {}
// cupy/_core/include/cupy/carray.cuh (v14.2.0), the members a kernel body reaches: a raw parameter is a
// CArray<T, ndim, c_contiguous, use_32bit_indexing> over the array itself (its pointer, shape and byte
// strides, no copy). operator[](ptrdiff_t) is CArray's (line 438): a C-contiguous array is data_[i]; any
// other unravels i in C order over shape_ and adds strides_ (so a linear index is the logical element, and
// &x[0] the first element's address); the 0-d specialisation (line 462) answers *data_ for every index, by
// value when const. The loop's indexer is a CIndexer (size(), set(i), get()).
template <bool B, typename T, typename F> struct _standin_conditional { typedef T type; };
template <typename T, typename F> struct _standin_conditional<false, T, F> { typedef F type; };
template <typename T, int _ndim, bool _c_contiguous = false, bool _use_32bit_indexing = false>
class CArray {
public:
  static const int ndim = _ndim;
  static const bool c_contiguous = _c_contiguous;
  typedef typename _standin_conditional<_use_32bit_indexing, int, ptrdiff_t>::type index_t;
private:
  T* data_;
  ptrdiff_t size_;
  ptrdiff_t shape_[_ndim];
  ptrdiff_t strides_[_ndim];
public:
  CArray(T* data, const long long* shape, const long long* strides) : data_(data), size_(1) {
    for (int i = 0; i < _ndim; i++) { shape_[i] = shape[i]; strides_[i] = strides[i]; size_ *= shape[i]; }
  }
  ptrdiff_t size() const { return size_; }
  const ptrdiff_t* shape() const { return shape_; }
  const ptrdiff_t* strides() const { return strides_; }
  T& operator[](ptrdiff_t i) { return const_cast<T&>(const_cast<const CArray&>(*this)[i]); }
  const T& operator[](ptrdiff_t idx) const {
    if (c_contiguous) {
      return data_[idx];
    } else {
      index_t diff = 0;
      index_t i = static_cast<index_t>(idx);
      for (int dim = ndim; --dim > 0; ) {
        index_t shape_dim = static_cast<index_t>(shape_[dim]);
        diff += static_cast<index_t>(strides_[dim]) * (i % shape_dim);
        i /= shape_dim;
      }
      diff += static_cast<index_t>(strides_[0]) * i;
      const char* ptr = reinterpret_cast<const char*>(data_);
      return *reinterpret_cast<const T*>(ptr + diff);
    }
  }
};
template <typename T, bool _use_32bit_indexing>
class CArray<T, 0, true, _use_32bit_indexing> {
private:
  T* data_;
  ptrdiff_t size_;
public:
  static const int ndim = 0;
  CArray(T* data, const long long*, const long long*) : data_(data), size_(1) {}
  ptrdiff_t size() const { return size_; }
  template <typename U> T& operator[](const U&) { return *data_; }
  template <typename U> T operator[](const U&) const { return *data_; }
};
class CIndexer {
public:
  ptrdiff_t size_, index_;
  ptrdiff_t size() const { return size_; }
  void set(ptrdiff_t i) { index_ = i; }
  ptrdiff_t get() const { return index_; }
};
"""


def _cache_dir() -> Path:
    root = os.environ.get("GPUNN_STANDIN_CACHE") or os.path.join(
        tempfile.gettempdir(), f"gpunn-cupy-standin-{os.getuid()}"
    )
    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(root)


_loaded: dict[str, ctypes.CDLL] = {}


def _fp_contraction() -> tuple[str, ...]:
    """NVRTC contracts a * b + c into one fused multiply-add (one rounding) by default: `--fmad=true` (CUDA's
    NVRTC documentation, "Supported Compile Options"), and CuPy passes no --fmad (cupy/cuda/compiler.py
    compile_using_nvrtc, cupy/_core/core.pyx assemble_cupy_compiler_options). The host compiler is told to do
    the same: -ffp-contract=fast, with the FMA instructions enabled on x86-64 (baseline elsewhere)."""
    flags = ("-ffp-contract=fast",)
    if platform.machine() in ("x86_64", "AMD64"):
        cpu = Path("/proc/cpuinfo")
        if cpu.exists() and not re.search(r"^flags\s*:.*\bfma\b", cpu.read_text(), re.MULTILINE):
            raise RuntimeError("the CuPy stand-in fuses multiply-adds as NVRTC does and needs a CPU with FMA")
        flags += ("-mfma",)
    return flags


_FP_CONTRACTION = _fp_contraction()


def compile_source(source: str, name: str) -> ctypes.CDLL:
    """Build `source` into a shared library once (cached on disk by content hash) and load it."""
    compiler = os.environ.get("CXX", "g++")
    flags = [*_FP_CONTRACTION, "-O2", "-shared", "-fPIC"]
    key = hashlib.sha256("\0".join([compiler, *flags, source]).encode()).hexdigest()[:24]  # flags change code
    if key in _loaded:
        return _loaded[key]
    library = _cache_dir() / f"{key}.so"
    if not library.exists():
        cpp = library.with_suffix(f".{os.getpid()}.cpp")
        cpp.write_text(source)
        partial = library.with_suffix(f".{os.getpid()}.so")
        try:
            done = subprocess.run(
                [compiler, *flags, "-o", str(partial), str(cpp)],
                capture_output=True,
                text=True,
            )
        except FileNotFoundError:
            raise RuntimeError(
                f"the CuPy stand-in compiles kernel bodies with a host C++ compiler and found no {compiler!r}: "
                "install g++ (apt-get install g++) or set CXX"
            ) from None
        finally:
            cpp.unlink()
        if done.returncode != 0:
            from cupy.cuda.compiler import CompileException

            raise CompileException(done.stderr, source, name)
        os.replace(partial, library)
    _loaded[key] = ctypes.CDLL(str(library))
    return _loaded[key]


def _c_type(dtype) -> str:
    try:
        return C_TYPES[np.dtype(dtype).name]
    except KeyError:
        raise TypeError(f"the CuPy stand-in has no C type for dtype {np.dtype(dtype)}") from None


class _Param:
    """One entry of a parameter list: 'T x', 'float32 y', 'raw T z' (cupy/_core/_kernel.pyx ParameterInfo:
    the last two words are type and name, the words before them the keywords 'raw' or '_non_const')."""

    def __init__(self, text: str, is_const: bool):
        words = text.split()
        if len(words) < 2:
            raise Exception(f"Syntax error: {text}")
        self.ctype, self.name = words[-2:]
        self.raw, self.is_const = False, is_const
        for word in words[:-2]:
            if word == "raw":
                self.raw = True
            elif word == "_non_const":
                self.is_const = False
            else:
                raise Exception(f'Unknown keyword "{word}"')
        is_placeholder = len(self.ctype) == 1
        self.dtype = None if is_placeholder else np.dtype(self.ctype)
        self.ctype = self.ctype if is_placeholder else _c_type(self.dtype)  # float32 -> float in the C code


def _params(text: str, is_const: bool) -> tuple[_Param, ...]:
    """cupy/_core/_kernel.pyx _get_param_info: only '' means no parameters; any other list is stripped and
    split at commas, and every entry (an empty one after a trailing comma too) is a ParameterInfo."""
    if len(text) == 0:
        return ()
    return tuple(_Param(p, is_const) for p in text.strip().split(","))


def _decide_types(in_params, out_params, in_dtypes, out_dtypes):
    """cupy/_core/_kernel.pyx _decide_params_type_core, rule for rule."""
    type_dict = {}
    for p, a in zip(out_params, out_dtypes, strict=True) if out_dtypes else ():
        if p.dtype is not None:
            if np.dtype(a) != p.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {a} {p.dtype}")
        elif p.ctype in type_dict:
            if np.dtype(type_dict[p.ctype]) != np.dtype(a):
                raise TypeError(f"Type is mismatched. {p.name} {a} {type_dict[p.ctype]} {p.ctype}")
        else:
            type_dict[p.ctype] = np.dtype(a)
    for p, a in zip(in_params, in_dtypes, strict=True):
        if a is None:
            continue
        if p.dtype is not None:
            if np.dtype(a) != p.dtype:
                raise TypeError(f"Type is mismatched. {p.name} {a} {p.dtype}")
        elif p.ctype in type_dict:
            if np.dtype(type_dict[p.ctype]) != np.dtype(a):
                raise TypeError(f"Type is mismatched. {p.name} {a} {type_dict[p.ctype]} {p.ctype}")
        else:
            type_dict[p.ctype] = np.dtype(a)
    in_types = tuple(type_dict[p.ctype] if p.dtype is None else p.dtype for p in in_params)
    out_types = tuple(type_dict[p.ctype] if p.dtype is None else p.dtype for p in out_params)
    return in_types, out_types, type_dict


def _preprocess(args):
    """cupy/_core/_kernel.pyx _preprocess_arg: an array is checked against the current device; anything
    else becomes a CScalar, which (cupy/_core/_scalar.pyx CScalar.__init__, line 344) takes only Python
    bool/int/float/complex (numpy_dtype_from_pyscalar) and NumPy scalars (numpy.generic): a NumPy array,
    0-d included, is TypeError "Unsupported type"."""
    import cupy

    out = []
    for arg in args:
        if isinstance(arg, cupy.ndarray):
            cupy._check_device(arg)
            out.append(arg)
        elif type(arg) in (bool, int, float, complex) or isinstance(arg, np.generic):
            out.append(_Scalar(arg))
        else:
            raise TypeError(f"Unsupported type {type(arg)}")
    return out


class _Scalar:
    def __init__(self, value):
        self.value = value


def _typedefs(type_dict) -> str:
    return "".join(f"typedef {_c_type(t)} {name};\n" for name, t in sorted(type_dict.items()))


def _run(library, symbol: str, n: int, buffers, extra_ints=(), extra_pointers=()) -> None:
    pointers = (ctypes.c_void_p * len(buffers))(*[b.ctypes.data for b in buffers])
    getattr(library, symbol)(
        ctypes.c_longlong(n), pointers, *extra_pointers, *[ctypes.c_longlong(v) for v in extra_ints]
    )


recorded_calls: list | None = None
"""A list while tests/test_cupy_codegen.py records each ElementwiseKernel call, as (kernel name, arguments,
size=): an array as (dtype name, shape, strides), a scalar as its type ('int', 'float', 'bool' or a NumPy
dtype name), the description tests/gpu_proof/cupy_codegen.py generates CuPy's source from; None otherwise."""


def _described(arg):
    import cupy

    if isinstance(arg, cupy.ndarray):
        return (arg.dtype.name, arg.shape, arg._data.strides)
    if isinstance(arg, (np.generic, np.ndarray)):
        return arg.dtype.name
    return type(arg).__name__


def _launch_limits():
    """tests/gpu_proof/limits.py, the one home of the hardware's launch limits and of the geometry CuPy
    picks for an ElementwiseKernel (loaded by path: the stand-in is the `cupy` package, not part of tests)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "gpu_proof" / "limits.py"
    spec = importlib.util.spec_from_file_location("_standin_launch_limits", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_LIMITS = _launch_limits()


def _check_elementwise_launch(n: int, block_size: int) -> None:
    """An ElementwiseKernel call launches linear_launch(indexer.size, block_max_size=block_size)
    (cupy/_core/_kernel.pyx ElementwiseKernel.__call__), i.e. min(block_size, size) threads a block
    (cupy/cuda/function.pyx Function.linear_launch); cuLaunchKernel refuses a block over the device's 1024
    threads with CUDA_ERROR_INVALID_VALUE, raised at the call (cupy_backends/cuda/api/driver.pyx
    launchKernel -> check_status). No launch, no check: a shape with a 0 returns before launching."""
    from cupy.cuda.driver import CUDADriverError

    geometry = _LIMITS.elementwise_geometry(n, block_size)
    if geometry is None:
        return
    try:
        _LIMITS.check_launch(*geometry)
    except _LIMITS.LaunchError as exc:
        raise CUDADriverError(f"CUDA_ERROR_INVALID_VALUE: invalid argument ({exc})") from None


class ElementwiseKernel:
    def __init__(
        self,
        in_params,
        out_params,
        operation,
        name="kernel",
        reduce_dims=True,
        preamble="",
        no_return=False,
        return_tuple=False,
        loop_prep="",
        after_loop="",
        **kwargs,
    ):
        self.in_params = _params(in_params, True)
        self.out_params = _params(out_params, False)
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.nargs = self.nin + self.nout
        if "i" in [p.name for p in self.in_params + self.out_params]:
            raise ValueError("Can not use 'i' as a parameter name")  # ElementwiseKernel.__init__
        self.operation, self.name, self.preamble = operation, name, preamble
        self.no_return, self.return_tuple = no_return, return_tuple
        self.loop_prep, self.after_loop = loop_prep, after_loop

    def __call__(self, *args, size=None, stream=None, block_size=128):
        import cupy

        if len(args) not in (self.nin, self.nargs):
            raise TypeError(
                f"Wrong number of arguments for {self.name!r}. It must be either {self.nin} or "
                f"{self.nargs} (with outputs), but given {len(args)}."
            )
        if recorded_calls is not None:
            recorded_calls.append((self.name, tuple(_described(a) for a in args), size))
        args = _preprocess(args)
        params = self.in_params + self.out_params
        arrays = [
            a._data for a, p in zip(args, params, strict=False) if isinstance(a, cupy.ndarray) and not p.raw
        ]
        if size is None:
            if not arrays:
                raise ValueError("Loop size is undecided.")
            shape = np.broadcast_shapes(*[a.shape for a in arrays])
        else:
            if arrays:
                raise ValueError("Specified 'size' can be used only if all of the ndarray are 'raw'.")
            shape = (size,)
        in_args, out_args = args[: self.nin], args[self.nin :]
        if any(isinstance(a, _Scalar) for a in out_args):
            raise TypeError("Output arguments must be cupy.ndarray")
        in_types, out_types, type_dict = _decide_types(
            self.in_params,
            self.out_params,
            [a.dtype if isinstance(a, cupy.ndarray) else None for a in in_args],
            [a.dtype for a in out_args],
        )
        # _get_out_args_with_params: given outputs must have the loop shape, except raw ones; missing outputs
        # are allocated with it, which a raw output cannot be without size=
        if out_args:
            for a, p in zip(out_args, self.out_params, strict=True):
                if not p.raw and a.shape != shape:
                    raise ValueError("Out shape is mismatched")
        else:
            if size is None and any(p.raw for p in self.out_params):
                raise ValueError("Output array size is Undecided")
            out_args = [cupy.ndarray(shape, dtype=t) for t in out_types]
        n = int(np.prod(shape))
        kinds, values = [], []  # per argument: how it is passed, and its scalar value or its device buffer
        for a, p, t in zip(in_args + list(out_args), params, in_types + out_types, strict=True):
            if isinstance(a, _Scalar):
                values.append(np.array(a.value, dtype=t))  # CScalar.apply_dtype, by value at the call
                kinds.append("scalar")
            else:
                values.append(a._data)
                kinds.append(_raw_kind(a) if p.raw else "array")
        library = compile_source(self._source(kinds, type_dict), self.name) if n else None  # at the call
        _check_elementwise_launch(n, block_size)

        def run():  # when the launch runs: the buffers as they are then
            buffers = [
                np.ascontiguousarray(np.broadcast_to(v, shape)) if kind == "array" else v
                for v, kind in zip(values, kinds, strict=True)
            ]
            pointers, _alive = _layout_pointers(buffers)
            _run(library, "standin_elementwise", n, buffers, extra_pointers=pointers)
            for target, buffer, kind in zip(
                values[self.nin :], buffers[self.nin :], kinds[self.nin :], strict=True
            ):
                if kind == "array":
                    target[...] = buffer.reshape(target.shape)

        _state.counters.launches += 1
        if n:
            _state.launch(run)
        if self.no_return:
            return None
        if not self.return_tuple and self.nout == 1:
            return out_args[0]
        return tuple(out_args)

    def _source(self, kinds, type_dict) -> str:
        """The kernel as cupy/_core/_kernel.pyx _get_elementwise_kernel_code writes it (~line 710): a raw
        parameter is a CArray under its own name, an array parameter is bound per element by reference
        (`const T &x = _raw_x[_ind.get()]`), a scalar arrives by value; the body runs for each ptrdiff_t i
        of CUPY_FOR(i, _ind.size()) after _ind.set(i)."""
        params = self.in_params + self.out_params
        decls, per_element = [], []
        for k, (p, kind) in enumerate(zip(params, kinds, strict=True)):
            const = "const " if p.is_const else ""
            decls.append(f"{const}{p.ctype}* _raw_{p.name} = ({const}{p.ctype}*)_args[{k}];")
            if isinstance(
                kind, tuple
            ):  # raw: CArray<T, ndim, c_contiguous, 32-bit indexing>, as CuPy types it
                ndim, contiguous, index_32 = kind[1:]
                decls.append(
                    f"{const}CArray<{p.ctype}, {ndim}, {int(contiguous)}, {int(index_32)}> {p.name}("
                    f"({p.ctype}*)_raw_{p.name}, _shapes[{k}], _strides[{k}]);"
                )
            elif kind == "scalar":
                decls.append(f"const {p.ctype} {p.name} = _raw_{p.name}[0];")
            else:
                per_element.append(f"{const}{p.ctype} &{p.name} = _raw_{p.name}[_ind.get()];")
        return (
            f"{_PRELUDE}{_typedefs(type_dict)}{self.preamble}\n"
            'extern "C" void standin_elementwise(long long _n, void** _args, long long** _shapes, '
            "long long** _strides) {\n"
            + "\n".join(decls)
            + "\nCIndexer _ind = {(ptrdiff_t)_n, 0};\n"
            + f"{self.loop_prep};\nfor (ptrdiff_t i = 0; i < _ind.size(); ++i) {{\n_ind.set(i);\n"
            + "\n".join(per_element)
            + f"\n{self.operation}\n;}}\n{self.after_loop};\n}}\n"
        )


def _raw_kind(array) -> tuple:
    """What CuPy's _ArgInfo.get_c_type puts in a raw parameter's CArray type: ndim, c_contiguous and
    index_32_bits (cupy/_core/core.pyx _init: the allocation's bytes <= 2**31; views inherit it)."""
    return ("raw", array.ndim, bool(array._data.flags.c_contiguous), array._memory.size <= 1 << 31)


def _layout_pointers(buffers) -> tuple:
    """Per argument, pointers to its shape and its byte strides (int64), for the CArray constructors."""
    shapes = [np.array(b.shape or (1,), dtype=np.int64) for b in buffers]
    strides = [np.array(b.strides or (b.itemsize,), dtype=np.int64) for b in buffers]
    pointers = tuple(
        (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays]) for arrays in (shapes, strides)
    )
    return pointers, (shapes, strides)  # the caller keeps the second alive through the launch


class ReductionKernel:
    """cupy/_core/_reduction.pyx ReductionKernel: map_expr per element, reduce_expr folds a and b,
    post_map_expr writes the outputs from a; same parameter type rules as ElementwiseKernel."""

    def __init__(
        self,
        in_params,
        out_params,
        map_expr,
        reduce_expr,
        post_map_expr,
        identity,
        name="reduce_kernel",
        reduce_type=None,
        reduce_dims=True,
        preamble="",
        options=(),
    ):
        self.in_params = _params(in_params, True)
        self.out_params = _params(out_params, False)
        self.nin, self.nout = len(self.in_params), len(self.out_params)
        self.map_expr, self.reduce_expr, self.post_map_expr = map_expr, reduce_expr, post_map_expr
        self.identity, self.name, self.reduce_type, self.preamble = identity, name, reduce_type, preamble

    def __call__(self, *args, axis=None, keepdims=False, stream=None):
        import cupy

        if len(args) not in (self.nin, self.nin + self.nout):
            raise TypeError(f"Wrong number of arguments for {self.name!r}")
        args = _preprocess(args)
        in_args, out_args = args[: self.nin], args[self.nin :]
        arrays = [a._data for a in in_args if isinstance(a, cupy.ndarray)]
        shape = np.broadcast_shapes(*[a.shape for a in arrays])
        axes = tuple(range(len(shape))) if axis is None else tuple(np.atleast_1d(axis) % max(len(shape), 1))
        kept = [d for d in range(len(shape)) if d not in axes]
        out_shape = (
            tuple(1 if d in axes else shape[d] for d in range(len(shape)))
            if keepdims
            else tuple(shape[d] for d in kept)
        )
        in_types, out_types, type_dict = _decide_types(
            self.in_params,
            self.out_params,
            [a.dtype if isinstance(a, cupy.ndarray) else None for a in in_args],
            [a.dtype for a in out_args],
        )
        if out_args:
            if any(a.shape != out_shape for a in out_args):
                raise ValueError("Out shape is mismatched")
        else:
            out_args = [cupy.ndarray(out_shape, dtype=t) for t in out_types]
        outer = int(np.prod([shape[d] for d in kept]))
        inner = int(np.prod([shape[d] for d in axes]))
        kinds = ["scalar" if isinstance(a, _Scalar) else "array" for a in in_args]
        values = [
            np.array(a.value, dtype=t) if isinstance(a, _Scalar) else a._data
            for a, t in zip(in_args, in_types, strict=True)
        ]
        targets = [a._data for a in out_args]
        library = compile_source(self._source(kinds, type_dict, out_types), self.name)

        def run():  # when the launch runs: the inputs as they are then
            buffers = [
                v
                if kind == "scalar"
                else np.ascontiguousarray(np.moveaxis(np.broadcast_to(v, shape), axes, range(-len(axes), 0)))
                for v, kind in zip(values, kinds, strict=True)
            ]
            outs = [np.empty(out_shape, dtype=t) for t in out_types]
            _run(library, "standin_reduce", outer, buffers + outs, (inner,))
            for target, buffer in zip(targets, outs, strict=True):
                target[...] = buffer

        _state.counters.launches += 1
        _state.launch(run)
        return out_args[0] if self.nout == 1 else tuple(out_args)

    def _source(self, kinds, type_dict, out_types) -> str:
        reduce_type = self.reduce_type or _c_type(out_types[0])
        decls, loads, stores = [], [], []
        for k, (p, kind) in enumerate(zip(self.in_params, kinds, strict=True)):
            decls.append(f"const {p.ctype}* _raw_{p.name} = (const {p.ctype}*)_args[{k}];")
            index = "0" if kind == "scalar" else "_o * _inner + _j"
            loads.append(f"const {p.ctype} {p.name} = _raw_{p.name}[{index}];")
        for k, p in enumerate(self.out_params, start=self.nin):
            decls.append(f"{p.ctype}* _raw_{p.name} = ({p.ctype}*)_args[{k}];")
            stores.append(f"{p.ctype} &{p.name} = _raw_{p.name}[_o];")
        return (
            f"{_PRELUDE}{_typedefs(type_dict)}typedef {reduce_type} _type_reduce;\n{self.preamble}\n"
            f"#define REDUCE(a, b) ({self.reduce_expr})\n"
            'extern "C" void standin_reduce(long long _outer, void** _args, long long _inner) {\n'
            + "\n".join(decls)
            + "\nfor (long long _o = 0; _o < _outer; ++_o) {\n"
            f"_type_reduce _acc = (_type_reduce)({self.identity});\n"
            "for (long long _j = 0; _j < _inner; ++_j) {\n"
            + "\n".join(loads)
            + f"\n_type_reduce _mapped = (_type_reduce)({self.map_expr});\n_acc = REDUCE(_acc, _mapped);\n}}\n"
            "{ _type_reduce a = _acc;\n" + "\n".join(stores) + f"\n{self.post_map_expr};\n}}\n}}\n}}\n"
        )


_SIGNATURE = re.compile(r"__global__\s+void\s+(\w+)\s*\(([^)]*)\)")


class RawKernel:
    """cupy/_core/raw.pyx RawKernel: CUDA C source, launched as kernel(grid, block, args). A device array
    passes the address of its first element whatever its strides (cupy/cuda/function.pyx _pointer ->
    ndarray.get_pointer). The stand-in runs every thread of the grid in turn on the host (no shared memory,
    no __syncthreads)."""

    def __init__(self, code, name, options=(), backend="nvrtc", translate_cucomplex=False, **kwargs):
        self.code, self.name, self.options = code, name, options
        signatures = {m.group(1): m.group(2) for m in _SIGNATURE.finditer(code)}
        if name not in signatures:
            raise AttributeError(f"kernel {name} not found in the RawKernel source")
        self._param_types = [
            re.sub(r"\s*\b\w+\s*$", "", p.strip()) for p in signatures[name].split(",") if p.strip()
        ]

    def __call__(self, grid, block, args, *, shared_mem=0, stream=None):
        import cupy

        grid = tuple(grid) + (1,) * (3 - len(tuple(grid)))
        block = tuple(block) + (1,) * (3 - len(tuple(block)))
        if len(args) != len(self._param_types):
            raise TypeError(f"{self.name} takes {len(self._param_types)} arguments, {len(args)} given")
        buffers, keep = [], []
        for arg in args:
            if isinstance(arg, cupy.ndarray):
                cupy._check_device(arg)
                buffers.append(np.array(arg._data.ctypes.data, dtype=np.uintp))
                keep.append(arg._data)
            elif isinstance(arg, np.ndarray):
                if arg.size != 1:
                    raise TypeError(
                        f"You are trying to pass a numpy.ndarray of shape {arg.shape} as a kernel parameter. "
                        "Only numpy.ndarrays of size one can be passed by value. If you meant to pass a "
                        "pointer to __global__ memory, you need to pass a cupy.ndarray instead."
                    )
                buffers.append(np.array(arg.reshape(())))
            elif isinstance(arg, np.generic):
                buffers.append(np.array(arg))
            elif isinstance(arg, (bool, int, float)):
                buffers.append(
                    np.array(arg, dtype={bool: np.bool_, int: np.int64, float: np.float64}[type(arg)])
                )
            else:
                raise TypeError(f"Unsupported type {type(arg)}")
        library = compile_source(self._source(), self.name)
        _state.counters.launches += 1
        _state.launch(lambda: (keep, _run(library, "standin_raw", 0, buffers, grid + block)))

    def _source(self) -> str:
        call = ", ".join(f"*({t}*)_args[{k}]" for k, t in enumerate(self._param_types))
        return (
            f"{_PRELUDE}struct _standin_dim3 {{ unsigned int x, y, z; }};\n"
            "static _standin_dim3 threadIdx, blockIdx, blockDim, gridDim;\n"
            "#define __global__\n#define __syncthreads() ((void)0)\n"
            f"{self.code}\n"
            'extern "C" void standin_raw(long long, void** _args, long long gx, long long gy, long long gz,'
            " long long bx, long long by, long long bz) {\n"
            "gridDim = {(unsigned)gx, (unsigned)gy, (unsigned)gz}; blockDim = {(unsigned)bx, (unsigned)by, (unsigned)bz};\n"
            "for (unsigned z = 0; z < gz; ++z) for (unsigned y = 0; y < gy; ++y) for (unsigned x = 0; x < gx; ++x)\n"
            "for (unsigned tz = 0; tz < bz; ++tz) for (unsigned ty = 0; ty < by; ++ty) for (unsigned tx = 0; tx < bx; ++tx) {\n"
            f"blockIdx = {{x, y, z}}; threadIdx = {{tx, ty, tz}}; {self.name}({call});\n"
            "}\n}\n"
        )
