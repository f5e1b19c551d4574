"""CupyBackend against CuPy's rules: on a real GPU, or on the stand-in with GPUNN_CUDA_STANDIN=1.

Bugs of issue 12 covered here: 5 (memory_info reads this backend's device pool), 8 (every primitive runs
on its own device, whatever another backend or thread made current). Also the end-to-end contracts:
digits training matches NumPy, a float64 resume is bit-equal, checkpoints move between cuda, cpu, strict.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from conftest import require_usable

from gpunn import parity
from gpunn.backend import get_backend
from gpunn.backend.cupy_backend import CupyBackend
from gpunn.nn import Sequential
from gpunn.training.run import train

pytestmark = pytest.mark.gpu

DIGITS = dict(dataset="digits", batch_size=32, verbose=False)


@pytest.fixture
def cupy():
    require_usable("cuda")
    import cupy

    return cupy


@pytest.fixture
def two_devices(cupy):
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two CUDA devices (the stand-in has two)")
    cupy.cuda.Device(0).use()
    yield
    cupy.cuda.Device(0).use()


# ---- bug 5: memory_info is this backend's device pool, with CuPy's used/total semantics --------------
def test_memory_info_counts_live_arrays_of_this_device_only(cupy, two_devices):
    on_1 = CupyBackend(1, "float32")
    before = on_1.memory_info()
    kept = on_1.from_host(np.ones(1000, dtype=np.float32))  # 4000 bytes, a 4096-byte pool block
    cupy.cuda.Device(0).use()  # another device current: the report must still be cuda:1's
    during = on_1.memory_info()
    assert during["used_bytes"] - before["used_bytes"] == 4096
    assert during["total_bytes"] >= during["used_bytes"]
    del kept
    after = on_1.memory_info()
    assert after["used_bytes"] == before["used_bytes"]  # the block went back to the pool...
    assert after["total_bytes"] == during["total_bytes"]  # ...which keeps it (total = used + cached)
    assert "cuda:1" in after["kind"]


# ---- bug 8: every primitive runs on the backend's own device ------------------------------------------
def test_a_cuda1_backend_does_not_break_a_live_cuda0_one(cupy, two_devices):
    losses_alone, weights_alone = parity.train_steps("cuda:0", "float64", steps=3)
    zero = CupyBackend(0, "float64")
    x = zero.from_host(np.array([[-1.0, 2.0]]))
    CupyBackend(1, "float64")  # creating it must not move cuda:0's work
    np.testing.assert_array_equal(zero.to_host(zero.relu(x)), [[0.0, 2.0]])
    losses, weights = parity.train_steps("cuda:0", "float64", steps=3)
    assert losses == losses_alone
    for a, b in zip(weights, weights_alone, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_backend_used_from_another_thread_runs_on_its_own_device(cupy, two_devices):
    get_backend("cuda:1", "float64")  # made (and cached) here: the thread only uses it
    results = {}

    def work():  # a new thread starts with device 0 current
        try:
            results["cuda:1"] = parity.train_steps("cuda:1", "float64", steps=3)
        except Exception as exc:  # handed to the main thread, which fails the test with it
            results["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert "error" not in results, results.get("error")
    reference = parity.train_steps("cpu", "float64", steps=3)
    np.testing.assert_allclose(results["cuda:1"][0], reference[0], rtol=1e-12)


def test_arrays_stay_on_the_backend_device(cupy, two_devices):
    on_1 = CupyBackend(1, "float32")
    cupy.cuda.Device(0).use()
    made = [on_1.zeros((2, 3)), on_1.arange(4), on_1.from_host(np.ones(3)), on_1.relu(on_1.zeros((2,)))]
    assert {a.device.id for a in made} == {1}


def test_the_xp_namespace_alone_runs_on_the_backend_device(cupy, two_devices):
    """NN code calls backend.xp.NAME with no backend method before it in this thread: the proxy itself (not
    a primitive run earlier) makes the backend's device current."""
    on_1 = CupyBackend(1, "float32")
    cupy.cuda.Device(0).use()
    made = [on_1.xp.zeros((2,)), on_1.xp.arange(3)]
    assert {a.device.id for a in made} == {1}


# ---- end to end through the real CupyBackend ----------------------------------------------------------
def test_two_epochs_on_digits_match_numpy_in_float32(tmp_path, cupy):
    cpu = train(out=tmp_path / "cpu", device="cpu", epochs=2, **DIGITS)
    gpu = train(out=tmp_path / "gpu", device="cuda", epochs=2, **DIGITS)
    for a, b in zip(cpu.history, gpu.history, strict=True):
        assert abs(a["loss"] - b["loss"]) < 1e-4
    assert abs(cpu.test_accuracy - gpu.test_accuracy) <= 2 / 360
    for x, y in zip(cpu.model.get_weights(), gpu.model.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)


def test_float64_resume_on_cuda_is_bit_equal_to_an_uninterrupted_run(tmp_path, cupy):
    settings = dict(device="cuda", dtype="float64", optimizer="adam", lr=0.003, schedule="constant", **DIGITS)
    full = train(out=tmp_path / "full", epochs=3, **settings)
    train(out=tmp_path / "part", epochs=1, **settings)
    # device given again: without it resume picks "auto", which is the cpu wherever the stand-in runs
    resumed = train(resume=tmp_path / "part", device="cuda", epochs=3, verbose=False)
    assert resumed.model.backend.device == "cuda:0"
    for x, y in zip(full.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]


def test_a_cuda_checkpoint_loads_on_cpu_and_strict_and_back(tmp_path, cupy):
    on_cuda = train(out=tmp_path / "r", device="cuda", dtype="float64", epochs=1, **DIGITS)
    weights = on_cuda.model.get_weights()
    for device in ("cpu", "strict"):
        model = Sequential.load(tmp_path / "r", device)
        assert model.backend.device == device
        for a, b in zip(weights, model.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        back = model.to("cuda")
        assert back.backend.device == "cuda:0"
        for a, b in zip(weights, back.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)


def test_cli_trains_on_cuda_in_a_subprocess(tmp_path, cupy):
    """A `gpunn` subprocess finds the same CuPy (the stand-in travels through PYTHONPATH)."""
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gpunn",
            "train",
            "--device",
            "cuda",
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("gpunn: device cuda:0")
    assert Sequential.load(tmp_path / "r", "cpu").backend.device == "cpu"


# ---- issue 24 section 4: latent bugs of the fused loss and the upload ----------------------------------
def _loss_inputs(backend, rng, rows=9, classes=5):
    logits = rng.standard_normal((rows, classes)) * 3
    labels = rng.integers(0, classes, rows)
    totals = (backend.from_host(np.array(0.0), dtype="float64"), backend.from_host(np.array(0)))
    return logits, labels, totals


def test_loss_column_sums_follow_the_gradients_layout(cupy):
    """softmax_cross_entropy_totals with transposed (F-ordered) logits: grad is empty_like(logits), so F-ordered
    too; the last thread's column sums must read grad at its logical elements, as the rows wrote them, and
    write a strided column_sums_out where it lies."""
    backend = CupyBackend(0, "float64")
    logits, labels, totals = _loss_inputs(backend, np.random.default_rng(7))
    transposed = backend.from_host(np.ascontiguousarray(logits.T)).T  # same values, F-ordered on the device
    assert not transposed.flags.c_contiguous
    flat = backend.zeros((12,))
    strided = flat[1::2][:5]  # a non-contiguous output view
    _, grad, _, _, _, sums = backend.softmax_cross_entropy_totals(
        transposed, backend.from_host(labels), *totals, column_sums_out=strided
    )
    want = backend.to_host(grad).sum(axis=0)
    np.testing.assert_allclose(backend.to_host(sums), want, rtol=1e-12, atol=1e-15)
    host = backend.to_host(flat)
    np.testing.assert_allclose(host[1:11:2], want, rtol=1e-12, atol=1e-15)
    assert not host[0::2].any()


def test_each_stream_has_its_own_loss_ticket(cupy):
    """Launches on one stream run in order and the last thread re-zeroes the ticket, so a stream reuses its
    own; two streams may run at once, so they must not share one (a shared ticket interleaves and sticks)."""
    backend = CupyBackend(0, "float32")
    logits, labels, totals = _loss_inputs(backend, np.random.default_rng(8))
    used = []
    kernel = backend._kernels["softmax_xent_totals"]
    backend._kernels = {
        **backend._kernels,
        "softmax_xent_totals": lambda *a, **k: used.append(a[9]) or kernel(*a, **k),
    }
    args = (backend.from_host(logits), backend.from_host(labels), *totals)
    with cupy.cuda.Device(0):
        first, second = cupy.cuda.Stream(non_blocking=True), cupy.cuda.Stream(non_blocking=True)
        for stream in (first, second, first, None):
            with stream or cupy.cuda.Stream.null:
                backend.softmax_cross_entropy_totals(*args)
    assert used[0] is used[2]  # the same stream: the same counter
    assert len({id(t) for t in used[:2] + used[3:]}) == 3  # first, second and the null stream: three
    backend.synchronize()
    assert all(int(t[0]) == 0 for t in used)  # every launch's last thread left its counter zeroed

    both_alive = threading.Barrier(2, timeout=60)  # two live threads: two thread ids, two streams

    def on_per_thread_stream():  # CuPy's Stream.ptds: one pointer (2), a different stream in each thread
        with cupy.cuda.Stream.ptds:
            backend.softmax_cross_entropy_totals(*args)
        both_alive.wait()

    threads = [threading.Thread(target=on_per_thread_stream) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert used[-1] is not used[-2] and len({id(t) for t in used}) == 5


def test_an_upload_with_copy_never_aliases_the_host_array_under_ump(cupy, monkeypatch):
    """CUPY_ENABLE_UMP=1 makes cupy.asarray use host memory in place; from_host (copy=True) must still copy,
    and copy=False may share (the dataset is never written)."""
    from conftest import standin_in_use

    if not standin_in_use():
        pytest.skip("switches the stand-in's UMP (real CuPy reads CUPY_ENABLE_UMP once at import)")
    from cupy import _state

    monkeypatch.setattr(_state, "ump_enabled", True)
    backend = CupyBackend(0, "float64")
    host = np.array([1.0, 2.0])
    copied, shared = backend.from_host(host), backend.from_host(host, copy=False)
    host[0] = 5.0
    assert backend.to_host(copied)[0] == 1.0
    assert backend.to_host(shared)[0] == 5.0


# ---- issue 24 section 4: every training path on cuda:1, with cuda:0 current or from a second thread ------
TRAINING_PATHS = {
    "sgd": dict(optimizer="sgd", momentum=0.0),
    "momentum+decay": dict(optimizer="sgd", momentum=0.9, weight_decay=1e-3),
    "adam": dict(optimizer="adam", lr=0.003),
    "dropout+validation": dict(dropout=0.2, val_size=60, early_stopping=2),
}


def _in_thread(run):
    """run() in a new thread (which starts with device 0 current); its result, or its exception raised here."""
    outcome = {}

    def work():
        try:
            outcome["result"] = run()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive(), "the training thread did not finish"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


@pytest.mark.parametrize("where", ["cuda:0 current", "second thread"])
@pytest.mark.parametrize("path", sorted(TRAINING_PATHS))
def test_every_training_path_runs_on_cuda1(tmp_path, cupy, two_devices, path, where):
    """train() on cuda:1 gives cuda:0's run bit for bit in float64, whatever device the calling thread has
    current (a cross-device operand would raise, or warn with peer access: an error here)."""
    import warnings

    from cupy._util import PerformanceWarning

    settings = dict(dtype="float64", epochs=1, **DIGITS, **TRAINING_PATHS[path])
    on_0 = train(out=tmp_path / "zero", device="cuda:0", **settings)

    def on_1():
        cupy.cuda.Device(0).use()
        return train(out=tmp_path / "one", device="cuda:1", **settings)

    with warnings.catch_warnings():
        warnings.simplefilter("error", PerformanceWarning)
        result = _in_thread(on_1) if where == "second thread" else on_1()
    assert result.model.backend.device == "cuda:1"
    assert [h["loss"] for h in result.history] == [h["loss"] for h in on_0.history]
    for a, b in zip(result.model.get_weights(), on_0.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 3 iterations, on purpose
@pytest.mark.parametrize("where", ["cuda:0 current", "second thread"])
def test_the_scikit_learn_estimator_fits_and_predicts_on_cuda1(cupy, two_devices, where):
    """MLPClassifier on cuda:1 (its fit gathers batches with take_rows) predicts what it predicts on cuda:0."""
    from sklearn.datasets import load_digits

    from gpunn.sklearn import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = x[:300] / 16.0
    settings = dict(hidden_layer_sizes=(32,), max_iter=3, random_state=0, dtype="float64")
    want = MLPClassifier(device="cuda:0", **settings).fit(x, y[:300]).predict_proba(x)

    def on_1():
        cupy.cuda.Device(0).use()
        return MLPClassifier(device="cuda:1", **settings).fit(x, y[:300]).predict_proba(x)

    got = _in_thread(on_1) if where == "second thread" else on_1()
    np.testing.assert_array_equal(got, want)
