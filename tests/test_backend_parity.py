"""Every primitive a backend overrides is compared with the reference version in gpunn/backend/base.py."""

from __future__ import annotations

import numpy as np
import pytest

from gpunn.backend import Backend, get_backend


class KeepDtype:
    """An input uploaded in its own dtype (the float64 epoch totals), not the backend's."""

    def __init__(self, array: np.ndarray):
        self.array = array


def _inputs(rng):
    """Arguments for each primitive, drawn on the host (float64, moved to the backend by the test)."""
    x, w, b = rng.standard_normal((16, 12)), rng.standard_normal((12, 7)), rng.standard_normal(7)
    grad, y = rng.standard_normal((16, 7)), rng.standard_normal((16, 7))
    targets = np.eye(7)[rng.integers(0, 7, 16)]
    value, velocity = rng.standard_normal((12, 7)), rng.standard_normal((12, 7))
    flat, flat_grad = rng.standard_normal(84), rng.standard_normal(84)  # a model's flat buffers
    m, v = rng.standard_normal(84) * 0.1, rng.random(84) * 0.01
    labels = rng.integers(0, 7, 16)
    images = rng.integers(0, 256, (20, 12)).astype(np.uint8)
    return {
        "linear": ((x, w, b), {}),
        "linear_backward": ((x, w, grad), {"need_input_grad": True}),
        "linear_backward[out]": ((x, w, grad, False), {"out": (np.zeros((12, 7)), np.zeros(7))}),
        "linear_backward[bias_grad]": (
            (x, w, grad, False),
            {"out": (np.zeros((12, 7)), np.zeros(7)), "bias_grad": b},
        ),
        "column_sums": ((grad,), {}),
        "column_sums[out]": ((grad,), {"out": np.zeros(7)}),
        "relu": ((y,), {}),
        "linear_relu": ((x, w, b), {}),
        "relu_linear_backward": ((x, w, grad, y), {"need_input_grad": True}),
        "relu_linear_backward[out]": ((x, w, grad, y, False), {"out": (np.zeros((12, 7)), np.zeros(7))}),
        "relu_backward": ((grad, y), {}),
        "softmax": ((y * 5,), {}),
        "softmax_cross_entropy": ((y * 5, targets), {}),
        "softmax_cross_entropy_counted": ((y * 5, np.eye(7)[labels], labels), {}),
        "sgd_update": ((value, grad[:12], 0.1), {}),
        "sgd_update[decay]": ((flat, flat_grad, 0.1), {"weight_decay": 1e-3}),
        "adam_update": ((flat, flat_grad, m, v, 0.01, 0.9, 0.999, 1e-8, 3), {"weight_decay": 1e-3}),
        "scale": ((flat_grad, 0.25), {}),
        "add_to_totals": ((KeepDtype(np.array(1.5)), np.array(3), np.array(0.25), np.array(7), 128), {}),
        "gather_images": ((images, rng.integers(0, 20, 16)), {}),
        "gather_batch": ((images, rng.integers(0, 7, 20), rng.integers(0, 20, 16)), {}),
        "softmax_cross_entropy_totals": ((y * 5, labels, KeepDtype(np.array(1.5)), np.array(3)), {}),
        # the column sums written into the output bias's gradient view (the reference returns a new array)
        "softmax_cross_entropy_totals[out]": (
            (y * 5, labels, KeepDtype(np.array(1.5)), np.array(3)),
            {"column_sums_out": np.zeros(7)},
        ),
        # labels outside [0, classes): a zero target row, never correct (and no read out of bounds)
        "softmax_cross_entropy_totals[out of range]": (
            (
                y * 5,
                np.where(labels % 3 == 0, np.where(labels > 3, 7, -1), labels),
                KeepDtype(np.array(0.0)),
                np.array(0),
            ),
            {},
        ),
        "momentum_update": ((value, value * 0.3, velocity, 0.05, 0.9, True), {"weight_decay": 1e-3}),
        "momentum_update[plain]": ((value, value * 0.3, velocity, 0.05, 0.9, False), {}),
        "scale_images": ((rng.integers(0, 256, (16, 12)).astype(np.uint8),), {}),
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
    method = name.split("[")[0]
    args, kwargs = _inputs(np.random.default_rng(1))[name]
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
