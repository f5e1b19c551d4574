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
