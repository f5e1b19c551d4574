"""scripts/check_kernels.py: NVRTC compiles CuPy 14.2's own source for every call gpunn makes to its kernels
(no GPU needed), and fails on bugs that only CuPy's generated code exposes."""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
from gpu_proof import cupy_codegen

from gpunn.backend.kernels import KERNELS

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_kernels.py"


@pytest.fixture(scope="module")
def check_kernels():
    cupy_codegen.require_for_tests()
    spec = importlib.util.spec_from_file_location("check_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        module.load_nvrtc()
    except module.NvrtcMissing as exc:
        pytest.skip(str(exc))
    return module


def _with_body(name: str, old: str, new: str) -> dict:
    kernel = KERNELS[name]
    assert kernel.operation.count(old) == 1, old
    return {name: dataclasses.replace(kernel, operation=kernel.operation.replace(old, new))}


@pytest.mark.slow  # NVRTC compiles every kernel call twice
def test_every_shipped_kernel_call_compiles_for_sm80_and_sm90(check_kernels, capsys):
    # in-process, so a mutation tool sees which kernel-source code this test runs
    assert check_kernels.main() == 0, capsys.readouterr().err
    total = sum(len(k.calls) for k in KERNELS.values()) * 2 * 2
    assert f"{total}/{total} of CuPy 14.2.0's sources compiled" in capsys.readouterr().out


def test_a_typo_in_a_kernel_fails_the_check(check_kernels):
    failures = check_kernels.check(_with_body("flat_sgd", "lr * g", "lr * grda"))
    assert len(failures) == 4  # float32 and float64, sm_80 and sm_90
    assert all("gpunn_flat_sgd" in f and "grda" in f and "undefined" in f for f in failures)


def test_the_address_of_a_const_zero_dimensional_raw_input_fails(check_kernels):
    """CuPy's CArray<T, 0> gives a const 0-d array's element by value (carray.cuh), so &x[0] is no lvalue;
    the same line on a one-dimensional const raw input (labels) compiles."""
    last_thread = "            T loss = 0;\n"
    zero_d = _with_body(
        "softmax_xent_totals", last_thread, last_thread + "const double* old = &loss_sum_in[0]; (void)old;\n"
    )
    failures = check_kernels.check(zero_d)
    assert len(failures) == 4
    assert all("expression must be an lvalue" in f for f in failures)
    one_d = _with_body(
        "softmax_xent_totals", last_thread, last_thread + "const I* first = &labels[0]; (void)first;\n"
    )
    assert check_kernels.check(one_d) == []


def test_a_non_raw_parameter_indexed_as_an_array_fails(check_kernels):
    """A non-raw parameter is one element, bound by reference (`const T &loss = _raw_loss[_ind.get()]`)."""
    failures = check_kernels.check(_with_body("add_to_totals", "(double)loss", "(double)loss[0]"))
    assert len(failures) == 4
    assert all("gpunn_add_to_totals" in f and "pointer-to-object type" in f for f in failures)


def test_a_parameter_type_that_is_not_what_gpunn_passes_fails(check_kernels):
    """gpunn's labels are int64: a kernel declaring them int32 is refused by CuPy's type rules."""
    kernel = KERNELS["gather_batch"]
    narrowed = dataclasses.replace(
        kernel, in_params=kernel.in_params.replace("raw I labels", "raw int32 labels")
    )
    failures = check_kernels.check({"gather_batch": narrowed})
    assert len(failures) == 8  # two calls (small and large dataset)
    assert all(
        "CuPy refuses the call: TypeError: Type is mismatched. labels int64 int32" in f for f in failures
    )
