"""Arrays from other libraries: Backend.from_dlpack and Sequential.predict_proba on foreign arrays."""

from __future__ import annotations

import numpy as np
import pytest

from gpunn.backend import dlpack
from gpunn.errors import DeviceMismatchError, ShapeError
from gpunn.nn import mlp


class CudaResident:
    """A stand-in for a tensor in GPU memory: DLPack-capable, on cuda:1."""

    def __dlpack__(self, stream=None):
        raise AssertionError("a device-resident array must be refused before it is read")

    def __dlpack_device__(self):
        return (2, 1)


def rows(seed=0, n=9, features=6):
    return np.random.default_rng(seed).standard_normal((n, features)).astype(np.float32)


def test_torch_cpu_tensors_predict_like_numpy(backend):
    torch = pytest.importorskip("torch")
    model = mlp([6, 8, 4], backend=backend, seed=3)
    x = rows()
    expected = model.predict_proba(x)
    np.testing.assert_array_equal(model.predict_proba(torch.from_numpy(x)), expected)
    np.testing.assert_array_equal(
        model.predict_proba(torch.from_numpy(x).double()), model.predict_proba(x.astype(np.float64))
    )
    pixels = np.random.default_rng(1).integers(0, 256, (5, 6), dtype=np.uint8)
    np.testing.assert_array_equal(model.predict_proba(torch.from_numpy(pixels)), model.predict_proba(pixels))
    device_copy = backend.from_dlpack(torch.from_numpy(x))
    backend.check(device_copy)
    np.testing.assert_array_equal(backend.to_host(device_copy), x)


def test_torch_problems_are_clear(backend):
    torch = pytest.importorskip("torch")
    model = mlp([6, 8, 4], backend=backend)
    with pytest.raises(DeviceMismatchError, match="x.detach"):
        model.predict_proba(torch.ones((2, 6), requires_grad=True))
    bad = torch.ones((2, 6))
    bad[1, 2] = float("nan")
    with pytest.raises(ShapeError, match="NaN"):
        model.predict_proba(bad)


def test_an_array_on_the_model_device_is_used_in_place(backend):
    """No upload at all: a CuPy array (or this backend's own) is predicted on the device where it lies."""
    model = mlp([6, 8, 4], backend=backend, seed=3)
    x = rows()
    expected = model.predict_proba(x)
    on_device = backend.from_host(x)
    uploads = []
    original = backend._upload
    backend._upload = lambda array, copy: uploads.append(array.shape) or original(array, copy)
    np.testing.assert_allclose(model.predict_proba(on_device, batch_size=4), expected, rtol=1e-6)
    assert backend.from_dlpack(on_device) is on_device
    if backend.name != "numpy":  # on the CPU the device is the host: NumPy arrays take the host path
        assert uploads == []


def test_an_array_on_another_device_is_refused_naming_both(backend):
    with pytest.raises(DeviceMismatchError, match=f"on cuda:1 was passed to the {backend.device} backend"):
        backend.from_dlpack(CudaResident())
    with pytest.raises(DeviceMismatchError, match="on cuda:1"):
        mlp([6, 4], backend=backend).predict_proba(CudaResident())
    with pytest.raises(DeviceMismatchError, match="expects an array with __dlpack__"):
        backend.from_dlpack([[1.0, 2.0]])


class Resident:
    """A DLPack-capable stand-in that only says where it lives."""

    def __init__(self, kind, index):
        self.where = (kind, index)

    def __dlpack_device__(self):
        return self.where


@pytest.mark.parametrize(
    "kind, index, where",
    [(1, 0, "cpu"), (2, 1, "cuda:1"), (10, 3, "rocm:3"), (99, 2, "DLPack device type 99:2")],
)
def test_describe_names_the_type_and_the_device(kind, index, where):
    assert dlpack.describe(Resident(kind, index)) == f"a {__name__}.Resident on {where}"


class UnreadableOnHost(Resident):
    """A host tensor that refuses export, as a PyTorch tensor that requires grad does."""

    def __init__(self):
        super().__init__(1, 0)

    def __dlpack__(self, **kwargs):
        raise BufferError("it requires grad")


def test_an_unreadable_host_array_is_refused_naming_the_fix():
    with pytest.raises(DeviceMismatchError) as err:
        dlpack.host_view(UnreadableOnHost())
    assert str(err.value) == (
        f"a {__name__}.UnreadableOnHost on cpu cannot be read through DLPack (it requires grad); for a PyTorch "
        "tensor that requires grad, pass x.detach()"
    )


def test_the_refusal_of_a_device_array_says_how_to_move_it(backend):
    with pytest.raises(DeviceMismatchError) as err:
        backend.from_dlpack(CudaResident())
    assert str(err.value) == (
        f"a {__name__}.CudaResident on cuda:1 was passed to the {backend.device} backend, which refuses implicit "
        "transfers: move it to the host first (x.cpu() for a PyTorch tensor) or use a backend on its device"
    )
