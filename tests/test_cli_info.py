"""`gpunn info`: exit 0 with the backends listed; a bad GPUNN_DEVICE gives one line and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys

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
