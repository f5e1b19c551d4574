"""Shared fixtures: the `backend` fixture runs a test on numpy, strict and (where usable) cuda.

GPUNN_CUDA_STANDIN=1 on a machine where CUDA is unusable puts the CuPy stand-in (tests/cuda_standin) on
the import path of this process and of every subprocess a test starts, so the `gpu` tests run the real
CupyBackend against it. With a usable GPU the variable changes nothing: real CuPy runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from gpunn.backend import get_backend
from gpunn.backend.cuda_probe import cuda_status

STANDIN_DIR = Path(__file__).parent / "cuda_standin"


def _install_standin_if_asked() -> str:
    """Returns what `cuda` means in this run (for the pytest header)."""
    if os.environ.get("GPUNN_CUDA_STANDIN") != "1":
        return "real CuPy where usable (GPUNN_CUDA_STANDIN=1 runs the gpu tests on the CuPy stand-in)"
    usable, why = cuda_status(0)
    if usable:
        return f"real CuPy ({why}); GPUNN_CUDA_STANDIN=1 ignored because a GPU is usable"
    for name in [m for m in sys.modules if m == "cupy" or m.startswith(("cupy.", "cupy_backends"))]:
        del sys.modules[name]
    sys.path.insert(0, str(STANDIN_DIR))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(STANDIN_DIR), os.environ.get("PYTHONPATH")]))
    return f"the CuPy STAND-IN from {STANDIN_DIR} (CUDA unusable here: {why})"


CUDA_MEANS = ""


def pytest_configure(config):
    # in a hook rather than at import: a failure inside gpunn's probe is then a reported pytest error
    # (mutation testing's forced-failure run checks exactly that), not an unloadable conftest
    global CUDA_MEANS
    CUDA_MEANS = _install_standin_if_asked()


def standin_in_use() -> bool:
    import cupy

    return getattr(cupy, "STANDIN", False)


def require_real_gpu(why: str) -> None:
    """Skip on the stand-in a test that only real hardware can answer (`why` says what it needs)."""
    require_usable("cuda")
    if standin_in_use():
        pytest.skip(f"needs a real GPU: {why}")


def pytest_report_header(config):
    return f"cuda: {CUDA_MEANS}"


DEVICES = ["cpu", "strict", pytest.param("cuda", marks=pytest.mark.gpu)]


def require_usable(device: str) -> None:
    """Skip (or, with GPUNN_REQUIRE_GPU=1, fail) when `device` is cuda and CUDA is unusable here."""
    if not device.startswith("cuda"):
        return
    usable, why = cuda_status(0)
    if not usable:
        message = f"CUDA unavailable: {why}"
        if os.environ.get("GPUNN_REQUIRE_GPU") == "1":
            pytest.fail(f"GPUNN_REQUIRE_GPU=1 but {message}")
        pytest.skip(message)


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    require_usable(request.param)
    return request.param


@pytest.fixture
def backend(device):
    """A float32 backend on each device."""
    return get_backend(device, "float32")


@pytest.fixture
def backend64(device):
    """A float64 backend on each device (gradient checks, exact parity)."""
    return get_backend(device, "float64")


def pytest_collection_modifyitems(config, items):
    """A test that reads the real MNIST files (the data_root fixture) is marked real_data: `pytest` leaves it
    out by default (pyproject's addopts), CI runs it."""
    for item in items:
        if "data_root" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_data)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder with mnist/ and fashion-mnist/ (.ci/run sets GPUNN_TEST_DATA to ../shared/data)."""
    root = os.environ.get("GPUNN_TEST_DATA")
    if not root or not Path(root, "mnist").is_dir():
        pytest.skip("real MNIST files not available: set GPUNN_TEST_DATA to a folder holding mnist/")
    return Path(root)
