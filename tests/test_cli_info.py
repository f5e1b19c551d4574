"""`gpunn info`: exit 0 with the backends listed; a bad GPUNN_DEVICE gives one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
import types

from gpunn.backend import availability
from gpunn.backend.cuda_probe import cuda_status


def run_cli(*args, env=None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gpunn", *args], capture_output=True, text=True, env=full_env
    )


def test_info_lists_backends_and_choice():
    result = run_cli("info", env={"GPUNN_DEVICE": "strict"})
    assert result.returncode == 0, result.stderr
    assert "cpu     available" in result.stdout
    assert "strict  available" in result.stdout
    cuda_ok, cuda_why = cuda_status(0)  # the cuda line states the probe's verdict and its reason
    assert f"  cuda    {'available' if cuda_ok else 'unavailable'} ({cuda_why})" in result.stdout.splitlines()
    assert "device now: strict (from GPUNN_DEVICE)" in result.stdout


def test_info_with_bad_device_prints_one_line_and_exits_2():
    result = run_cli("info", env={"GPUNN_DEVICE": "cdua"})
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cdua" in lines[0] and "cuda:N" in lines[0]
    assert "Traceback" not in result.stderr


# ---- the backend half of `gpunn info`, in process (availability.py) --------------------------------------
def probe_passing_on(*usable_indices):
    """A cuda_status stand-in whose reason names the device it was asked about."""
    return lambda index=0: (index in usable_indices, f"probe of cuda:{index}")


def test_device_lines_state_each_kind_and_why(monkeypatch):
    monkeypatch.setattr(availability, "strict_status", lambda: (True, "array-api-strict 9.9"))
    monkeypatch.setattr(availability, "cuda_status", probe_passing_on(0))
    monkeypatch.setattr(availability, "cuda_details", lambda: ["CuPy 14.0.0", "cuda:0: Some GPU, 80.0 GiB"])
    assert availability.device_lines() == [
        "  cpu     available (NumPy)",
        "  strict  available (array-api-strict 9.9)",
        "  cuda    available (probe of cuda:0)",
        "    CuPy 14.0.0",
        "    cuda:0: Some GPU, 80.0 GiB",
    ]
    monkeypatch.setattr(availability, "strict_status", lambda: (False, "not installed"))
    monkeypatch.setattr(availability, "cuda_status", probe_passing_on())
    monkeypatch.setattr(availability, "cuda_details", lambda: [])
    assert availability.device_lines()[1:] == [
        "  strict  unavailable (not installed)",
        "  cuda    unavailable (probe of cuda:0)",
    ]


def test_nccl_is_asked_about_only_when_cuda0_works(monkeypatch):
    from gpunn.backend import collectives

    monkeypatch.setattr(collectives, "nccl_available", lambda: (True, "NCCL through CuPy"))
    monkeypatch.setattr(availability, "cuda_status", probe_passing_on(0))
    assert availability.collective_line() == "NCCL available (NCCL through CuPy)"
    monkeypatch.setattr(availability, "cuda_status", probe_passing_on(1))  # a working cuda:1 does not count
    assert availability.collective_line() == "NCCL unavailable (needs CUDA)"


def fake_cupy_with_gpus(names_and_bytes):
    props = [{"name": name, "totalGlobalMem": size} for name, size in names_and_bytes]
    runtime = types.SimpleNamespace(
        runtimeGetVersion=lambda: 13000,
        driverGetVersion=lambda: 13020,
        getDeviceCount=lambda: len(props),
        getDeviceProperties=props.__getitem__,
    )
    return types.SimpleNamespace(__version__="14.0.1", cuda=types.SimpleNamespace(runtime=runtime))


def test_cuda_details_name_every_gpu_and_its_memory_in_gib(monkeypatch):
    # CuPy returns the name as bytes or str depending on the version; memory is in bytes
    gpus = [(b"NVIDIA H100 80GB HBM3", 80 * 2**30), ("NVIDIA A2", 3 * 2**29)]
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy_with_gpus(gpus))
    monkeypatch.setattr(availability, "cuda_status", probe_passing_on(0))
    assert availability.cuda_details() == [
        "CuPy 14.0.1, CUDA runtime 13000, driver 13020",
        "cuda:0: NVIDIA H100 80GB HBM3, 80.0 GiB",
        "cuda:1: NVIDIA A2, 1.5 GiB",
    ]


def test_cuda_details_are_empty_without_importing_cupy_when_cuda0_is_unusable(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # importing it would raise ImportError
    monkeypatch.setattr(availability, "cuda_status", probe_passing_on(1))
    assert availability.cuda_details() == []


def test_strict_status_names_the_version_or_the_install_command(monkeypatch):
    import array_api_strict

    assert availability.strict_status() == (True, f"array-api-strict {array_api_strict.__version__}")
    monkeypatch.setitem(sys.modules, "array_api_strict", None)
    assert availability.strict_status() == (
        False,
        'array-api-strict is not installed (pip install "gpunn[test]")',
    )
