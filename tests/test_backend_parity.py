"""Every primitive a backend overrides is compared with the reference version in gpunn/backend/base.py."""

from __future__ import annotations

import numpy as np
import pytest

from gpunn.backend import Backend, get_backend


class KeepDtype:
    """An input uploaded in its own dtype (the float64 epoch totals), not the backend's."""

    def __init__(self, array: np.ndarray):
        self.array = array


def _inputs(rng, rows=16, features=12, width=7, stored=20):
    """Arguments for each primitive, drawn on the host (float64, moved to the backend by the test): a batch
    of `rows` with `features` inputs into a layer of `width` outputs (also the classes), `stored` images."""
    x, w = rng.standard_normal((rows, features)), rng.standard_normal((features, width))
    b = rng.standard_normal(width)
    grad, y = rng.standard_normal((rows, width)), rng.standard_normal((rows, width))
    targets = np.eye(width)[rng.integers(0, width, rows)]
    value, velocity = rng.standard_normal((features, width)), rng.standard_normal((features, width))
    size = features * width
    flat, flat_grad = rng.standard_normal(size), rng.standard_normal(size)  # a model's flat buffers
    m, v = rng.standard_normal(size) * 0.1, rng.random(size) * 0.01
    labels = rng.integers(0, width, rows)
    images = rng.integers(0, 256, (stored, features)).astype(np.uint8)
    return {
        "linear": ((x, w, b), {}),
        "linear_backward": ((x, w, grad), {"need_input_grad": True}),
        "linear_backward[out]": (
            (x, w, grad, False),
            {"out": (np.zeros((features, width)), np.zeros(width))},
        ),
        "linear_backward[bias_grad]": (
            (x, w, grad, False),
            {"out": (np.zeros((features, width)), np.zeros(width)), "bias_grad": b},
        ),
        "column_sums": ((grad,), {}),
        "column_sums[out]": ((grad,), {"out": np.zeros(width)}),
        "relu": ((y,), {}),
        "linear_relu": ((x, w, b), {}),
        "relu_linear_backward": ((x, w, grad, y), {"need_input_grad": True}),
        "relu_linear_backward[out]": (
            (x, w, grad, y, False),
            {"out": (np.zeros((features, width)), np.zeros(width))},
        ),
        "relu_backward": ((grad, y), {}),
        "softmax": ((y * 5,), {}),
        "softmax_cross_entropy": ((y * 5, targets), {}),
        "softmax_cross_entropy_counted": ((y * 5, np.eye(width)[labels], labels), {}),
        "sgd_update": ((value, grad[:features], 0.1), {}),
        "sgd_update[decay]": ((flat, flat_grad, 0.1), {"weight_decay": 1e-3}),
        "adam_update": ((flat, flat_grad, m, v, 0.01, 0.9, 0.999, 1e-8, 3), {"weight_decay": 1e-3}),
        "scale": ((flat_grad, 0.25), {}),
        "add_to_totals": ((KeepDtype(np.array(1.5)), np.array(3), np.array(0.25), np.array(7), 128), {}),
        "gather_images": ((images, rng.integers(0, stored, rows)), {}),
        "gather_batch": ((images, rng.integers(0, width, stored), rng.integers(0, stored, rows)), {}),
        "softmax_cross_entropy_totals": ((y * 5, labels, KeepDtype(np.array(1.5)), np.array(3)), {}),
        # the column sums written into the output bias's gradient view (the reference returns a new array)
        "softmax_cross_entropy_totals[out]": (
            (y * 5, labels, KeepDtype(np.array(1.5)), np.array(3)),
            {"column_sums_out": np.zeros(width)},
        ),
        # labels outside [0, classes): a zero target row, never correct (and no read out of bounds)
        "softmax_cross_entropy_totals[out of range]": (
            (
                y * 5,
                np.where(labels % 3 == 0, np.where(labels > 3, width, -1), labels),
                KeepDtype(np.array(0.0)),
                np.array(0),
            ),
            {},
        ),
        "momentum_update": ((value, value * 0.3, velocity, 0.05, 0.9, True), {"weight_decay": 1e-3}),
        "momentum_update[plain]": ((value, value * 0.3, velocity, 0.05, 0.9, False), {}),
        "scale_images": ((rng.integers(0, 256, (rows, features)).astype(np.uint8),), {}),
    }


PRIMITIVES = [name for name in _inputs(np.random.default_rng(0))]


def _to_device(backend, value):
    if isinstance(value, tuple):
        return tuple(_to_device(backend, v) for v in value)
    if isinstance(value, KeepDtype):
        return backend.from_host(value.array, dtype=str(value.array.dtype))
    return backend.from_host(value) if isinstance(value, np.ndarray) else value


def _to_host(backend, value):
    if isinstance(value, tuple):
        return tuple(_to_host(backend, v) for v in value)
    return None if value is None else backend.to_host(value)


def _overridden(backend, name: str) -> bool:
    method = name.split("[")[0]
    return getattr(type(backend), method) is not getattr(Backend, method)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
@pytest.mark.parametrize("name", PRIMITIVES)
def test_override_matches_reference(device, name, dtype, rtol):
    backend = get_backend(device, dtype)
    if not _overridden(backend, name):
        pytest.skip(f"{type(backend).__name__} uses the reference {name}")
    _matches_reference(backend, name, *_inputs(np.random.default_rng(1))[name], rtol)


# More than 1024 rows, columns and elements: CuPy launches min(block_size, size) threads a block
# (cupy/cuda/function.pyx Function.linear_launch), so only a launch this wide shows a block the hardware refuses.
PAST_ONE_BLOCK = dict(rows=1100, features=3, width=1030)


@pytest.mark.parametrize("name", PRIMITIVES)
def test_override_matches_reference_past_one_block(device, name):
    """Every primitive on a batch of 1100 rows into 1030 columns (and 3090 parameters): each of its launches
    spans more threads than one block may hold, and it still computes what the reference does."""
    backend = get_backend(device, "float64")
    if not _overridden(backend, name):
        pytest.skip(f"{type(backend).__name__} uses the reference {name}")
    _matches_reference(backend, name, *_inputs(np.random.default_rng(2), **PAST_ONE_BLOCK)[name], 1e-10)


def _matches_reference(backend, name, args, kwargs, rtol):
    method = name.split("[")[0]
    fast_args = [_to_device(backend, a) for a in args]
    reference_args = [_to_device(backend, a) for a in args]  # fresh copies: overrides may work in place
    fast_kwargs = {k: _to_device(backend, v) for k, v in kwargs.items()}
    reference_kwargs = {k: _to_device(backend, v) for k, v in kwargs.items()}
    fast = _to_host(backend, getattr(backend, method)(*fast_args, **fast_kwargs))
    reference = _to_host(backend, getattr(Backend, method)(backend, *reference_args, **reference_kwargs))
    for got, want in zip(
        fast if isinstance(fast, tuple) else (fast,),
        reference if isinstance(reference, tuple) else (reference,),
        strict=True,
    ):
        if want is None:
            assert got is None
        else:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)


def test_numpy_backend_overrides_something():
    assert any(_overridden(get_backend("cpu"), name) for name in PRIMITIVES)


def test_the_loss_writes_its_column_sums_where_it_is_told(device):
    """softmax_cross_entropy_totals' column sums are grad's, added in row order (bit-equal in float32), and
    land in the view given as column_sums_out, which an in-place backend returns as it is: the output bias's
    gradient view, so the last Dense takes them without a copy; the rest of the buffer is not touched."""
    backend = get_backend(device, "float32")
    rng = np.random.default_rng(4)
    logits, labels = rng.standard_normal((37, 10)) * 5, rng.integers(0, 10, 37)
    flat = backend.zeros((25,))
    view = flat[5:15]
    totals = (backend.from_host(np.array(0.0), dtype="float64"), backend.from_host(np.array(0)))
    _, grad, _, _, _, sums = backend.softmax_cross_entropy_totals(
        backend.from_host(logits), backend.from_host(labels), *totals, column_sums_out=view
    )
    want = np.zeros(10, dtype=np.float32)
    for row in backend.to_host(grad):
        want += row
    np.testing.assert_array_equal(backend.to_host(sums), want)
    assert np.abs(want).max() > 1e-3  # rows' gradients do not cancel to nothing here
    if backend.writes_in_place:
        assert sums is view
        host = backend.to_host(flat)
        np.testing.assert_array_equal(host[5:15], want)
        assert not host[:5].any() and not host[15:].any()


SPARSE_PRIMITIVES = ("sparse_from_host", "sparse_linear", "sparse_weight_grad")


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_sparse_overrides_match_the_dense_reference(device, dtype, rtol):
    """The sparse first-layer products (scikit-learn estimators on sparse input) against the reference,
    which densifies the matrix: the same numbers, whether or not the backend keeps it sparse."""
    from scipy import sparse

    if device == "cuda":
        from conftest import require_real_gpu

        require_real_gpu("cupyx.scipy.sparse (cuSPARSE) is not part of the CuPy stand-in")
    backend = get_backend(device, dtype)
    rng = np.random.default_rng(2)
    x = sparse.random(16, 12, density=0.2, format="csr", random_state=3)
    w, b, grad = rng.standard_normal((12, 7)), rng.standard_normal(7), rng.standard_normal((16, 7))
    w, b, grad = (backend.from_host(a) for a in (w, b, grad))
    fast_x, reference_x = backend.sparse_from_host(x), Backend.sparse_from_host(backend, x)
    # a Dense takes the sparse path for exactly what sparse_from_host kept sparse (strict densifies)
    assert backend.is_sparse(fast_x) is (device != "strict") and not backend.is_sparse(reference_x)
    pairs = [
        (backend.sparse_linear(fast_x, w, b), Backend.sparse_linear(backend, reference_x, w, b)),
        (backend.sparse_weight_grad(fast_x, grad), Backend.sparse_weight_grad(backend, reference_x, grad)),
    ]
    for got, want in pairs:
        np.testing.assert_allclose(backend.to_host(got), backend.to_host(want), rtol=rtol, atol=rtol)


# Overrides that are plumbing (creating, converting, device bookkeeping), not arithmetic with a reference.
PLUMBING = {
    *("zeros", "arange", "astype", "concat", "is_integral", "is_sparse", "synchronize", "memory_info"),
    "allreduce",
}


def own_overrides(cls) -> set[str]:
    """Public Backend methods `cls` redefines (seen through CupyBackend's make-my-device-current wrapper)."""
    return {
        name
        for name, value in vars(cls).items()
        if callable(value)
        and not name.startswith("_")
        and hasattr(Backend, name)
        and getattr(value, "__wrapped__", value) is not getattr(Backend, name)
    }


def test_every_overridden_primitive_has_parity_inputs():
    from gpunn.backend.cupy_backend import CupyBackend  # the class only: CuPy is not imported
    from gpunn.backend.numpy_backend import NumpyBackend
    from gpunn.backend.strict_backend import StrictBackend

    compared = {name.split("[")[0] for name in PRIMITIVES} | set(SPARSE_PRIMITIVES)
    missing = {
        cls.__name__: sorted(own_overrides(cls) - PLUMBING - compared)
        for cls in (NumpyBackend, CupyBackend, StrictBackend)
    }
    assert missing == {"NumpyBackend": [], "CupyBackend": [], "StrictBackend": []}


# ---- issue 24 section 4: where the GPU differs (another device, another thread, another layout) ----------
def _strided(backend, value):
    """`value` on the backend with the same elements but not C-contiguous: a 2-D array transposed in memory
    (F-ordered), a 1-D array every other element of a buffer twice its size; 0-d arrays and scalars as they are."""
    if isinstance(value, tuple):
        return tuple(_strided(backend, v) for v in value)
    if isinstance(value, KeepDtype):
        return _to_device(backend, value)
    if not isinstance(value, np.ndarray) or value.ndim == 0:
        return _to_device(backend, value)
    if value.ndim == 2:
        return backend.from_host(np.ascontiguousarray(value.T), dtype=_dtype_of(backend, value)).T
    return backend.from_host(np.repeat(value, 2), dtype=_dtype_of(backend, value))[::2]


def _dtype_of(backend, value):
    return backend.dtype_name if value.dtype.kind == "f" else str(value.dtype)


@pytest.mark.parametrize("name", PRIMITIVES)
def test_override_matches_reference_with_non_contiguous_inputs(device, name):
    """Every primitive given views that are not C-contiguous (a caller's transposed or strided arrays, or
    out= views) computes what the reference computes from contiguous copies of the same values."""
    backend = get_backend(device, "float64")
    method = name.split("[")[0]
    args, kwargs = _inputs(np.random.default_rng(1))[name]
    strided_args = [_strided(backend, a) for a in args]
    strided_kwargs = {k: _strided(backend, v) for k, v in kwargs.items()}
    reference_args = [_to_device(backend, a) for a in args]
    reference_kwargs = {k: _to_device(backend, v) for k, v in kwargs.items()}
    got = _to_host(backend, getattr(backend, method)(*strided_args, **strided_kwargs))
    want = _to_host(backend, getattr(Backend, method)(backend, *reference_args, **reference_kwargs))
    for g, w in zip(
        got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,), strict=True
    ):
        if w is None:
            assert g is None
        else:
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def _on_device(backend, name, current=None):
    """The primitive `name` on `backend` with the parity inputs, called with device `current` made current
    after the uploads (as another backend or a fresh thread leaves it): (host results, devices of its arrays)."""
    method = name.split("[")[0]
    args, kwargs = _inputs(np.random.default_rng(1))[name]
    args = [_to_device(backend, a) for a in args]
    kwargs = {k: _to_device(backend, v) for k, v in kwargs.items()}
    if current is not None:
        current.use()
    result = getattr(backend, method)(*args, **kwargs)
    results = result if isinstance(result, tuple) else (result,)
    devices = {r.device.id for r in results if hasattr(r, "device")}
    return [None if r is None else backend.to_host(r) for r in results], devices


@pytest.mark.gpu
@pytest.mark.parametrize("where", ["cuda:0 current", "second thread"])
@pytest.mark.parametrize("name", PRIMITIVES)
def test_every_primitive_runs_on_cuda1(name, where):
    """cuda:1's backend computes what cuda:0's computes, bit for bit, with every result on device 1, while
    another thread or device 0 is current (a new thread starts on device 0). Peer access, where the devices
    have it, would let a cross-device operand through with a PerformanceWarning: that is an error here."""
    import threading
    import warnings

    from conftest import require_usable

    require_usable("cuda")
    import cupy
    from cupy._util import PerformanceWarning

    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two CUDA devices (the stand-in has two)")
    cupy.cuda.Device(0).use()
    want, _ = _on_device(get_backend("cuda:0", "float64"), name)
    on_1 = get_backend("cuda:1", "float64")  # cached: the thread uses the backend this thread made
    outcome = {}

    def work():
        try:
            outcome["result"] = _on_device(on_1, name, current=cupy.cuda.Device(0))
        except Exception as exc:  # handed to the test's thread
            outcome["error"] = exc

    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        if where == "second thread":
            thread = threading.Thread(target=work)
            thread.start()
            thread.join(timeout=120)
            assert not thread.is_alive()
        else:
            work()
    cupy.cuda.Device(0).use()
    assert "error" not in outcome, outcome.get("error")
    got, devices = outcome["result"]
    assert devices <= {1}
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None
        else:
            np.testing.assert_array_equal(g, w)


# The NumPy backend's fused host paths promise the reference's numbers bit for bit, not within a tolerance:
# the step they speed up must train exactly as before (same weights after an epoch, same resumed runs).
BIT_EXACT_ON_NUMPY = [
    name
    for name in PRIMITIVES
    if name.split("[")[0]
    in (
        *("linear_relu", "gather_images", "gather_batch", "softmax_cross_entropy_totals"),
        *("sgd_update", "momentum_update"),
    )
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", BIT_EXACT_ON_NUMPY)
def test_numpy_fused_paths_equal_the_reference_bit_for_bit(name, dtype):
    backend = get_backend("cpu", dtype)
    method = name.split("[")[0]
    for seed, shape in ((1, {}), (2, PAST_ONE_BLOCK)):
        args, kwargs = _inputs(np.random.default_rng(seed), **shape)[name]
        fast = getattr(backend, method)(
            *_to_device(backend, tuple(args)), **_to_device_kwargs(backend, kwargs)
        )
        reference = getattr(Backend, method)(
            backend, *_to_device(backend, tuple(args)), **_to_device_kwargs(backend, kwargs)
        )
        for got, want in zip(
            fast if isinstance(fast, tuple) else (fast,),
            reference if isinstance(reference, tuple) else (reference,),
            strict=True,
        ):
            assert np.asarray(got).dtype == np.asarray(want).dtype
            np.testing.assert_array_equal(got, want)


def _to_device_kwargs(backend, kwargs):
    return {k: _to_device(backend, v) for k, v in kwargs.items()}


def test_the_numpy_updates_reuse_one_temporary_per_thread():
    """The update's temporary is the same array from step to step in one thread and another array in another
    thread (two threads updating two models at once never write into each other's), and never what the
    update returns."""
    import threading

    from gpunn.backend.numpy_backend import scratch_like

    backend = get_backend("cpu", "float32")
    value, grad = backend.from_host(np.ones(6)), backend.from_host(np.arange(6.0))
    mine = scratch_like(value)
    assert backend.sgd_update(value, grad, 0.5) is value and scratch_like(value) is mine
    np.testing.assert_array_equal(value, 1 - 0.5 * np.arange(6.0))
    theirs = []
    thread = threading.Thread(target=lambda: theirs.append(scratch_like(value)))
    thread.start()
    thread.join(timeout=30)
    assert theirs and theirs[0] is not mine and theirs[0].shape == mine.shape
