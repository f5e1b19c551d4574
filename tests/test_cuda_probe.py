"""gpunn/backend/cuda_probe.py: the kernel+matmul smoke test, its cache and the sentences it gives.

The probe itself runs here on the CuPy stand-in (GPUNN_CUDA_STANDIN=1, `gpu` marker), which parses the
parameter lists and compiles the body as CuPy does: a stand-in whose kernel or matmul computes a wrong answer
must make the probe refuse CUDA, naming the sum it got. The sentences and the cache are checked with a
recording probe, on any machine. tests/test_gpu_path_bugs.py covers the missing-toolkit sentences.
"""

from __future__ import annotations

import sys
import types

import pytest

from gpunn.backend import cuda_probe
from gpunn.backend.cuda_probe import CTK_HINT, cuda_status, require_cuda, smoke_test, visible_devices
from gpunn.errors import DeviceUnavailableError


def install_cupy(monkeypatch, devices: int) -> types.ModuleType:
    """A `cupy` whose driver reports `devices` (the kernel+matmul probe is replaced where needed)."""
    module = types.ModuleType("cupy")
    module.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: devices))
    monkeypatch.setitem(sys.modules, "cupy", module)
    monkeypatch.setattr(cuda_probe, "_smoke_tested", {})
    return module


def failing_probe(monkeypatch, exc: Exception) -> None:
    def probe(cupy, index):
        raise exc

    monkeypatch.setattr(cuda_probe, "_kernel_and_matmul", probe)


def test_visible_devices_counts_and_never_raises(monkeypatch):
    install_cupy(monkeypatch, devices=3)
    assert visible_devices() == 3
    monkeypatch.setitem(sys.modules, "cupy", None)  # CuPy not installed
    assert visible_devices() == 0

    def broken():
        raise RuntimeError("cudaErrorInsufficientDriver")

    install_cupy(monkeypatch, devices=0).cuda.runtime.getDeviceCount = broken
    assert visible_devices() == 0


def test_an_unknown_failure_is_named_with_its_first_line_and_the_fix(monkeypatch):
    install_cupy(monkeypatch, devices=2)
    failing_probe(monkeypatch, ValueError("illegal memory access\nsecond line of a long log"))
    why = "a tiny kernel or matmul failed (ValueError: illegal memory access); " + CTK_HINT
    assert cuda_status(1) == (False, f"cuda:1: {why}")
    with pytest.raises(DeviceUnavailableError) as err:
        require_cuda(0)
    assert str(err.value) == f"CUDA unavailable: cuda:0: {why}"


def test_a_message_naming_several_parts_names_the_first_in_the_table(monkeypatch):
    # NVRTC failing because a header is missing is the headers' fault, not NVRTC's
    install_cupy(monkeypatch, devices=1)
    failing_probe(monkeypatch, RuntimeError('nvrtc: cannot open source file "cuda_fp16.h"'))
    assert cuda_status(0)[1].startswith(
        "cuda:0: the CUDA runtime headers NVRTC needs are missing (RuntimeError"
    )


def test_the_cache_keeps_each_module_and_device_apart(monkeypatch):
    """Once per device and per CuPy module: a second module does not evict the first one's verdict."""
    probed = []

    def probe(cupy, index):
        probed.append((cupy.__name__, index))
        if cupy.__name__ == "broken":
            raise RuntimeError("CUBLAS_STATUS_NOT_INITIALIZED")

    monkeypatch.setattr(cuda_probe, "_kernel_and_matmul", probe)
    monkeypatch.setattr(cuda_probe, "_smoke_tested", {})
    good, broken = types.ModuleType("good"), types.ModuleType("broken")
    for _ in range(2):
        smoke_test(good, 0)
        with pytest.raises(DeviceUnavailableError, match=r"^CUDA unavailable: cuda:1: cuBLAS cannot be used"):
            smoke_test(broken, 1)
        smoke_test(good, 1)
    assert probed == [("good", 0), ("broken", 1), ("good", 1)]


# ---- the probe itself, on the CuPy stand-in ---------------------------------------------------------------
@pytest.fixture
def standin(monkeypatch):
    cupy = pytest.importorskip("cupy", reason="drives the CuPy stand-in (GPUNN_CUDA_STANDIN=1)")
    if not getattr(cupy, "STANDIN", False):
        pytest.skip("drives the CuPy stand-in (GPUNN_CUDA_STANDIN=1), whose kernels can be made to lie")
    monkeypatch.setattr(cuda_probe, "_smoke_tested", {})  # probe afresh, whatever ran before
    return cupy


@pytest.mark.gpu
def test_the_probe_compiles_its_kernel_and_multiplies_in_float32_on_the_device(standin, monkeypatch):
    cupy, seen = standin, []
    matmul = cupy.matmul

    def spy(a, b):
        seen.append((a.dtype.name, b.dtype.name, cupy.cuda.Device().id))
        return matmul(a, b)

    monkeypatch.setattr(cupy, "matmul", spy)
    count = cupy.cuda.runtime.getDeviceCount()
    if count < 2:
        pytest.skip("needs two devices (the stand-in has two unless GPUNN_STANDIN_DEVICES says otherwise)")
    assert cuda_status(1) == (True, f"{count} CUDA device(s) visible; a test kernel and matmul ran on cuda:1")
    assert seen == [("float32", "float32", 1)]  # the dtype gpunn trains in by default, on the device asked


@pytest.mark.gpu
def test_a_wrong_matmul_makes_the_probe_refuse_cuda(standin, monkeypatch):
    matmul = standin.matmul
    monkeypatch.setattr(standin, "matmul", lambda a, b: matmul(a, b) * 2)  # 2x2 of 4s: sums to 16, not 8
    with pytest.raises(DeviceUnavailableError) as err:
        require_cuda(0)
    assert str(err.value) == (
        "CUDA unavailable: cuda:0: a tiny kernel or matmul failed "
        f"(RuntimeError: a kernel and a 2x2 matmul computed 24.0 instead of 16); {CTK_HINT}"
    )


@pytest.mark.gpu
def test_a_wrong_kernel_makes_the_probe_refuse_cuda(standin, monkeypatch):
    kernel = standin.ElementwiseKernel

    def adds_two(in_params, out_params, operation, name):
        return kernel(in_params, out_params, operation.replace("(T)1", "(T)2"), name)

    monkeypatch.setattr(standin, "ElementwiseKernel", adds_two)
    usable, why = cuda_status(0)
    assert not usable
    assert why.startswith(
        "cuda:0: a tiny kernel or matmul failed (RuntimeError: a kernel and a 2x2 matmul "
        "computed 20.0 instead of 16)"
    )


@pytest.mark.gpu
def test_a_kernel_that_does_not_compile_is_named(standin, monkeypatch):
    kernel = standin.ElementwiseKernel
    monkeypatch.setattr(standin, "ElementwiseKernel", lambda i, o, op, name: kernel(i, o, op + " +", name))
    usable, why = cuda_status(0)
    assert not usable and why.startswith("cuda:0: a tiny kernel or matmul failed (CompileException")
    assert "\n" not in why  # the first line of the compiler log, not all of it
