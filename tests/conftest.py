"""Shared fixtures: the `backend` fixture runs a test on numpy, strict and (where usable) cuda."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpunn.backend import get_backend
from gpunn.backend.cuda_probe import cuda_status

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


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The folder with mnist/ and fashion-mnist/ (.ci/run sets GPUNN_TEST_DATA to ../shared/data)."""
    root = os.environ.get("GPUNN_TEST_DATA")
    if not root or not Path(root, "mnist").is_dir():
        pytest.skip("real MNIST files not available: set GPUNN_TEST_DATA to a folder holding mnist/")
    return Path(root)
