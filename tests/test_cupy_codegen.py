"""tests/gpu_proof/cupy_codegen.py: the source of each kernel call is CuPy 14.2's own, and the calls in
kernels.py's tables are the calls CupyBackend makes (recorded on the CuPy stand-in).

The expected text is CuPy's rules read in cupy/_core/_kernel.pyx (v14.2.0): _ArgInfo.get_c_type writes an
array as CArray<ctype, ndim, c_contiguous, index_32_bits> and the indexer as CIndexer<ndim, 32 bits>;
get_param_c_type makes inputs const; get_c_var_name names a non-raw array _raw_x; _reduced_view_core
collapses C-contiguous arrays to one dimension and keeps two when one of them is not contiguous; Indexer
and ndarray use 32 bits up to 2**31 (bytes for an array). The header is core.pyx's cupy_header_list.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import require_usable, standin_in_use
from gpu_proof import cupy_codegen
from gpu_proof.cupy_codegen import CupyRefused, generated_source

from gpunn.backend.kernels import KERNELS, Call

pytestmark = pytest.mark.usefixtures("cupy_real")

CUPY_HEADER = (
    "#include <cupy/complex.cuh>\n#include <cupy/carray.cuh>\n#include <cupy/atomics.cuh>\n"
    "#include <cupy/math_constants.h>\n"
)


@pytest.fixture(scope="module")
def cupy_real():
    cupy_codegen.require_for_tests()


def _signature(generated) -> str:
    code = generated.kernel_code
    return code[code.index('extern "C"') : code.index(") {") + 1]


def test_every_source_is_cupys_header_then_its_kernel_code():
    generated = generated_source("flat_sgd", "float32", KERNELS["flat_sgd"].calls[0])
    assert generated.header == CUPY_HEADER
    assert generated.source == CUPY_HEADER + generated.kernel_code
    source, options = generated  # unpacks as (source, options)
    assert source == generated.source and options == generated.options
    assert "typedef float T;\n" in generated.kernel_code
    assert "const T &grad = _raw_grad[_ind.get()];\nT &value = _raw_value[_ind.get()];\n" in source


def test_a_matmul_output_is_collapsed_to_one_dimension():
    """bias_relu writes into a 2-D C-contiguous array: CuPy reduces it to 1-D; the raw bias keeps its own."""
    generated = generated_source("bias_relu", "float64", KERNELS["bias_relu"].calls[0])
    assert _signature(generated) == (
        'extern "C" __global__ void gpunn_bias_relu(const CArray<double, 1, 1, 1> bias, '
        "const long long width, CArray<double, 1, 1, 1> _raw_z, CIndexer<1, 1> _ind)"
    )


def test_a_broadcast_operand_keeps_both_dimensions_and_is_not_contiguous():
    generated = generated_source("softmax_xent", "float32", KERNELS["softmax_xent"].calls[0])
    assert _signature(generated) == (
        'extern "C" __global__ void gpunn_softmax_xent(const CArray<float, 2, 1, 1> _raw_z, '
        "const CArray<float, 2, 0, 1> _raw_row_max, const CArray<float, 2, 0, 1> _raw_log_norm, "
        "const CArray<float, 2, 1, 1> _raw_y, const float m, CArray<float, 2, 1, 1> _raw_grad, "
        "CArray<float, 2, 1, 1> _raw_loss_term, CIndexer<2, 1> _ind)"
    )


def test_zero_dimensional_arrays_get_cupys_zero_dimensional_specialisation():
    generated = generated_source("add_to_totals", "float32", KERNELS["add_to_totals"].calls[0])
    assert _signature(generated) == (
        'extern "C" __global__ void gpunn_add_to_totals(const CArray<float, 0, 1, 1> _raw_loss, '
        "const CArray<long long, 0, 1, 1> _raw_correct, const double rows, "
        "CArray<double, 0, 1, 1> _raw_loss_sum, CArray<long long, 0, 1, 1> _raw_correct_sum, "
        "CIndexer<0, 1> _ind)"
    )


def test_images_past_2_gib_are_indexed_with_64_bits():
    small, large = (
        generated_source("gather_images", "float32", call) for call in KERNELS["gather_images"].calls
    )
    assert "const CArray<unsigned char, 2, 1, 1> images" in _signature(small)
    assert "const CArray<unsigned char, 2, 1, 0> images" in _signature(large)
    assert "CIndexer<1, 1> _ind" in _signature(large)  # the loop itself is one batch: 32 bits


def test_a_view_takes_its_32_bit_indexing_from_its_allocation():
    """core.pyx _ndarray_base._init: 32 bits when the allocation's bytes <= 2**31; _view copies the flag to
    every view. 100 floats (also every other one of 200) of an allocation past 2 GiB: 64 bits; of exactly
    2 GiB, or alone: 32 bits. A view larger than its allocation is refused."""

    def relu_of(x):
        return Call((x, ("float32", (100,))))

    views = [
        ("float32", (100,), (4,), 2**31 + 4),
        ("float32", (100,), (8,), 2**31 + 4),
        ("float32", (100,), None, 2**31),
        ("float32", (100,)),
        ("float32", (100,), (4,), 396),
    ]
    past, past_strided, at, alone, too_small = cupy_codegen.generate(
        [("relu", "float32", relu_of(x), "sm_80") for x in views]
    )
    assert "(const CArray<float, 1, 1, 0> _raw_x, CArray<float, 1, 1, 1> _raw_y" in _signature(past)
    assert "(const CArray<float, 1, 0, 0> _raw_x, CArray<float, 1, 1, 1> _raw_y" in _signature(past_strided)
    assert "(const CArray<float, 1, 1, 1> _raw_x" in _signature(at)
    assert "(const CArray<float, 1, 1, 1> _raw_x" in _signature(alone)
    assert isinstance(too_small, CupyRefused) and "does not fit in its allocation of 396" in str(too_small)


def test_the_views_are_those_cupy_launches():
    """After CuPy's broadcast and _reduce_dims: bias_relu's C-contiguous output collapsed to one dimension
    (its raw bias and scalar width as given); softmax_xent's (m, 1) statistics broadcast with a zero stride,
    every operand kept 2-d."""
    bias_relu = generated_source("bias_relu", "float64", KERNELS["bias_relu"].calls[0])
    assert bias_relu.views == (((128,), (8,)), None, ((64 * 128,), (8,)))
    assert bias_relu.loop_shape == (64 * 128,)
    softmax = generated_source("softmax_xent", "float32", KERNELS["softmax_xent"].calls[0])
    assert softmax.views[1] == ((64, 10), (4, 0)) and softmax.views[0] == ((64, 10), (40, 4))
    assert softmax.views[4] is None and softmax.loop_shape == (64, 10)


def test_options_are_cupys_for_the_architecture():
    for arch in cupy_codegen.ARCHITECTURES:
        options = generated_source("relu", "float32", KERNELS["relu"].calls[0], arch).options
        assert options[-3:] == ("-ftz=true", f"-arch={arch}", "--device-as-default-execution-space")
        assert "--std=c++17" in options
        include = cupy_codegen.cupy_real_dir() / "cupy" / "_core" / "include"
        assert f"-I{include}" in options
        assert f"-I{include}/cupy/_cccl/libcudacxx" in options


def test_cupy_refuses_a_call_whose_types_do_not_match():
    """CuPy's _decide_params_type: an array bound to `int64 width` must be int64; T takes one dtype."""
    width_as_array = Call((("float32", (4,)), ("float64", ()), ("float32", (4,))))
    with pytest.raises(CupyRefused, match="Type is mismatched. width float64 int64"):
        generated_source("bias_relu", "float32", width_as_array)
    two_dtypes_for_t = Call((("float64", (4,)), "int", ("float32", (4,))))
    with pytest.raises(CupyRefused, match="Type is mismatched. bias float64 float32 T"):
        generated_source("bias_relu", "float32", two_dtypes_for_t)


def test_without_the_unpacked_cupy_the_error_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv("GPUNN_CUPY_REAL", str(tmp_path))
    call = Call((("float32", (3,)),))
    with pytest.raises(
        cupy_codegen.CupyCodegenMissing,
        match='pip install --no-deps --target .cupy-real "cupy-cuda12x==14.2.0"',
    ):
        generated_source("relu", "float32", call)


def test_a_cupy_that_does_not_import_is_missing_not_broken(monkeypatch, tmp_path):
    """As under NumPy 1.26, which CuPy 14.2 refuses: the tests skip (or fail in CI) with the reason."""
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text('raise ImportError("CuPy needs NumPy >= 2.0")\n')
    monkeypatch.setenv("GPUNN_CUPY_REAL", str(tmp_path))
    with pytest.raises(cupy_codegen.CupyCodegenMissing, match="does not import .*CuPy needs NumPy >= 2.0"):
        generated_source("relu", "float32", KERNELS["relu"].calls[0])


# ---- the tables are the calls CupyBackend makes ---------------------------------------------------------


def _record_every_kernel_call(dtype: str) -> list:
    """(kernel name, Call) of every ElementwiseKernel call gpunn makes in short real runs on the stand-in:
    training with each optimizer (batch gather, fused layers, the totals loss, the updates, validation), a
    step with the one-hot and the counted loss, an unfused ReLU, and the primitives no gpunn code calls yet
    (the image gather, the epoch totals), with the arrays gpunn's own steps make."""
    from cupy import _kernels as standin

    from gpunn.backend import get_backend
    from gpunn.nn import SGD, Dense, ReLU, Sequential, SoftmaxCrossEntropy
    from gpunn.nn.step import train_step
    from gpunn.training import run as training

    recorded = []
    standin.recorded_calls = recorded
    try:
        for overrides in ({}, {"optimizer": "sgd", "momentum": 0.0}, {"optimizer": "adam"}):
            with tempfile.TemporaryDirectory() as out:
                training.train(
                    out=Path(out) / "run",
                    device="cuda",
                    dtype=dtype,
                    dataset="digits",
                    epochs=1,
                    batch_size=64,
                    verbose=False,
                    **overrides,
                )
        backend = get_backend("cuda", dtype)
        # the second ReLU follows a ReLU, not a Dense: it runs unfused (Sequential._stages)
        model = Sequential([Dense(64, 32), ReLU(), ReLU(), Dense(32, 10)], backend=backend)
        rng = np.random.default_rng(0)
        labels = backend.from_host(rng.integers(0, 10, size=64))
        x = backend.from_host(rng.random((64, 64)))
        train_step(model, SGD(0.1), x, labels)  # the one-hot loss
        train_step(model, SGD(0.1), x, labels, loss=SoftmaxCrossEntropy(), labels=labels)
        # the epoch totals of a loop that keeps its own (no caller in gpunn itself): a batch's 0-d results
        result = train_step(model, SGD(0.1), x, labels, labels=labels)
        backend.add_to_totals(backend.zeros((), "float64"), backend.zeros((), "int64"), *result[:2], 64)
        images = backend.from_host(rng.integers(0, 256, size=(300, 64), dtype=np.uint8))
        backend.gather_images(images, backend.from_host(rng.integers(0, 300, size=64)))
    finally:
        standin.recorded_calls = None
    return [(name.removeprefix("gpunn_"), Call(args, size)) for name, args, size in recorded]


def _past_2_gib(call: Call, dtype: str) -> bool:
    arrays = [a for a in call.args if not isinstance(a, str)]
    return any(math.prod(a[1]) * np.dtype(dtype if a[0] == "T" else a[0]).itemsize > 2**31 for a in arrays)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_tables_are_exactly_the_calls_cupy_backend_makes(dtype):
    """Every call CupyBackend makes generates the source of a call in its kernel's table, and every table
    call is made (except the large-dataset ones, there for CuPy's 64-bit indexing): the NVRTC check compiles
    what gpunn runs, and the tables cannot drift from the code."""
    require_usable("cuda")
    if not standin_in_use():
        pytest.skip("the calls are recorded through the CuPy stand-in (GPUNN_CUDA_STANDIN=1)")
    made = sorted(set(_record_every_kernel_call(dtype)), key=repr)
    assert {name for name, _ in made} == set(KERNELS)
    table = [(name, call) for name, kernel in KERNELS.items() for call in kernel.calls]
    answers = cupy_codegen.generate([(n, dtype, c, "sm_80") for n, c in made + table])
    refused = [a for a in answers if isinstance(a, CupyRefused)]
    assert not refused, refused
    made_sources = {(n, a.source) for (n, _), a in zip(made, answers, strict=False)}
    table_sources = {(n, a.source) for (n, _), a in zip(table, answers[len(made) :], strict=True)}
    unlisted = [
        (n, c) for (n, c), a in zip(made, answers, strict=False) if (n, a.source) not in table_sources
    ]
    assert not unlisted, f"calls missing from kernels.py's tables: {unlisted}"
    unmade = [
        (n, c)
        for (n, c), a in zip(table, answers[len(made) :], strict=True)
        if (n, a.source) not in made_sources and not _past_2_gib(c, dtype)
    ]
    assert not unmade, f"table calls CupyBackend never makes: {unmade}"
