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


def test_nccl_is_reported_unavailable_without_cupy(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.delitem(sys.modules, "cupy.cuda", raising=False)
    available, why = nccl_available()
    assert not available and why.startswith("NCCL through CuPy unavailable (ModuleNotFoundError: ")
