"""gpunn/backend/kernels.py: the kernel registry and the CUDA source CuPy would generate for each kernel.

The rules stated here are CuPy's (cupy/_core/_kernel.pyx): ParameterInfo and _get_param_info for parameter
lists; _get_kernel_params, _ArgInfo.get_param_c_type / get_c_var_name and _get_elementwise_kernel_code for
the translation unit. scripts/check_kernels.py compiles that unit with NVRTC (tests/test_check_kernels.py);
these tests pin what NVRTC would accept either way (const inputs, names, binding by reference).
"""

from __future__ import annotations

import types

import pytest

from gpunn.backend import kernels
from gpunn.backend.kernels import KERNELS, ElementwiseSource, Param, cuda_source, parse_params


def test_parse_params_reads_cupys_parameter_lists():
    assert parse_params("raw T grad, bool flag") == [Param(True, "T", "grad"), Param(False, "bool", "flag")]
    assert parse_params("  raw   raw U   images ") == [Param(True, "U", "images")]
    # only the words before the last two are keywords: a parameter may be named `raw`
    assert parse_params("T raw") == [Param(False, "T", "raw")]
    assert parse_params("") == []  # CuPy: an empty string is the only empty list
    assert [p.is_placeholder for p in parse_params("T a, int64 b, U c")] == [True, False, True]


@pytest.mark.parametrize(
    ("params", "entry"),
    [
        ("T", "T"),  # no name
        ("T x,", ""),  # CuPy: Syntax error (the empty entry after the comma)
        (", T x", ""),
        (" ", ""),  # CuPy strips, then meets one empty entry
        ("raw bogus T x", "raw bogus T x"),  # CuPy: Unknown keyword "bogus"
        ("const T x", "const T x"),
    ],
)
def test_parse_params_refuses_what_cupy_refuses(params, entry):
    with pytest.raises(ValueError) as err:
        parse_params(params)
    assert str(err.value) == f"syntax error in CuPy parameter {entry!r} of {params!r}"


EVERY_KIND = ElementwiseSource(
    "gpunn_every_kind",
    "T x, raw U w, int64 n",
    "T y, raw T z",
    "y = x + w[i] * n;\nz[i] = y",
    types={"U": "uint8"},
    scalars=frozenset({"n"}),
)


def test_cuda_source_declares_each_parameter_as_cupy_does():
    """Inputs are const, outputs are not (ParameterInfo(is_const) -> get_param_c_type); a non-raw array x
    arrives as _raw_x and is bound per element by reference; a raw array keeps its name; a scalar arrives by
    value; _ind (CIndexer) comes last; the body runs in CUPY_FOR after _ind.set(i), followed by ';'."""
    source = cuda_source(EVERY_KIND, "float64")
    assert source.startswith(kernels._CARRAY_PRELUDE)
    assert source[len(kernels._CARRAY_PRELUDE) :] == (
        "typedef double T;\n"
        "typedef unsigned char U;\n"
        'extern "C" __global__ void gpunn_every_kind('
        "const CArray<T, 1, 1, 0> _raw_x, const CArray<U, 1, 1, 0> w, const long long n, "
        "CArray<T, 1, 1, 0> _raw_y, CArray<T, 1, 1, 0> z, CIndexer<1, 0> _ind) {\n"
        "    CUPY_FOR(i, _ind.size()) {\n"
        "        _ind.set(i);\n"
        "        const T &x = _raw_x[_ind.get()];\n"
        "        T &y = _raw_y[_ind.get()];\n"
        "        y = x + w[i] * n;\nz[i] = y;\n"
        "    }\n"
        "}\n"
    )


def test_cuda_source_binds_t_to_the_backend_dtype():
    for dtype, c_type in (("float32", "float"), ("float64", "double")):
        source = cuda_source(KERNELS["flat_sgd"], dtype)
        assert f"typedef {c_type} T;\n" in source
        assert "const T lr, const T wd, CArray<T, 1, 1, 0> _raw_value" in source  # scalars by value
        assert "const T &grad = _raw_grad[_ind.get()];" in source and "T &value = _raw_value" in source


def test_every_shipped_kernel_declares_what_gpunn_passes():
    """A name in `scalars` must be a non-raw input (else cuda_source renders nothing for it), and every type
    placeholder of a parameter list is T or bound in `types` (else NVRTC meets an undeclared type)."""
    for kernel in KERNELS.values():
        inputs = parse_params(kernel.in_params)
        outputs = parse_params(kernel.out_params)
        assert kernel.scalars <= {p.name for p in inputs if not p.raw}, kernel.name
        placeholders = {p.type_name for p in inputs + outputs if p.is_placeholder}
        assert placeholders <= {"T", *kernel.types}, kernel.name
        assert set(kernel.types) <= placeholders, kernel.name
        assert all(t in kernels.C_TYPES for t in kernel.types.values()), kernel.name


def test_registry_names_are_the_kernel_names_without_prefix():
    assert all(key == source.name.removeprefix("gpunn_") for key, source in KERNELS.items())
    assert all(source.name.startswith("gpunn_") for source in KERNELS.values())


def test_build_passes_cupy_the_four_arguments():
    """cupy.ElementwiseKernel(in_params, out_params, operation, name): the name is the symbol profilers show
    and the one the NVRTC check compiled."""
    recorder = types.SimpleNamespace(ElementwiseKernel=lambda *args, **kwargs: (args, kwargs))
    assert EVERY_KIND.build(recorder) == (
        ("T x, raw U w, int64 n", "T y, raw T z", "y = x + w[i] * n;\nz[i] = y", "gpunn_every_kind"),
        {},
    )
