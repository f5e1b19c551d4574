"""Device specs, precedence, the use_device context, lazy CuPy import and the unavailable-CUDA errors."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import gpunn
from gpunn.backend import (
    DeviceSpec,
    parse_device,
    parse_dtype,
    requested_device,
    select,
    selection,
    use_device,
)
from gpunn.backend.cuda_probe import cuda_status, require_cuda
from gpunn.errors import DeviceUnavailableError, InvalidDeviceError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("cpu", DeviceSpec("cpu")),
        ("  CPU ", DeviceSpec("cpu")),
        ("cuda", DeviceSpec("cuda", 0)),
        ("CUDA:0", DeviceSpec("cuda", 0)),
        ("cuda:1", DeviceSpec("cuda", 1)),
        (" cuda:12\n", DeviceSpec("cuda", 12)),
        ("auto", DeviceSpec("auto")),
        ("Strict", DeviceSpec("strict")),
    ],
)
def test_valid_device_specs(text, expected):
    assert parse_device(text) == expected


@pytest.mark.parametrize(
    "text", ["cdua", "cuda:x", "cuda:-1", "gpu2", "", "   ", "cuda:", "cuda:1:2", "cpu0", None, 3]
)
def test_invalid_device_specs_list_the_valid_values(text):
    with pytest.raises(InvalidDeviceError) as err:
        parse_device(text)
    for valid in ("cpu", "cuda", "cuda:N", "auto", "strict"):
        assert valid in str(err.value)


def test_dtype_specs():
    assert parse_dtype(" Float64 ") == "float64"
    with pytest.raises(InvalidDeviceError, match="float32, float64"):
        parse_dtype("float16")


def test_only_an_explicit_index_pins_a_gpu():
    """cuda:0 pins GPU 0; a bare cuda lets a distributed run pick one per local rank (equal all the same)."""
    assert parse_device("cuda:0").index_given is True and parse_device(" CUDA:3 ").index_given is True
    assert parse_device("cuda").index_given is False and parse_device("cuda") == parse_device("cuda:0")


def test_a_dtype_that_is_not_text_and_has_no_name_is_refused_clearly():
    with pytest.raises(InvalidDeviceError) as err:
        parse_dtype(16, origin="GPUNN_DTYPE")
    assert str(err.value) == "invalid GPUNN_DTYPE 16: valid values are float32, float64"


def test_str_of_spec_round_trips():
    for text in ("cpu", "cuda:3", "auto", "strict"):
        assert parse_device(str(parse_device(text))) == parse_device(text)


def test_precedence_argument_context_env_default(monkeypatch):
    monkeypatch.delenv("GPUNN_DEVICE", raising=False)
    assert requested_device() == (DeviceSpec("cpu"), "default")
    monkeypatch.setenv("GPUNN_DEVICE", "strict")
    assert requested_device() == (DeviceSpec("strict"), "GPUNN_DEVICE")
    with use_device("cuda:1"):
        assert requested_device() == (DeviceSpec("cuda", 1), "use_device()")
        assert requested_device("cpu") == (DeviceSpec("cpu"), "argument")
    assert requested_device() == (DeviceSpec("strict"), "GPUNN_DEVICE")


def test_context_nests_and_restores_on_exception(monkeypatch):
    monkeypatch.delenv("GPUNN_DEVICE", raising=False)
    with use_device("strict"):
        with pytest.raises(RuntimeError):
            with use_device("cuda:2"):
                assert requested_device()[0] == DeviceSpec("cuda", 2)
                raise RuntimeError("boom")
        assert requested_device()[0] == DeviceSpec("strict")
    assert requested_device() == (DeviceSpec("cpu"), "default")


def test_use_device_rejects_bad_spec_before_entering():
    with pytest.raises(InvalidDeviceError):
        with use_device("gpu"):
            pass
    assert requested_device("cpu")[1] == "argument"


def test_bad_env_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("GPUNN_DEVICE", "cdua")
    with pytest.raises(InvalidDeviceError, match="GPUNN_DEVICE"):
        gpunn.get_backend()


def test_env_dtype(monkeypatch):
    monkeypatch.setenv("GPUNN_DTYPE", "float64")
    assert gpunn.get_backend("cpu").dtype_name == "float64"
    monkeypatch.setenv("GPUNN_DTYPE", "half")
    with pytest.raises(InvalidDeviceError, match="GPUNN_DTYPE"):
        gpunn.get_backend("cpu")


def test_selection_does_not_write_environment(monkeypatch):
    monkeypatch.delenv("GPUNN_DEVICE", raising=False)
    before = dict(__import__("os").environ)
    select("strict")
    select("auto")
    assert dict(__import__("os").environ) == before


def test_import_gpunn_does_not_import_cupy():
    code = (
        "import sys, gpunn, gpunn.cli.main, gpunn.backend; gpunn.get_backend('cpu'); print('cupy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- CUDA that cannot work: simulated by what `import cupy` finds -------------------------------------


@pytest.fixture(autouse=True)
def fresh_backend_cache(monkeypatch):
    """A CupyBackend cached by an earlier test (on the stand-in) must not answer for a simulated CuPy."""
    monkeypatch.setattr(selection, "_backends", {})


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError


def _fake_cupy(get_count):
    runtime = types.SimpleNamespace(getDeviceCount=get_count)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime))


def test_missing_cupy_names_the_extras(no_cupy, monkeypatch):
    monkeypatch.setenv("GPUNN_DEVICE", "cuda")
    with pytest.raises(DeviceUnavailableError) as err:
        gpunn.get_backend()
    assert "gpunn[cuda12]" in str(err.value) and "gpunn[cuda13]" in str(err.value)


def test_driver_failure_is_reported(monkeypatch):
    def broken():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(broken))
    with pytest.raises(DeviceUnavailableError, match="driver/runtime.*insufficient"):
        require_cuda(0)


def test_no_device_and_index_out_of_range(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(lambda: 0))
    with pytest.raises(DeviceUnavailableError, match="no CUDA device"):
        gpunn.get_backend("cuda")
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(lambda: 2))
    with pytest.raises(DeviceUnavailableError, match=r"cuda:5 is out of range.*cuda:0..cuda:1"):
        gpunn.get_backend("cuda:5")


def test_auto_falls_back_to_cpu_and_says_why(no_cupy):
    selection = select("auto")
    assert selection.backend.device == "cpu"
    assert "CuPy is not installed" in selection.describe()
    assert cuda_status(0)[0] is False


def test_explicit_cuda_never_falls_back(no_cupy):
    with pytest.raises(DeviceUnavailableError):
        select("cuda:0")


# ---- which backend class each kind builds, and the cache of one instance per device+dtype --------------


def test_each_kind_builds_its_backend_once_per_dtype():
    from gpunn.backend.numpy_backend import NumpyBackend
    from gpunn.backend.strict_backend import StrictBackend

    strict = gpunn.get_backend("strict", "float64")
    assert type(strict) is StrictBackend and strict.dtype_name == "float64"
    assert gpunn.get_backend("strict", "float64") is strict
    assert gpunn.get_backend("strict", "float32").dtype_name == "float32"
    cpu = gpunn.get_backend("cpu", "float64")
    assert type(cpu) is NumpyBackend and cpu.dtype_name == "float64"
    assert gpunn.get_backend("cpu", "float64") is cpu


def test_cuda_builds_a_cupy_backend_on_the_asked_index_and_dtype(monkeypatch):
    from gpunn.backend import cupy_backend

    built = []

    class RecordingCupyBackend:  # CupyBackend's signature, without a GPU
        def __init__(self, index=0, dtype_name="float32"):
            built.append((index, dtype_name))

    monkeypatch.setattr(cupy_backend, "CupyBackend", RecordingCupyBackend)
    first = gpunn.get_backend("cuda:1", "float64")
    assert type(first) is RecordingCupyBackend and built == [(1, "float64")]
    assert gpunn.get_backend("cuda:1", "float64") is first and built == [(1, "float64")]
