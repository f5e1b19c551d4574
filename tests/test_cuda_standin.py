"""CuPy's rules, as the stand-in enforces them. On a real GPU the same tests run against real CuPy
(except those about the stand-in's counters and peer-less devices), which keeps the stand-in honest."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import require_usable, standin_in_use

pytestmark = pytest.mark.gpu


@pytest.fixture
def cp():
    require_usable("cuda")
    import cupy

    cupy.cuda.Device(0).use()
    return cupy


@pytest.fixture
def standin(cp):
    if not standin_in_use():
        pytest.skip("a property of the stand-in (counters, devices without peer access)")
    return cp


def test_implicit_conversion_to_numpy_is_refused(cp):
    a = cp.arange(3)
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(a)
    with pytest.raises(TypeError):
        a + np.ones(3)  # a NumPy array is no device operand
    np.testing.assert_array_equal(cp.asnumpy(a), [0, 1, 2])


def test_an_array_of_another_device_is_refused(standin):
    cp = standin
    with cp.cuda.Device(1):
        on_1 = cp.ones(3)
    assert on_1.device.id == 1 and cp.cuda.Device().id == 0
    for operation in (lambda: on_1 + 1, lambda: cp.sum(on_1), lambda: cp.matmul(on_1, on_1)):
        with pytest.raises(ValueError, match=r"resides \(1\) is different from the current device \(0\)"):
            operation()
    assert on_1.reshape(3, 1).shape == (3, 1)  # a view launches nothing, so no device check
    with cp.cuda.Device(1):
        assert float(cp.sum(on_1)) == 3.0


def test_the_current_device_belongs_to_the_thread(cp):
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two devices")
    cp.cuda.Device(1).use()
    seen = []
    thread = threading.Thread(target=lambda: seen.append(cp.cuda.Device().id))
    thread.start()
    thread.join()
    with cp.cuda.Device(0):
        assert cp.cuda.Device().id == 0
    assert seen == [0] and cp.cuda.Device().id == 1
    cp.cuda.Device(0).use()


def test_elementwise_kernel_types_as_cupy_does(cp):
    scale = cp.ElementwiseKernel("T x, T s", "T y", "y = x * s", "standin_scale")
    x = cp.asarray(np.array([1.0, 3.0], dtype=np.float32))
    y = scale(x, 0.1)  # a Python float takes the type T got from the array
    assert y.dtype == np.float32
    assert cp.asnumpy(y).tobytes() == (np.array([1.0, 3.0], np.float32) * np.float32(0.1)).tobytes()
    with pytest.raises(TypeError, match="Type is mismatched"):
        scale(x, cp.asarray(np.array([2.0])))  # float64 array for the T already bound to float32
    fixed = cp.ElementwiseKernel("float32 x", "float32 y", "y = x", "standin_fixed")
    with pytest.raises(TypeError, match="Type is mismatched"):
        fixed(cp.asarray(np.array([1.0])))
    with pytest.raises(TypeError, match="Wrong number of arguments"):
        scale(x)
    for params in ("T x,", ", T x", " "):  # _kernel.pyx _get_param_info: only '' is an empty list
        with pytest.raises(Exception, match="Syntax error"):
            cp.ElementwiseKernel(params, "T y", "y = x", "standin_syntax")


def test_raw_parameters_as_cupy_has_them(cp):
    """cupy/_core/_kernel.pyx: raw arrays are not broadcast and set no loop size; a raw output keeps its own
    shape; with only raw arrays the size comes from size=; 'i' is the loop index, _ind.size() the loop size."""
    column_sums = cp.ElementwiseKernel(
        "raw T m, int64 rows",
        "raw T copy, T sums",
        "T t = 0; for (long long r = 0; r < rows; ++r) { t += m[r * _ind.size() + i]; copy[r * _ind.size() + i] = m[r * _ind.size() + i]; } sums = t",
        "standin_column_sums",
    )
    m = cp.asarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    copy, sums = cp.empty((2, 3), dtype=cp.float64), cp.empty((3,), dtype=cp.float64)
    column_sums(m, 2, copy, sums)  # loop size 3 from `sums`; the raw (2, 3) output is not "mismatched"
    np.testing.assert_array_equal(cp.asnumpy(sums), [3.0, 5.0, 7.0])
    np.testing.assert_array_equal(cp.asnumpy(copy), cp.asnumpy(m))
    with pytest.raises(ValueError, match="Loop size is undecided"):
        column_sums(m, 2)  # no non-raw array at all
    scatter = cp.ElementwiseKernel("T x", "raw T y", "y[i] = x", "standin_scatter")
    with pytest.raises(ValueError, match="Output array size is Undecided"):
        scatter(sums)  # a raw output cannot be allocated from the loop size
    total = cp.ElementwiseKernel(
        "raw T x, int64 n",
        "raw T out",
        "T t = 0; for (long long k = 0; k < n; ++k) t += x[k]; out[0] = t",
        "standin_total",
    )
    out = cp.empty((), dtype=cp.float64)
    total(m, 6, out, size=1)
    assert float(cp.asnumpy(out)) == 15.0
    with pytest.raises(ValueError, match="Loop size is undecided"):
        total(m, 6, out)
    with pytest.raises(ValueError, match="Can not use 'i' as a parameter name"):
        cp.ElementwiseKernel("T i", "T y", "y = i", "standin_bad_name")


def test_kernel_bodies_are_compiled_c(cp):
    divide = cp.ElementwiseKernel("int32 a, int32 b", "int32 c", "c = a / b", "standin_cdiv")
    a, b = cp.asarray(np.array([-7, 7], np.int32)), cp.asarray(np.array([2, 2], np.int32))
    np.testing.assert_array_equal(cp.asnumpy(divide(a, b)), [-3, 3])  # C truncates; NumPy // gives -4
    sum_sq = cp.ReductionKernel("T x", "T y", "x * x", "a + b", "y = a", "0", "standin_sum_sq")
    m = cp.asarray(np.arange(6, dtype=np.float64).reshape(2, 3))
    np.testing.assert_array_equal(cp.asnumpy(sum_sq(m, axis=1)), [5.0, 50.0])
    add_one = cp.RawKernel(
        r"""extern "C" __global__ void standin_add_one(const float* x, float* y, int n) {
            int i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i < n) y[i] = x[i] + 1.0f;
        }""",
        "standin_add_one",
    )
    x, y = cp.arange(5, dtype=cp.float32), cp.zeros(5, dtype=cp.float32)
    add_one((2,), (4,), (x, y, np.int32(5)))
    np.testing.assert_array_equal(cp.asnumpy(y), [1, 2, 3, 4, 5])


def test_a_probe_can_compile_a_kernel_and_multiply(cp):
    assert cp.cuda.runtime.getDeviceCount() >= 1
    double = cp.ElementwiseKernel("float32 x", "float32 y", "y = 2 * x", "standin_probe")
    a = cp.asarray(np.eye(2, dtype=np.float32))
    assert cp.asnumpy(double(a) @ a).tolist() == [[2, 0], [0, 2]]


def test_memory_pool_accounting(cp):
    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    used, total = pool.used_bytes(), pool.total_bytes()
    a = cp.zeros(100, dtype=cp.float64)  # 800 bytes: two 512-byte units
    assert pool.used_bytes() - used == 1024
    del a
    assert pool.used_bytes() == used and pool.total_bytes() == total + 1024  # cached, not returned
    pool.free_all_blocks()
    assert pool.total_bytes() == total


def test_counters_see_launches_syncs_and_uploads(standin):
    cp, counters = standin, standin.counters
    counters.reset()
    a = cp.asarray(np.ones(4))  # one host-to-device copy
    b = a * 2 + 1  # two kernels
    b.reshape(2, 2)  # a view: nothing
    assert float(cp.sum(b)) == 12.0  # one kernel, one device-to-host read
    assert counters.snapshot() == {"launches": 3, "syncs": 1, "d2h_reads": 1, "h2d_copies": 1}
