"""The MPI sum on one rank: every backend gets its own values back, on its own device and dtype."""

from __future__ import annotations

import contextlib
import types

import numpy as np
import pytest

from gpunn.backend.collectives import MpiAllreduce, NcclAllreduce, nccl_available

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


@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_host_backends_sum_over_mpi_with_the_communicator_given(device):
    from gpunn.backend import get_backend

    backend = get_backend(device, "float64")
    reducer = backend.allreduce(TwoEqualRanks(), 0, 2)
    assert isinstance(reducer, MpiAllreduce) and reducer.name == "mpi"
    summed = reducer.sum_(backend.from_host(np.array([1.0, 2.5])))
    np.testing.assert_array_equal(backend.to_host(summed), [2.0, 5.0])


def test_a_cuda_aware_mpi_leaves_host_backends_on_their_path(monkeypatch):
    from gpunn.backend import collectives, get_backend

    monkeypatch.setattr(collectives, "_cuda_aware", lambda: True)
    for device in ("cpu", "strict"):
        backend = get_backend(device, "float64")
        reducer = MpiAllreduce(TwoEqualRanks(), backend)
        assert reducer.name == "mpi"
        summed = reducer.sum_(backend.from_host(np.array([0.5, 1.0])))
        np.testing.assert_array_equal(backend.to_host(summed), [1.0, 2.0])


@pytest.mark.gpu
def test_a_cuda_aware_mpi_sums_cupy_buffers_in_device_memory(monkeypatch):
    from conftest import require_usable

    from gpunn.backend import collectives, get_backend

    require_usable("cuda")
    monkeypatch.setattr(collectives, "_cuda_aware", lambda: True)
    gpu = get_backend("cuda", "float32")
    reducer = MpiAllreduce(TwoEqualRanks(), gpu)
    assert reducer.name == "mpi (cuda-aware)"
    flat = gpu.from_host(np.arange(4, dtype=np.float32))
    assert reducer.sum_(flat) is flat  # summed where it lies: no copy through the host and back
    np.testing.assert_array_equal(gpu.to_host(flat), [0, 2, 4, 6])


class CudaAwareTwoEqualRanks:
    """A CUDA-aware MPI's Allreduce as if a second rank held the same values: like the real library it reads
    and writes the buffer at its device pointer (__cuda_array_interface__), outside CuPy's streams."""

    def Allreduce(self, sendbuf, recvbuf, op):  # noqa: N802 (mpi4py's name)
        from cuda_array_memory import at_pointer

        assert sendbuf is MPI.IN_PLACE and op is MPI.SUM
        at_pointer(recvbuf)[...] *= 2


@pytest.mark.gpu
def test_a_cuda_aware_mpi_reads_the_buffer_only_after_the_queued_work_ran(monkeypatch):
    """The gradients are still being written by queued launches when the step hands the buffer to MPI, which
    reads device memory outside CuPy's stream: MpiAllreduce must wait for the device first."""
    from conftest import require_usable, standin_in_use

    from gpunn.backend import collectives, get_backend

    require_usable("cuda")
    if not standin_in_use():
        pytest.skip("reads device memory at its address, which only the stand-in's host memory allows")
    monkeypatch.setattr(collectives, "_cuda_aware", lambda: True)
    gpu = get_backend("cuda", "float32")
    flat = gpu.scale(gpu.from_host(np.arange(4, dtype=np.float32)), 3.0)  # queued: upload, then scale
    summed = MpiAllreduce(CudaAwareTwoEqualRanks(), gpu).sum_(flat)
    np.testing.assert_array_equal(gpu.to_host(summed), [0, 6, 12, 18])


def fake_cupy(monkeypatch, runtime_version=None, **nccl_attributes):
    """A CuPy in sys.modules whose cupy.cuda.nccl has exactly `nccl_attributes` (cupy/cuda/nccl.py sets
    available=True only when the NCCL library loaded) and whose CUDA runtime reports `runtime_version`."""
    import sys

    cupy, cuda, nccl = (types.ModuleType(name) for name in ("cupy", "cupy.cuda", "cupy.cuda.nccl"))
    cupy.cuda, cuda.nccl = cuda, nccl
    vars(nccl).update(nccl_attributes)
    if runtime_version is not None:
        cuda.runtime = types.SimpleNamespace(runtimeGetVersion=lambda: runtime_version)
    for module in (cupy, cuda, nccl):
        monkeypatch.setitem(sys.modules, module.__name__, module)


def test_nccl_is_reported_available_when_cupy_has_it(monkeypatch):
    fake_cupy(monkeypatch, available=True)
    assert nccl_available() == (True, "NCCL through CuPy")


@pytest.mark.parametrize(
    "runtime_version, install",
    [
        (13010, 'pip install "nvidia-nccl-cu13"'),
        (12080, 'pip install "nvidia-nccl-cu12"'),
        (None, 'pip install "nvidia-nccl-cu12" or "nvidia-nccl-cu13" (the CUDA major of your CuPy)'),
    ],
)
def test_nccl_missing_from_cupy_names_the_wheel_for_its_cuda_major(monkeypatch, runtime_version, install):
    fake_cupy(monkeypatch, runtime_version, available=False)
    assert nccl_available() == (
        False,
        f"CuPy cannot load the NCCL library; {install} (CuPy finds the nvidia-nccl wheel)",
    )


def test_an_nccl_module_that_does_not_say_it_is_available_is_not(monkeypatch):
    fake_cupy(monkeypatch, 12080)  # no `available` attribute at all
    assert nccl_available()[0] is False


def test_nccl_is_reported_unavailable_without_cupy(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.delitem(sys.modules, "cupy.cuda", raising=False)
    available, why = nccl_available()
    assert not available and why.startswith("NCCL comes through CuPy: CuPy is not installed (")
    assert why.endswith('install CuPy for your CUDA version: pip install "gpunn[cuda12]" or "gpunn[cuda13]"')


class Recorder:
    """What a fake NCCL is asked to do, and whether the GPU's device context was open at the time."""

    def __init__(self):
        self.calls, self.in_context = [], False

    @contextlib.contextmanager
    def device_context(self):
        self.in_context = True
        yield
        self.in_context = False


def nccl_on(monkeypatch, recorder):
    """A CuPy whose NCCL loaded, recording into `recorder`; returns a CuPy-like backend for NcclAllreduce."""

    class Communicator:
        def __init__(self, size, uid, rank):
            recorder.calls.append(("communicator", size, uid, rank, recorder.in_context))

        def allReduce(self, send, recv, count, kind, op, stream):  # noqa: N802 (CuPy's name)
            recorder.calls.append(("allReduce", send, recv, count, kind, op, stream))

    fake_cupy(
        monkeypatch,
        available=True,
        get_unique_id=lambda: recorder.calls.append(("get_unique_id",)) or "uid of rank 0",
        NcclCommunicator=Communicator,
        NCCL_FLOAT32="nccl float32",
        NCCL_FLOAT64="nccl float64",
        NCCL_SUM="nccl sum",
    )
    stream = types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(ptr=77))
    xp = types.SimpleNamespace(cuda=stream)
    return types.SimpleNamespace(name="cupy", device_context=recorder.device_context, xp=xp)


class Broadcast:
    """A communicator whose rank 0 holds the NCCL id; records what each broadcast was given."""

    def __init__(self):
        self.sent = []

    def bcast(self, obj, root):
        self.sent.append((obj, root))
        return "uid of rank 0"


@pytest.mark.parametrize("rank", [0, 1])
def test_nccl_ranks_share_rank_0s_id_over_mpi(monkeypatch, rank):
    """Only rank 0 makes an id and sends it; every rank builds its communicator with it on its own GPU."""
    recorder, comm = Recorder(), Broadcast()
    NcclAllreduce(nccl_on(monkeypatch, recorder), rank, 2, comm)
    assert comm.sent == [("uid of rank 0" if rank == 0 else None, 0)]
    made_id = [("get_unique_id",)] if rank == 0 else []
    assert recorder.calls == [*made_id, ("communicator", 2, "uid of rank 0", rank, True)]


def test_one_nccl_rank_broadcasts_nothing(monkeypatch):
    recorder, comm = Recorder(), Broadcast()
    NcclAllreduce(nccl_on(monkeypatch, recorder), 0, 1, comm)
    assert comm.sent == []
    assert recorder.calls == [("get_unique_id",), ("communicator", 1, "uid of rank 0", 0, True)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nccl_sums_the_buffer_in_place_on_the_current_stream(monkeypatch, dtype):
    recorder = Recorder()
    reducer = NcclAllreduce(nccl_on(monkeypatch, recorder))  # by default the one rank 0 of one
    flat = types.SimpleNamespace(dtype=np.dtype(dtype), size=5, data=types.SimpleNamespace(ptr=1234))
    assert reducer.sum_(flat) is flat
    assert recorder.calls == [
        ("get_unique_id",),
        ("communicator", 1, "uid of rank 0", 0, True),
        ("allReduce", 1234, 1234, 5, f"nccl {dtype}", "nccl sum", 77),
    ]


@pytest.mark.gpu
def test_nccl_sums_on_the_stream_of_the_backends_device_whatever_device_is_current(monkeypatch):
    """CuPy's current stream is per device (cupy/cuda/stream.pyx _ThreadLocal.current_stream[device_id]): the
    allreduce of cuda:1's gradients goes on device 1's current stream, where they were written, even while
    the calling thread has device 0 current (stream 0 there would not wait for them). The communicator is
    made with device 1 current too: ncclCommInitRank binds it to the current device (NCCL's documentation;
    cupy_backends/cuda/libs/nccl.pyx NcclCommunicator.__init__ calls it)."""
    from conftest import require_usable

    from gpunn.backend import collectives, get_backend

    require_usable("cuda")
    import cupy

    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two CUDA devices (the stand-in has two)")
    calls = []

    class Communicator:
        def __init__(self, size, uid, rank):
            calls.append(("communicator", cupy.cuda.Device().id))

        def allReduce(self, send, recv, count, kind, op, stream):  # noqa: N802 (CuPy's name)
            calls.append((stream, cupy.cuda.Device().id))

    nccl = types.SimpleNamespace(
        get_unique_id=lambda: "uid", NcclCommunicator=Communicator, NCCL_FLOAT32=0, NCCL_FLOAT64=1, NCCL_SUM=0
    )
    monkeypatch.setattr(collectives, "_nccl_module", lambda: nccl)
    on_1 = get_backend("cuda:1", "float32")
    flat = on_1.zeros((4,))
    cupy.cuda.Device(0).use()
    reducer = NcclAllreduce(on_1)
    with cupy.cuda.Device(1):
        gradients_stream = cupy.cuda.Stream(non_blocking=True)
    with gradients_stream:
        cupy.cuda.Device(0).use()
        reducer.sum_(flat)
    cupy.cuda.Device(0).use()
    assert calls == [("communicator", 1), (gradients_stream.ptr, 1)]


def test_distributed_cuda_without_nccl_says_what_to_install_or_use_instead(monkeypatch):
    from gpunn.errors import DeviceUnavailableError

    fake_cupy(monkeypatch, 12080, available=False)
    with pytest.raises(DeviceUnavailableError) as err:
        NcclAllreduce(types.SimpleNamespace(name="cupy"))
    assert str(err.value) == (
        'distributed CUDA training needs NCCL: CuPy cannot load the NCCL library; pip install "nvidia-nccl-cu12" '
        "(CuPy finds the nvidia-nccl wheel); or train on the CPU ranks with --device cpu"
    )


@pytest.mark.parametrize(
    "library, aware",
    [("Open MPI v5.0.5, built with CUDA support", True), ("MPICH Version: 5.0.2", False), (None, False)],
)
def test_cuda_awareness_is_read_from_the_mpi_library_version(monkeypatch, library, aware):
    from gpunn.backend import collectives

    def version():
        if library is None:
            raise RuntimeError("MPI not initialised")
        return library

    monkeypatch.setattr(MPI, "Get_library_version", version)
    assert collectives._cuda_aware() is aware
