"""The exact sentences device selection gives: what was chosen and why, and why CUDA cannot work."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from gpunn.backend import (
    cuda_probe,
    parse_device,
    parse_dtype,
    requested_device,
    requested_dtype,
    select,
    selection,
)
from gpunn.backend.cuda_probe import cuda_status, require_cuda
from gpunn.errors import DeviceUnavailableError, InvalidDeviceError


def fake_cupy(monkeypatch, get_count):
    runtime = types.SimpleNamespace(getDeviceCount=get_count)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime)))


def test_cuda_status_sentences(monkeypatch):
    probed = []  # the kernel+matmul probe itself is tested with a CuPy stand-in in test_gpu_path_bugs.py
    monkeypatch.setattr(cuda_probe, "_kernel_and_matmul", lambda cupy, index: probed.append(index))
    monkeypatch.setattr(cuda_probe, "_smoke_tested", {})
    fake_cupy(monkeypatch, lambda: 1)
    assert cuda_status() == (True, "1 CUDA device(s) visible; a test kernel and matmul ran on cuda:0")
    fake_cupy(monkeypatch, lambda: 2)
    assert cuda_status(1) == (True, "2 CUDA device(s) visible; a test kernel and matmul ran on cuda:1")
    assert cuda_status(2) == (False, "cuda:2 is out of range; this machine has 2 device(s): cuda:0..cuda:1")
    fake_cupy(monkeypatch, lambda: 0)
    assert cuda_status() == (False, "the driver reports no CUDA device")
    assert probed == [0, 1]  # only a device that exists is probed


def test_a_broken_driver_is_named_with_the_fix(monkeypatch):
    def broken():
        raise RuntimeError("boom")

    fake_cupy(monkeypatch, broken)
    with pytest.raises(DeviceUnavailableError) as err:
        require_cuda(0)
    assert str(err.value) == (
        "CUDA unavailable: the CUDA driver/runtime cannot be used (RuntimeError: boom); "
        "check `nvidia-smi` and that the CuPy extra matches the driver's CUDA version"
    )


def test_selection_describes_where_the_choice_came_from(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert select("strict").describe() == "strict (from argument)"
    auto = select("auto").describe()
    assert auto.startswith("cpu (from argument; auto: chose cpu because CUDA is unusable: CuPy is not installed")


def test_parse_errors_list_the_valid_values(monkeypatch):
    with pytest.raises(InvalidDeviceError) as err:
        parse_device("gpu")
    assert str(err.value) == "invalid device 'gpu': valid values are cpu, cuda, cuda:N (N = 0, 1, ...), auto, strict"
    with pytest.raises(InvalidDeviceError) as err:
        parse_dtype("half", origin="--dtype")
    assert str(err.value) == "invalid --dtype 'half': valid values are float32, float64"
    with pytest.raises(InvalidDeviceError, match=r"^invalid dtype 'half'"):
        parse_dtype("half")
    assert parse_dtype(np.dtype("float64")) == "float64"  # a dtype object by its name
    monkeypatch.delenv("GPUNN_DTYPE", raising=False)
    assert requested_dtype() == "float32" and requested_dtype("FLOAT64") == "float64"


def test_bad_environment_values_are_named_by_their_variable(monkeypatch):
    monkeypatch.setenv("GPUNN_DEVICE", "cdua")
    with pytest.raises(InvalidDeviceError) as err:
        requested_device()
    assert str(err.value) == (
        "invalid GPUNN_DEVICE 'cdua': valid values are cpu, cuda, cuda:N (N = 0, 1, ...), auto, strict"
    )
    monkeypatch.setenv("GPUNN_DTYPE", "half")
    with pytest.raises(InvalidDeviceError) as err:
        requested_dtype()
    assert str(err.value) == "invalid GPUNN_DTYPE 'half': valid values are float32, float64"


def test_auto_takes_a_bare_cuda_when_cuda0_passes_the_probe(monkeypatch):
    monkeypatch.setattr(cuda_probe, "cuda_status", lambda index=0: (index == 0, f"probe of cuda:{index}"))
    monkeypatch.setattr(
        selection, "_backend_for", lambda spec, dtype: types.SimpleNamespace(device=str(spec))
    )
    chosen = select("auto")
    assert chosen.backend.device == "cuda:0"
    assert chosen.describe() == "cuda:0 (from argument; auto: chose cuda (probe of cuda:0))"
