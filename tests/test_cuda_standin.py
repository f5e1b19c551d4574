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


# ---- issue 24 section 3: what CuPy 14.2 says, where the stand-in said otherwise ---------------------------
def test_a_numpy_0d_array_is_neither_a_ufunc_operand_nor_a_kernel_scalar(cp):
    """cupy/_core/_scalar.pyx CScalar.__init__ (line 344) takes Python and NumPy scalars only; comparisons
    turn a 0-d NumPy array into its Python scalar first (core.pyx __richcmp__ / __array_ufunc__)."""
    a = cp.asarray(np.array([1.0, 3.0], dtype=np.float32))
    zero_d = np.array(2.0, dtype=np.float32)
    for operation in (
        lambda: a + zero_d,
        lambda: zero_d * a,
        lambda: cp.add(a, zero_d),
        lambda: cp.maximum(a, zero_d),
    ):
        with pytest.raises(TypeError, match="Unsupported type"):
            operation()
    scale = cp.ElementwiseKernel("T x, T s", "T y", "y = x * s", "standin_scale_0d")
    with pytest.raises(TypeError, match="Unsupported type"):
        scale(a, zero_d)
    np.testing.assert_array_equal(cp.asnumpy(scale(a, np.float32(2.0))), [2.0, 6.0])  # a NumPy scalar is one
    np.testing.assert_array_equal(cp.asnumpy(a > zero_d), [False, True])


@pytest.fixture
def two(cp):
    if cp.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two devices")
    with cp.cuda.Device(1) as device:
        on_1 = cp.asarray(np.array([1.0, 2.0, 3.0]))
        device.synchronize()  # device 0's streams do not wait for device 1's: the upload must be done
    return on_1


def test_asarray_array_and_copy_bring_an_array_of_another_device_here(cp, two):
    """cupy/_core/core.pyx _array_from_cupy_ndarray: `src.copy(order=order)` when src is on another device;
    ndarray.copy copies to the current device from any device."""
    for moved in (cp.asarray(two), cp.array(two), cp.array(two, copy=False), two.copy()):
        assert moved.device.id == 0 and moved is not two
        np.testing.assert_array_equal(cp.asnumpy(moved), [1.0, 2.0, 3.0])
    here = cp.ones(2)
    assert cp.asarray(here) is here  # one of the current device passes through


def test_peer_access_is_enabled_with_a_warning_where_the_devices_have_it(standin, two, monkeypatch):
    """cupy/_core/_kernel.pyx _check_peer_access: refused without peer access, else enabled (cupy/cuda/device.pyx
    _enable_peer_access) with a PerformanceWarning, and the kernel runs on the current device."""
    cp = standin
    from cupy import _state
    from cupy._util import PerformanceWarning

    with pytest.raises(ValueError, match="Peer access is unavailable"):
        two + 1
    monkeypatch.setattr(_state, "peer_access", True)
    assert cp.cuda.runtime.deviceCanAccessPeer(0, 1) == 1
    with pytest.warns(PerformanceWarning, match="Peer access has been activated automatically"):
        result = two + 1
    assert result.device.id == 0
    np.testing.assert_array_equal(cp.asnumpy(result), [2.0, 3.0, 4.0])


def test_routines_that_read_back_inside_cupy_are_syncs(standin):
    """A boolean mask's count is read back (cupy/_core/_routines_indexing.pyx _prepare_mask_indexing_single,
    `n_true = int(mask_scanned[-1])`, line 802), in getitem and setitem alike; nanmax/nanmin read
    isnan(...).any() (cupy/_statistics/order.py lines 114 and 145); nonzero and its kin read the count
    (_ndarray_argwhere, line 123)."""
    cp, counters = standin, standin.counters
    x = cp.asarray(np.array([1.0, -2.0, 3.0]))
    mask = x > 0
    readers = (cp.nanmax, cp.nonzero, cp.argwhere, cp.flatnonzero, cp.where, lambda a: a.nonzero())
    for operation in (
        lambda: x[mask],
        lambda: x.__setitem__(mask, 0.0),
        *[lambda f=f: f(x) for f in readers],
    ):
        counters.reset()
        operation()
        assert counters.d2h_reads == 1, operation
    np.testing.assert_array_equal(cp.asnumpy(x), [0.0, -2.0, 0.0])


def test_an_integer_index_is_a_view(cp):
    """cupy/_core/_routines_indexing.pyx _view_getitem: an int index moves the data pointer (no kernel);
    x[i] of a 1-d array is a 0-d view whose writes land in x."""
    x = cp.asarray(np.arange(4.0))
    if standin_in_use():
        cp.counters.reset()
    element = x[2]
    assert element.shape == () and element.data.ptr == x.data.ptr + 2 * 8
    if standin_in_use():
        assert cp.counters.launches == 0
    element.fill(7.0)
    np.testing.assert_array_equal(cp.asnumpy(x), [0.0, 1.0, 7.0, 3.0])
    row = cp.asarray(np.arange(6.0).reshape(2, 3))[1]
    assert row.shape == (3,) and float(row[0]) == 3.0


def test_reductions_and_ufuncs_write_out(cp):
    """ndarray.sum/max/min/mean take out= (cupy/_core/_routines_math.pyx, _routines_statistics.pyx), and so do
    NumPy ufuncs on device arrays (core.pyx __array_ufunc__ unpacks out=(array,)); out is returned."""
    m = cp.asarray(np.arange(6.0).reshape(2, 3))
    for method, want in (
        ("sum", [3.0, 5.0, 7.0]),
        ("max", [3.0, 4.0, 5.0]),
        ("min", [0.0, 1.0, 2.0]),
        ("mean", [1.5, 2.5, 3.5]),
    ):
        out = cp.zeros(3)
        assert getattr(m, method)(axis=0, out=out) is out
        np.testing.assert_array_equal(cp.asnumpy(out), want)
    out = cp.zeros((2, 3))
    assert np.add(m, m, out=out) is out
    np.testing.assert_array_equal(cp.asnumpy(out), 2 * np.arange(6.0).reshape(2, 3))


def test_kernels_fuse_multiply_adds_as_nvrtc_does(cp):
    """NVRTC compiles with --fmad=true unless told otherwise, and CuPy does not tell it (cupy/cuda/compiler.py):
    x * y - 1 is one fused multiply-add, rounded once. x = 1 + 2^-30, y = 1 - 2^-30: x * y = 1 - 2^-60 exactly,
    which float64 rounds to 1 (then 0) unless fused (then -2^-60)."""
    fused = cp.ElementwiseKernel("float64 x, float64 y", "float64 z", "z = x * y - 1.0", "standin_fma")
    x, y = cp.asarray(np.array([1 + 2.0**-30])), cp.asarray(np.array([1 - 2.0**-30]))
    assert cp.asnumpy(fused(x, y))[0] == -(2.0**-60)


def test_raw_arrays_are_reached_through_their_strides(cp):
    """cupy/_core/include/cupy/carray.cuh CArray::operator[](ptrdiff_t) (line 438): a non-contiguous raw array
    at a linear index is its logical element, while &x[0] is its first element in memory; a 0-d raw array
    answers its one value at every index (the CArray<T, 0> specialisation, line 462). Nothing is copied, so
    a raw output that is a strided view is written where it lies."""
    m = cp.asarray(np.arange(6.0).reshape(2, 3))
    logical = cp.ElementwiseKernel("raw T x", "T y", "y = x[i]", "standin_raw_logical")
    physical = cp.ElementwiseKernel("raw T x", "T y", "const T* p = &x[0]; y = p[i]", "standin_raw_physical")
    np.testing.assert_array_equal(
        cp.asnumpy(logical(m.T, cp.empty(6))), np.arange(6.0).reshape(2, 3).T.ravel()
    )
    np.testing.assert_array_equal(cp.asnumpy(physical(m.T, cp.empty(6))), np.arange(6.0))
    constant = cp.asarray(np.array(2.5))
    np.testing.assert_array_equal(cp.asnumpy(logical(constant, cp.empty(4))), [2.5] * 4)
    scatter = cp.ElementwiseKernel("T v", "raw T y", "y[i] = v", "standin_raw_scatter")
    big = cp.zeros((3, 2))
    scatter(cp.asarray(np.array([1.0, 2.0, 3.0])), big[:, 1])
    np.testing.assert_array_equal(cp.asnumpy(big), [[0, 1], [0, 2], [0, 3]])


def test_like_arrays_keep_the_prototypes_layout(cp):
    """cupy/_creation/basic.py empty_like/zeros_like, order='K' (_new_like_order_and_strides): a transposed
    prototype gives a transposed (F-ordered) array, as NumPy's PyArray_NewLikeArray does."""
    m = cp.asarray(np.arange(6.0).reshape(2, 3)).T
    for made in (cp.empty_like(m), cp.zeros_like(m)):
        assert made.shape == (3, 2) and made.flags.f_contiguous and not made.flags.c_contiguous


def test_with_ump_asarray_uses_host_memory_in_place_and_array_copies(standin, monkeypatch):
    """cupy/_core/core.pyx: CUPY_ENABLE_UMP=1 (read once at import, line 121) lets asarray wrap a NumPy array
    without a copy (_try_skip_h2d_copy); array(copy=True) still copies."""
    cp = standin
    from cupy import _state

    monkeypatch.setattr(_state, "ump_enabled", True)
    host = np.array([1.0, 2.0])
    shared, copied = cp.asarray(host), cp.array(host, copy=True)
    host[0] = 9.0
    assert cp.asnumpy(shared)[0] == 9.0 and cp.asnumpy(copied)[0] == 1.0


def device_memory(a) -> np.ndarray:
    from cuda_array_memory import at_pointer

    return at_pointer(a).copy()


def test_launches_run_later_and_a_read_back_waits_for_them(standin):
    """cupy/cuda/stream.pyx: a launch returns before it runs; ndarray.get copies on the current stream and
    waits for it (core.pyx ndarray.get). Memory read behind CuPy's back before a synchronize is stale."""
    cp = standin
    x = cp.zeros(3)
    cp.cuda.Device().synchronize()
    x += 1
    x *= 5
    np.testing.assert_array_equal(device_memory(x), [0.0, 0.0, 0.0])  # queued, not run
    np.testing.assert_array_equal(cp.asnumpy(x), [5.0, 5.0, 5.0])  # the read-back ran the stream
    x += 1
    cp.cuda.Device().synchronize()
    np.testing.assert_array_equal(device_memory(x), [6.0, 6.0, 6.0])


def test_streams_are_ordered_only_by_events_and_the_default_streams_rules(standin):
    """Two non-blocking streams run independently unless one waits on an event recorded on the other
    (cudaStreamWaitEvent); a blocking stream's work and the legacy default stream's wait for each other."""
    cp = standin
    x = cp.zeros(4)
    cp.cuda.Device().synchronize()
    producer, consumer = cp.cuda.Stream(non_blocking=True), cp.cuda.Stream(non_blocking=True)
    with producer:
        x += 3
    with consumer:
        unordered = x * 2
    consumer.synchronize()
    np.testing.assert_array_equal(device_memory(unordered), [0.0] * 4)  # read x before the producer ran
    with consumer:
        consumer.wait_event(producer.record())
        ordered = x * 2
    consumer.synchronize()
    np.testing.assert_array_equal(device_memory(ordered), [6.0] * 4)
    blocking = cp.cuda.Stream()
    with blocking:
        x += 1
    after = x * 10  # the legacy default stream waits for the blocking stream's earlier work
    cp.cuda.Stream.null.synchronize()
    np.testing.assert_array_equal(device_memory(after), [40.0] * 4)
    event = blocking.record()
    assert event.done


def test_a_gather_by_indices_still_being_written_uses_them_when_it_runs(cp):
    """take() queued behind the launch that writes its indices reads them in stream order: the values when
    the gather runs, not the stale ones of when it was issued (which here point out of range)."""
    x = cp.asarray(np.array([10.0, 20.0, 30.0]))
    indices = cp.full(2, 10**9, dtype=cp.int64)
    cp.cuda.Device().synchronize()
    indices[...] = cp.asarray(np.array([2, 0]))
    np.testing.assert_array_equal(cp.asnumpy(cp.take(x, indices)), [30.0, 10.0])


def test_a_block_over_1024_threads_is_refused_at_the_launch_as_the_driver_does(cp):
    """linear_launch gives a block of min(block_size, size) threads (cupy/cuda/function.pyx); cuLaunchKernel
    refuses more than 1024 (CUDA_ERROR_INVALID_VALUE); 1024 and any block_size over one element launch."""
    double = cp.ElementwiseKernel("float32 x", "float32 y", "y = 2 * x", "standin_block")
    x = cp.arange(2048, dtype=cp.float32)
    np.testing.assert_array_equal(cp.asnumpy(double(x, block_size=1024)), 2 * np.arange(2048))
    with pytest.raises(cp.cuda.driver.CUDADriverError, match="CUDA_ERROR_INVALID_VALUE"):
        double(x, block_size=1025)
    one = cp.full((1,), 3, dtype=cp.float32)
    np.testing.assert_array_equal(cp.asnumpy(double(one, block_size=2048)), [6])  # a block of one thread
    with pytest.raises(ValueError, match="block_size must be greater than zero"):
        double(x, block_size=0)
