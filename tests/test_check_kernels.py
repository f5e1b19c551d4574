"""scripts/check_kernels.py: NVRTC compiles every kernel gpunn ships (no GPU needed), and catches a typo."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from gpunn.backend.kernels import KERNELS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_kernels.py"


@pytest.fixture(scope="module")
def check_kernels():
    spec = importlib.util.spec_from_file_location("check_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.load_nvrtc()
    except module.NvrtcMissing as exc:
        pytest.skip(str(exc))
    return module


@pytest.mark.slow  # NVRTC compiles every kernel twice
def test_every_shipped_kernel_compiles_for_sm80_and_sm90(check_kernels, capsys):
    # in-process, so a mutation tool sees which kernel-source code this test runs
    assert check_kernels.main() == 0, capsys.readouterr().err
    total = len(KERNELS) * 2 * 2
    assert f"{total}/{total} compiled" in capsys.readouterr().out


def test_a_typo_in_a_kernel_fails_the_check(check_kernels):
    sgd = KERNELS["flat_sgd"]
    broken = {"flat_sgd": dataclasses.replace(sgd, operation=sgd.operation.replace("grad", "grda"))}
    failures = check_kernels.check(broken)
    assert len(failures) == 4  # float32 and float64, sm_80 and sm_90
    assert all("gpunn_flat_sgd" in f and "grda" in f and "undefined" in f for f in failures)
