"""The backend contract: crossing the host/device line, refusing mixes, and host-only randomness."""

from __future__ import annotations

import ctypes
import platform
import sys

import numpy as np
import pytest

from gpunn.backend import get_backend
from gpunn.errors import DeviceMismatchError
from gpunn.nn.model import mlp


def test_round_trip_keeps_values_and_casts_floats(backend):
    host = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    device_array = backend.from_host(host)
    assert device_array.dtype == backend.dtype
    back = backend.to_host(device_array)
    assert isinstance(back, np.ndarray)
    np.testing.assert_allclose(back, host, rtol=1e-6)
    labels = backend.to_host(backend.from_host(np.array([3, 1], dtype=np.int64)))
    assert labels.dtype == np.int64 and labels.tolist() == [3, 1]


def test_from_host_refuses_device_arrays(backend):
    strict = get_backend("strict")
    with pytest.raises(DeviceMismatchError, match="to_host"):
        backend.from_host(strict.from_host(np.ones(2)))


def test_strict_refuses_host_arrays_in_primitives():
    strict = get_backend("strict", "float32")
    weight = strict.from_host(np.ones((3, 2)))
    with pytest.raises(DeviceMismatchError, match=r"from_host\(x\)"):
        strict.linear(np.ones((4, 3), dtype=np.float32), weight, strict.zeros((2,)))
    with pytest.raises(DeviceMismatchError, match=r"from_host\(x\)"):
        strict.relu(np.ones(3, dtype=np.float32))
    # and the array library itself refuses implicit conversion or mixing, as a GPU does
    with pytest.raises((TypeError, RuntimeError, ValueError)):
        np.asarray(weight)
    with pytest.raises((TypeError, ValueError)):
        weight + np.ones((3, 2))


def test_numpy_backend_refuses_device_arrays():
    cpu = get_backend("cpu")
    strict = get_backend("strict")
    with pytest.raises(DeviceMismatchError, match="to_host"):
        cpu.linear(strict.from_host(np.ones((2, 2))), np.ones((2, 2), dtype=np.float32), np.zeros(2))


def test_to_host_refuses_foreign_arrays():
    with pytest.raises(DeviceMismatchError):
        get_backend("strict").to_host(np.ones(3))


def he_draw(seed: int, fan_in: int, fan_out: int) -> np.ndarray:
    """He-normal weights as the seeded host Generator draws them: N(0, sqrt(2 / fan_in)) in float64."""
    return np.random.default_rng(seed).standard_normal((fan_in, fan_out)) * np.sqrt(2.0 / fan_in)


def test_same_seed_gives_bit_identical_weights_on_every_backend(backend64):
    weight, bias = mlp([5, 4], backend=backend64, seed=7).get_weights()
    assert weight.tobytes() == he_draw(7, 5, 4).tobytes() and not bias.any()


def test_float32_weights_are_the_float64_draws_rounded(backend):
    weight, _ = mlp([3, 4], backend=backend, seed=3).get_weights()
    assert weight.tobytes() == he_draw(3, 3, 4).astype(np.float32).tobytes()


def test_memory_info_reports_bytes(backend):
    kept = backend.from_host(np.ones(1000, dtype=np.float32))  # a GPU pool counts only live arrays
    info = backend.memory_info()
    assert info["used_bytes"] >= 4000 and info["total_bytes"] >= info["used_bytes"]
    del kept


def test_backends_are_cached_per_device_and_dtype():
    assert get_backend("strict", "float32") is get_backend("strict", "float32")
    assert get_backend("strict", "float32") is not get_backend("strict", "float64")


def test_from_host_copies_so_training_never_writes_into_user_arrays(backend64):
    from gpunn.nn import SGD, Param

    user = np.array([1.0, 2.0])
    param = Param("w", backend64.from_host(user))
    param.grad = backend64.from_host(np.array([1.0, 1.0]))
    SGD(0.5).step([param], backend64)
    assert user.tolist() == [1.0, 2.0]
    assert backend64.to_host(param.value).tolist() == [0.5, 1.5]
    host = backend64.to_host(param.value)
    host[0] = 99.0
    assert backend64.to_host(param.value)[0] == 0.5  # to_host hands out a copy too


def _fresh_allocator(monkeypatch, opt_out: str | None = None):
    from gpunn.backend import numpy_backend

    monkeypatch.setattr(numpy_backend, "_allocator_tuned", False)
    if opt_out is None:
        monkeypatch.delenv("GPUNN_MALLOC_TUNING", raising=False)
    else:
        monkeypatch.setenv("GPUNN_MALLOC_TUNING", opt_out)
    return numpy_backend


class _Libc:
    def __init__(self, answers):
        self.answers = list(answers)

    def mallopt(self, param, value):
        return self.answers.pop(0)


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc")
def test_tune_host_allocator_reports_that_glibc_took_the_settings(monkeypatch):
    numpy_backend = _fresh_allocator(monkeypatch)
    libc = ctypes.CDLL("libc.so.6")  # glibc's own answer to the same settings (older ones may refuse them)
    keep = numpy_backend._KEEP_BYTES
    took = bool(libc.mallopt(numpy_backend._M_MMAP_THRESHOLD, keep)) and bool(
        libc.mallopt(numpy_backend._M_TRIM_THRESHOLD, 2 * keep)
    )
    assert numpy_backend.tune_host_allocator() is took
    assert numpy_backend._allocator_tuned is took


def test_tune_host_allocator_honours_the_opt_out(monkeypatch):
    numpy_backend = _fresh_allocator(monkeypatch, opt_out="0")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: _Libc([1, 1]))
    assert numpy_backend.tune_host_allocator() is False
    numpy_backend = _fresh_allocator(monkeypatch, opt_out="1")  # anything but "0" tunes
    monkeypatch.setattr(sys, "platform", "linux")
    assert numpy_backend.tune_host_allocator() is True


def test_tune_host_allocator_is_false_without_glibc_or_when_mallopt_refuses(monkeypatch):
    numpy_backend = _fresh_allocator(monkeypatch)
    monkeypatch.setattr(sys, "platform", "linux")

    def no_libc(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_libc)
    assert numpy_backend.tune_host_allocator() is False
    assert numpy_backend._allocator_tuned is False
    for answers in ([0, 1], [1, 0]):  # mallopt answers 0 when it refuses a setting
        monkeypatch.setattr(ctypes, "CDLL", lambda name, answers=answers: _Libc(answers))
        assert numpy_backend.tune_host_allocator() is False
    monkeypatch.setattr(ctypes, "CDLL", lambda name: _Libc([1, 1]))
    assert numpy_backend.tune_host_allocator() is True
