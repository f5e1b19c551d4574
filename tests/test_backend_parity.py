"""Every primitive a backend overrides is compared with the reference version in gpunn/backend/base.py."""

from __future__ import annotations

import numpy as np
import pytest

from gpunn.backend import Backend, get_backend


def _inputs(rng):
    """Arguments for each primitive, drawn on the host (float64, moved to the backend by the test)."""
    x, w, b = rng.standard_normal((16, 12)), rng.standard_normal((12, 7)), rng.standard_normal(7)
    grad, y = rng.standard_normal((16, 7)), rng.standard_normal((16, 7))
    targets = np.eye(7)[rng.integers(0, 7, 16)]
    value, velocity = rng.standard_normal((12, 7)), rng.standard_normal((12, 7))
    return {
        "linear": ((x, w, b), {}),
        "linear_backward": ((x, w, grad), {"need_input_grad": True}),
        "relu": ((y,), {}),
        "relu_backward": ((grad, y), {}),
        "softmax": ((y * 5,), {}),
        "softmax_cross_entropy": ((y * 5, targets), {}),
        "sgd_update": ((value, grad[:12], 0.1), {}),
        "momentum_update": ((value, value * 0.3, velocity, 0.05, 0.9, True), {"weight_decay": 1e-3}),
        "momentum_update[plain]": ((value, value * 0.3, velocity, 0.05, 0.9, False), {}),
        "scale_images": ((rng.integers(0, 256, (16, 12)).astype(np.uint8),), {}),
    }


PRIMITIVES = [name for name in _inputs(np.random.default_rng(0))]


def _to_device(backend, value):
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
    fast = _to_host(backend, getattr(backend, method)(*fast_args, **kwargs))
    reference = _to_host(backend, getattr(Backend, method)(backend, *reference_args, **kwargs))
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
