"""Can CUDA work here? Every reason it cannot, as a sentence that says what to do.

A driver that counts devices is not enough: CuPy compiles every elementwise kernel with NVRTC (which needs
the CUDA runtime headers) and multiplies matrices with cuBLAS, and CuPy 14 finds both on the system or in
its `ctk` extra. So the probe also compiles and runs one tiny kernel and one small matmul, once per device
and process, and names the missing piece when that fails. CuPy is imported only when the probe runs.
"""

from __future__ import annotations

import importlib

from gpunn.errors import DeviceUnavailableError

INSTALL_HINT = 'install CuPy for your CUDA version: pip install "gpunn[cuda12]" or "gpunn[cuda13]"'
# The extras pull cupy-cudaXXx[ctk]: NVRTC, cuBLAS and the runtime headers as NVIDIA wheels (CuPy 14).
CTK_HINT = (
    'reinstall with the CUDA libraries: pip install "gpunn[cuda12]" or "gpunn[cuda13]" (they bring '
    '"cupy-cuda12x[ctk]" / "cupy-cuda13x[ctk]"), or install the CUDA Toolkit and set CUDA_PATH'
)
# What a failed kernel or matmul says, and which part of the toolkit that means is missing.
_MISSING_PART = (
    (
        ("failed to find cuda headers", "cannot open source file", "vector_types.h", "cuda_fp16.h"),
        "the CUDA runtime headers NVRTC needs are missing",
    ),
    (("nvrtc",), "NVRTC (the CUDA runtime compiler) cannot be used"),
    (("cublas",), "cuBLAS cannot be used"),
)
_smoke_tested: dict[tuple[int, int], tuple[object, str | None]] = {}


def import_cupy():
    """Import CuPy or raise DeviceUnavailableError naming the extra to install."""
    try:
        return importlib.import_module("cupy")
    except ImportError as exc:
        raise DeviceUnavailableError(
            f"CUDA unavailable: CuPy is not installed ({exc}); {INSTALL_HINT}"
        ) from None


def device_count(cupy) -> int:
    """Number of CUDA devices, or DeviceUnavailableError when the driver/runtime cannot be used."""
    try:
        return int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError, missing libcudart, driver too old, ...
        raise DeviceUnavailableError(
            f"CUDA unavailable: the CUDA driver/runtime cannot be used ({type(exc).__name__}: {exc}); "
            "check `nvidia-smi` and that the CuPy extra matches the driver's CUDA version"
        ) from None


def _kernel_and_matmul(cupy, index: int) -> None:
    """Compile and run one ElementwiseKernel (NVRTC + headers) and one matmul (cuBLAS) on cuda:`index`."""
    with cupy.cuda.Device(index):
        add_one = cupy.ElementwiseKernel("T x", "T y", "y = x + (T)1", "gpunn_probe_add_one")
        ones = cupy.ones((2, 2), dtype="float32")
        total = cupy.asnumpy(add_one(ones)).sum() + cupy.asnumpy(cupy.matmul(ones, ones)).sum()
    if total != 16.0:  # 4 * 2 from the kernel, 4 * 2 from the matmul
        raise RuntimeError(f"a kernel and a 2x2 matmul computed {total} instead of 16")


def _failure_sentence(index: int, exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    lowered = text.lower()
    what = next((part for keys, part in _MISSING_PART if any(k in lowered for k in keys)), None)
    what = what or "a tiny kernel or matmul failed"
    first_line = text.splitlines()[0]  # never empty: text starts with the class name
    return f"CUDA unavailable: cuda:{index}: {what} ({first_line}); {CTK_HINT}"


def smoke_test(cupy, index: int) -> None:
    """Run the kernel+matmul test on cuda:`index` once per process; DeviceUnavailableError if it fails."""
    key = (id(cupy), index)
    cached = _smoke_tested.get(key)
    if cached is None or cached[0] is not cupy:  # the module is kept in the value, so its id stays unique
        try:
            _kernel_and_matmul(cupy, index)
            failure = None
        except Exception as exc:  # CompileException, CUBLASError, RuntimeError from a missing library, ...
            failure = _failure_sentence(index, exc)
        _smoke_tested[key] = cached = (cupy, failure)
    if cached[1] is not None:
        raise DeviceUnavailableError(cached[1])


def require_cuda(index: int):
    """Return the cupy module if cuda:`index` is usable, else raise DeviceUnavailableError."""
    cupy = import_cupy()
    count = device_count(cupy)
    if count == 0:
        raise DeviceUnavailableError("CUDA unavailable: the driver reports no CUDA device")
    if index >= count:
        raise DeviceUnavailableError(
            f"CUDA unavailable: cuda:{index} is out of range; this machine has {count} device(s): "
            f"cuda:0..cuda:{count - 1}"
        )
    smoke_test(cupy, index)
    return cupy


def cuda_status(index: int = 0) -> tuple[bool, str]:
    """(usable, reason) for cuda:`index`, never raising: used by `auto` and `gpunn info`."""
    try:
        cupy = require_cuda(index)
    except DeviceUnavailableError as exc:
        return False, str(exc).removeprefix("CUDA unavailable: ")
    return True, f"{device_count(cupy)} CUDA device(s) visible; a test kernel and matmul ran on cuda:{index}"


def visible_devices() -> int:
    """How many CUDA devices this process sees (0 when CUDA is unusable); never raises."""
    try:
        return device_count(import_cupy())
    except DeviceUnavailableError:
        return 0
