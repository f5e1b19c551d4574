"""The CUDA source CuPy 14.2 itself generates for a call of one of gpunn's ElementwiseKernels, and the NVRTC
options it compiles it with: the text scripts/check_kernels.py compiles and the CPU executor runs.

CuPy's code generation (cupy/_core/_kernel.pyx _get_elementwise_kernel_code, the headers compile_with_cache
prepends, the options of assemble_cupy_compiler_options and cupy/cuda/compiler.py) runs in a subprocess on
the real cupy-cuda12x wheel, unpacked out of the way of the CuPy stand-in (the test process has the stand-in
on its path): by default in .cupy-real at the repository root, else where GPUNN_CUPY_REAL says.

    pip install --no-deps --target .cupy-real "cupy-cuda12x==14.2.0" "cuda-pathfinder==1.*"

API: generated_source(kernel, dtype, call, arch) -> GeneratedSource, which unpacks as (source, options);
generate(requests) answers many with one subprocess. Results are cached for the process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from gpunn.backend.kernels import KERNELS, Call, ElementwiseSource

CUPY_VERSION = "14.2.0"
ARCHITECTURES = ("sm_80", "sm_90")  # A100 and H100
DTYPES = ("float32", "float64")  # the backend dtypes gpunn runs
ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("_cupy_generate.py")
INSTALL = f'pip install --no-deps --target .cupy-real "cupy-cuda12x=={CUPY_VERSION}" "cuda-pathfinder==1.*"'
WORKER_TIMEOUT_S = 300


class CupyCodegenMissing(Exception):
    """No unpacked CuPy 14.2 to generate the sources with."""


class CupyRefused(Exception):
    """CuPy refuses the call (argument count, types, shapes) with this message, as __call__ would raise it."""


class CupyLaunchesNothing(CupyRefused):
    """The call's loop is empty (a shape with a 0): ElementwiseKernel.__call__ returns before any kernel."""


@dataclass(frozen=True)
class GeneratedSource:
    """What CuPy hands NVRTC for one call on one architecture.

    source: the whole translation unit; it starts with `header`, the #include lines CuPy prepends to every
    kernel (compile_with_cache's _cupy_header: cupy/complex.cuh, carray.cuh, atomics.cuh, math_constants.h),
    and continues with `kernel_code` (_get_elementwise_kernel_code: typedefs, the __global__ function).
    options: CuPy's NVRTC options, in its order (CCCL and CuPy include paths, --std=c++17, the CUDA headers'
    include path, -ftz=true, -arch=sm_XX, --device-as-default-execution-space).
    views: each argument as the kernel gets it, inputs then outputs (any CuPy allocates included): an array's
    (shape, strides in bytes) after CuPy's broadcast and _reduce_dims, None for a scalar; loop_shape: the
    shape of the CIndexer, the last argument. What a launch of the source passes (the CPU executor's).
    """

    source: str
    options: tuple[str, ...]
    header: str
    views: tuple = ()
    loop_shape: tuple = ()

    def __iter__(self):
        return iter((self.source, self.options))

    @property
    def kernel_code(self) -> str:
        return self.source[len(self.header) :]

    @property
    def include_dirs(self) -> tuple[str, ...]:
        """The -I directories, in CuPy's order (CuPy's headers, its bundled CCCL, the CUDA headers)."""
        return tuple(o[2:] for o in self.options if o.startswith("-I"))


def cupy_real_dir() -> Path:
    return Path(os.environ.get("GPUNN_CUPY_REAL") or ROOT / ".cupy-real")


def require_cupy() -> Path:
    """The unpacked CuPy's directory, or CupyCodegenMissing saying how to get it."""
    where = cupy_real_dir()
    if not (where / "cupy" / "__init__.py").is_file():
        raise CupyCodegenMissing(f"no CuPy {CUPY_VERSION} unpacked in {where}: {INSTALL}")
    return where


def require_for_tests(more=()) -> None:
    """In a test: skip without the unpacked CuPy, saying how to get it; fail instead where
    GPUNN_REQUIRE_CUPY_CODEGEN=1 (CI), so a missing install cannot pass as skipped checks.
    more: further (kernel, dtype, call) to generate in the same subprocess (the CPU executor's launches)."""
    import pytest

    try:
        require_cupy()
        # it imports and answers; and every shipped call is then generated once, in one subprocess
        generate(
            [
                (kernel, dtype, call, arch)
                for kernel, dtype, call in [*every_shipped_call(), *more]
                for arch in ARCHITECTURES
            ]
        )
    except CupyCodegenMissing as exc:
        if os.environ.get("GPUNN_REQUIRE_CUPY_CODEGEN") == "1":
            pytest.fail(f"GPUNN_REQUIRE_CUPY_CODEGEN=1: {exc}")
        pytest.skip(str(exc))


def _kernel(kernel: str | ElementwiseSource) -> ElementwiseSource:
    return KERNELS[kernel] if isinstance(kernel, str) else kernel


def _constructor_args(kernel: ElementwiseSource) -> list:
    """What kernel.build passes cupy.ElementwiseKernel (so the worker builds the kernel gpunn builds)."""

    class Recorder:
        @staticmethod
        def ElementwiseKernel(*args, **kwargs):  # noqa: N802 (CuPy's name)
            if kwargs:
                raise ValueError(f"{kernel.name}: keyword arguments to ElementwiseKernel are not forwarded")
            return list(args)

    return kernel.build(Recorder)


def _resolved(call: Call, dtype: str) -> tuple:
    """The call's arguments with 'T' read as `dtype`, in the worker's JSON form: a scalar's type, or an
    array's [dtype, shape, strides or None, allocation bytes or None]."""

    def one(arg):
        if isinstance(arg, str):
            return dtype if arg == "T" else arg
        kind, shape, strides, allocation = (*arg, None, None)[:4]
        strides = None if strides is None else list(strides)
        return [dtype if kind == "T" else kind, list(shape), strides, allocation]

    return tuple(one(a) for a in call.args)


_cache: dict[tuple, GeneratedSource | CupyRefused] = {}


def _key(kernel: ElementwiseSource, dtype: str, call: Call, arch: str) -> tuple:
    args = json.dumps(_resolved(call, dtype))
    return (str(cupy_real_dir()), tuple(_constructor_args(kernel)), args, call.size, arch)


def generate(requests) -> list[GeneratedSource | CupyRefused]:
    """[(kernel, dtype, call, arch), ...] -> one answer each (a CupyRefused where CuPy refuses the call),
    generating every uncached one, for every architecture of ARCHITECTURES as well, in one subprocess."""
    requests = [(_kernel(k), d, c, a) for k, d, c, a in requests]
    missing = {}
    for kernel, dtype, call, arch in requests:
        key = _key(kernel, dtype, call, arch)
        if key not in _cache:
            missing.setdefault(key[:4], (kernel, dtype, call, set()))[3].add(arch)
    if missing:
        _run_worker(list(missing.values()))
    return [_cache[_key(*r)] for r in requests]


def generated_source(kernel: str | ElementwiseSource, dtype: str, call: Call, arch: str = "sm_80"):
    """CuPy 14.2's translation unit and NVRTC options for `kernel` (a name in KERNELS, or a source) called
    as `call` with the backend dtype `dtype`, on a GPU of architecture `arch`. Raises CupyRefused where CuPy
    would refuse the call, CupyCodegenMissing without the unpacked CuPy."""
    (answer,) = generate([(kernel, dtype, call, arch)])
    if isinstance(answer, CupyRefused):
        raise answer
    return answer


def _run_worker(jobs) -> None:
    where = require_cupy()
    requests = [
        {
            "kernel": _constructor_args(kernel),
            "args": _resolved(call, dtype),
            "size": call.size,
            "archs": sorted({a.removeprefix("sm_") for a in archs | set(ARCHITECTURES)}),
        }
        for kernel, dtype, call, archs in jobs
    ]
    env = {**os.environ, "PYTHONPATH": str(where)}  # only the real CuPy: never the stand-in, never gpunn
    try:
        done = subprocess.run(
            [sys.executable, str(WORKER), CUPY_VERSION],
            input=json.dumps(requests),
            capture_output=True,
            text=True,
            env=env,
            timeout=WORKER_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"CuPy's code generation did not answer within {WORKER_TIMEOUT_S} s") from None
    try:
        reply = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(
            f"CuPy's code generation failed (exit {done.returncode}):\n{done.stderr}"
        ) from None
    if "fatal" in reply:
        raise CupyCodegenMissing(f"{reply['fatal']} (in {where}): {INSTALL}")
    for (kernel, dtype, call, _), request, answer in zip(jobs, requests, reply["answers"], strict=True):
        for arch in request["archs"]:
            key = _key(kernel, dtype, call, f"sm_{arch}")
            if "error" in answer:
                refusal = CupyLaunchesNothing if answer.get("empty") else CupyRefused
                _cache[key] = refusal(f"{kernel.name} ({dtype}): CuPy refuses the call: {answer['error']}")
            else:
                _cache[key] = GeneratedSource(
                    answer["source"],
                    tuple(answer["options"][arch]),
                    answer["header"],
                    tuple(None if v is None else (tuple(v[0]), tuple(v[1])) for v in answer["views"]),
                    tuple(answer["loop"]),
                )


def every_shipped_call(kernels=None, dtypes=DTYPES):
    """(kernel, dtype, call) for every call in the kernels' tables (KERNELS'), for each backend dtype."""
    kernels = KERNELS if kernels is None else kernels
    return [(kernel, dtype, call) for kernel in kernels.values() for dtype in dtypes for call in kernel.calls]
