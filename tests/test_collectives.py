"""The MPI sum on one rank: every backend gets its own values back, on its own device and dtype."""

from __future__ import annotations

import numpy as np
import pytest

from gpunn.backend.collectives import MpiAllreduce, nccl_available

MPI = pytest.importorskip("mpi4py.MPI", reason="mpi4py (the mpi extra) is not installed")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_rank_sum_is_the_identity_on_each_backend(backend, dtype):
    from gpunn.backend import get_backend

    backend = get_backend(backend.device, dtype)
    reducer = MpiAllreduce(MPI.COMM_SELF, backend)
    assert reducer.name == "mpi"  # no CUDA-aware path off the GPU
    flat = backend.from_host(np.arange(5, dtype=dtype) / 4)
    summed = reducer.sum_(flat)
    backend.check(summed)
    assert summed.dtype == backend.dtype
    np.testing.assert_array_equal(backend.to_host(summed), np.arange(5, dtype=dtype) / 4)


class TwoEqualRanks:
    """A stand-in communicator: an Allreduce as if a second rank held the same values."""

    def Allreduce(self, sendbuf, recvbuf, op):  # noqa: N802 (mpi4py's name)
        assert sendbuf is MPI.IN_PLACE and op is MPI.SUM
        recvbuf *= 2


def test_numpy_buffers_are_summed_in_place_with_mpi_in_place():
    from gpunn.backend import get_backend

    cpu = get_backend("cpu", "float32")
    flat = np.arange(4, dtype=np.float32)
    assert MpiAllreduce(TwoEqualRanks(), cpu).sum_(flat) is flat
    np.testing.assert_array_equal(flat, [0, 2, 4, 6])


def test_device_buffers_go_through_the_host_and_keep_their_dtype():
    from gpunn.backend import get_backend

    strict = get_backend("strict", "float32")
    flat = strict.from_host(np.arange(3, dtype=np.float64), dtype="float64")  # e.g. float64 loss sums
    summed = MpiAllreduce(TwoEqualRanks(), strict).sum_(flat)
    strict.check(summed)
    assert strict.to_host(summed).dtype == np.float64
    np.testing.assert_array_equal(strict.to_host(summed), [0.0, 2.0, 4.0])


def test_nccl_is_reported_available_when_cupy_has_it(monkeypatch):
    import sys
    import types

    cuda = types.ModuleType("cupy.cuda")
    cuda.nccl = types.ModuleType("cupy.cuda.nccl")
    cuda.nccl.available = True  # cupy/cuda/nccl.py: True only when the NCCL library loaded
    monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
    monkeypatch.setitem(sys.modules, "cupy.cuda", cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", cuda.nccl)
    assert nccl_available() == (True, "NCCL through CuPy")


def test_nccl_is_reported_unavailable_without_cupy(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.delitem(sys.modules, "cupy.cuda", raising=False)
    available, why = nccl_available()
    assert not available and why.startswith("NCCL comes through CuPy: CuPy is not installed (")
    assert why.endswith('install CuPy for your CUDA version: pip install "gpunn[cuda12]" or "gpunn[cuda13]"')
