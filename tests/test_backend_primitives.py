"""Backend primitives against NumPy references, on freshly built backends of each device and dtype."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest

from gpunn.backend import Backend
from gpunn.backend.numpy_backend import NumpyBackend
from gpunn.backend.strict_backend import StrictBackend
from gpunn.errors import DeviceMismatchError

FRESH = {"cpu": NumpyBackend, "strict": StrictBackend}


@pytest.fixture(params=[("cpu", "float32"), ("cpu", "float64"), ("strict", "float32"), ("strict", "float64")])
def fresh(request):
    """A backend constructed here (not the cached one), so its constructor is exercised too."""
    device, dtype = request.param
    return FRESH[device](dtype)


def test_a_fresh_backend_has_its_dtype_and_round_trips(fresh):
    assert fresh.dtype_name in ("float32", "float64")
    x = fresh.from_host(np.array([[1.5, -2.0]]))
    assert x.dtype == fresh.dtype and fresh.zeros((2, 3)).dtype == fresh.dtype
    assert fresh.to_host(x).dtype == np.dtype(fresh.dtype_name)
    np.testing.assert_array_equal(fresh.to_host(x), [[1.5, -2.0]])
    np.testing.assert_array_equal(fresh.to_host(fresh.zeros((2, 3))), np.zeros((2, 3)))
    assert fresh.to_host(fresh.zeros((2,), dtype=fresh.xp.int64)).dtype == np.int64
    assert fresh.to_host(fresh.arange(4)).tolist() == [0, 1, 2, 3]
    assert fresh.to_scalar(fresh.from_host(np.array(2.5))) == 2.5


def test_repr_names_the_class_device_and_dtype():
    assert repr(NumpyBackend("float64")) == "<NumpyBackend device=cpu dtype=float64>"
    assert repr(StrictBackend()) == "<StrictBackend device=strict dtype=float32>"


def test_strict_without_array_api_strict_names_the_extra(monkeypatch):
    import sys

    from gpunn.errors import DeviceUnavailableError

    monkeypatch.setitem(sys.modules, "array_api_strict", None)
    with pytest.raises(DeviceUnavailableError) as err:
        StrictBackend()
    assert str(err.value) == 'the strict device needs array-api-strict: pip install "gpunn[test]"'


def test_default_dtype_is_float32():
    assert NumpyBackend().dtype_name == "float32" and StrictBackend().dtype == StrictBackend().xp.float32


def test_strict_arrays_live_on_their_own_device_and_come_home_as_numpy():
    strict = StrictBackend("float64")
    x = strict.from_host(np.arange(3.0))
    assert x.device == strict.xp.Device("device1")
    host_side = strict.xp.asarray([1.0, 2.0])  # an array-api-strict array on its default device
    with pytest.raises(DeviceMismatchError):
        strict.check(host_side)
    back = strict.to_host(x)
    assert type(back) is np.ndarray and back.tolist() == [0.0, 1.0, 2.0]


def test_numpy_from_host_copies_unless_told_and_to_host_always_copies():
    cpu = NumpyBackend("float64")
    data = np.arange(4.0)
    assert not np.shares_memory(cpu.from_host(data), data)
    assert np.shares_memory(cpu.from_host(data, copy=False), data)
    assert not np.shares_memory(cpu.to_host(data), data)
    as_float = cpu.astype(np.arange(3), np.float64)
    assert as_float.dtype == np.float64
    same = np.arange(3.0)
    assert cpu.astype(same, np.float64) is same  # no copy when the dtype already fits


def test_mismatch_messages_name_the_fix():
    strict = StrictBackend("float32")
    with pytest.raises(DeviceMismatchError) as err:
        strict.check(np.ones(2))
    assert str(err.value) == (
        "a host NumPy array was passed to the strict backend, which refuses implicit transfers: "
        "move it first with backend.from_host(x)"
    )
    with pytest.raises(DeviceMismatchError) as err:
        NumpyBackend().check(strict.from_host(np.ones(2)))
    kind = f"{type(strict.from_host(np.ones(1))).__module__}.{type(strict.from_host(np.ones(1))).__name__}"
    assert str(err.value) == (
        f"a {kind} was passed to the cpu backend; bring it to the host with its own backend's to_host(x), "
        "then backend.from_host(...) to move it here"
    )


MATRIX, ROWS, TOTAL = np.ones((2, 2)), np.array([0, 1]), np.array(0.5)
ARRAY_ARGUMENTS = {  # each primitive's array arguments (host versions) and its other arguments
    "linear": ([MATRIX, MATRIX, MATRIX], ()),
    "linear_backward": ([MATRIX, MATRIX, MATRIX], ()),
    "relu_backward": ([MATRIX, MATRIX], ()),
    "softmax_cross_entropy": ([MATRIX, MATRIX], ()),
    "sgd_update": ([MATRIX, MATRIX], (0.1,)),
    "momentum_update": ([MATRIX, MATRIX, MATRIX], (0.1, 0.9, False)),
    "count_correct": ([MATRIX, ROWS], ()),
    "take_rows": ([MATRIX, ROWS], ()),
    "adam_update": ([MATRIX, MATRIX, MATRIX, MATRIX], (0.1, 0.9, 0.999, 1e-8, 1)),
    "add_to_totals": ([TOTAL, TOTAL, TOTAL, TOTAL], (2,)),
}


@pytest.mark.parametrize("name", ARRAY_ARGUMENTS)
@pytest.mark.parametrize("device, other", [("cpu", "strict"), ("strict", "cpu")])
def test_every_array_argument_is_checked(device, other, name):
    backend, foreign = FRESH[device]("float64"), FRESH[other]("float64")
    hosts, rest = ARRAY_ARGUMENTS[name]
    for position in range(len(hosts)):
        args = [backend.from_host(a) for a in hosts]
        args[position] = foreign.from_host(hosts[position])
        with pytest.raises(DeviceMismatchError):
            getattr(backend, name)(*args, *rest)


def ref_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_softmax_and_cross_entropy_match_numpy_per_row(backend64):
    b = backend64
    z = np.array([[1000.0, 1001.0, 999.0], [-3.0, 0.0, 2.0], [0.5, 0.5, 0.5], [7.0, -7.0, 0.0]])
    targets = np.eye(3)[[1, 2, 0, 0]]
    np.testing.assert_allclose(b.to_host(b.softmax(b.from_host(z))), ref_softmax(z), rtol=1e-12)
    loss, grad = b.softmax_cross_entropy(b.from_host(z), b.from_host(targets))
    p = ref_softmax(z)
    assert b.to_scalar(loss) == pytest.approx(-np.log(p[targets == 1]).mean(), rel=1e-12)
    np.testing.assert_allclose(b.to_host(grad), (p - targets) / 4, rtol=1e-12, atol=1e-15)


def test_one_hot_take_rows_and_count_correct(backend):
    labels = backend.from_host(np.array([2, 0, 1, 2]))
    np.testing.assert_array_equal(backend.to_host(backend.one_hot(labels, 4)), np.eye(4)[[2, 0, 1, 2]])
    rows = backend.from_host(np.arange(12.0).reshape(4, 3))
    taken = backend.take_rows(rows, backend.from_host(np.array([3, 1])))
    np.testing.assert_array_equal(backend.to_host(taken), [[9, 10, 11], [3, 4, 5]])
    logits = backend.from_host(np.array([[0, 0, 5.0], [1, 0, 0], [0, 1, 0], [0, 3, 0]]))
    assert backend.to_scalar(backend.count_correct(logits, labels)) == 3


def test_softmax_cross_entropy_totals_add_batch_after_batch_by_hand(backend64):
    """Two batches in a row (a GPU reuses its kernel's counter): each adds its own mean loss x rows and correct
    count to the totals it is given, which stay as they were; label 3 of 3 classes is a zero row."""
    b = backend64
    z1, labels1 = np.array([[2.0, 0, 0], [0, 1.0, 0], [0, 0, 3.0]]), np.array([0, 2, 2])
    z2, labels2 = np.array([[1.0, 2.0, 0], [0, 0, 1.0]]), np.array([1, 3])
    start = (b.from_host(np.array(0.5), dtype="float64"), b.from_host(np.array(4)))
    loss1, grad1, correct1, *after1, sums1 = b.softmax_cross_entropy_totals(
        b.from_host(z1), b.from_host(labels1), *start
    )
    loss2, _, correct2, *after2, sums2 = b.softmax_cross_entropy_totals(
        b.from_host(z2), b.from_host(labels2), *after1
    )

    def log_softmax(z):
        return (
            z
            - z.max(axis=1, keepdims=True)
            - np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1))[:, None]
        )

    want1 = -log_softmax(z1)[[0, 1, 2], labels1].mean()
    want2 = -log_softmax(z2)[0, 1] / 2  # the row labelled 3 adds nothing
    assert b.to_scalar(loss1) == pytest.approx(want1, rel=1e-12)
    assert b.to_scalar(loss2) == pytest.approx(want2, rel=1e-12)
    assert [b.to_scalar(correct1), b.to_scalar(correct2)] == [2, 1]
    np.testing.assert_allclose(
        b.to_host(grad1), (np.exp(log_softmax(z1)) - np.eye(3)[labels1]) / 3, atol=1e-15
    )
    # the gradient's column sums (the output bias's gradient): softmax mass minus label counts, over rows
    np.testing.assert_allclose(
        b.to_host(sums1), (np.exp(log_softmax(z1)).sum(axis=0) - [1, 0, 2]) / 3, atol=1e-15
    )
    np.testing.assert_allclose(
        b.to_host(sums2), (np.exp(log_softmax(z2)).sum(axis=0) - [0, 1, 0]) / 2, atol=1e-15
    )
    assert b.to_scalar(after2[0]) == pytest.approx(0.5 + 3 * want1 + 2 * want2, rel=1e-12)
    assert b.to_scalar(after2[1]) == 4 + 2 + 1
    assert [b.to_scalar(start[0]), b.to_scalar(start[1])] == [0.5, 4]


def test_concat_and_integral(backend):
    parts = [backend.from_host(np.array([1, 2])), backend.from_host(np.array([3]))]
    assert backend.to_host(backend.concat(parts)).tolist() == [1, 2, 3]
    assert backend.is_integral(parts[0]) and not backend.is_integral(backend.from_host(np.ones(2)))


def test_momentum_update_with_weight_decay_and_nesterov_by_hand(backend64):
    b = backend64
    value, grad, velocity = np.array([1.0, -2.0]), np.array([0.5, 0.25]), np.array([0.1, 0.0])
    g = grad + 0.01 * value
    v = 0.9 * velocity + g
    for nesterov, direction in ((False, v), (True, g + 0.9 * v)):
        new_value, new_velocity = b.momentum_update(
            b.from_host(value), b.from_host(grad), b.from_host(velocity), 0.1, 0.9, nesterov, 0.01
        )
        np.testing.assert_allclose(b.to_host(new_value), value - 0.1 * direction, rtol=1e-14)
        np.testing.assert_allclose(b.to_host(new_velocity), v, rtol=1e-14)


def test_reference_primitives_match_numpy(backend64):
    """The generic versions in Backend (which the strict backend runs) against NumPy formulas."""
    b = backend64
    rng = np.random.default_rng(4)
    x, w, bias = rng.standard_normal((5, 3)), rng.standard_normal((3, 2)), rng.standard_normal(2)
    g = rng.standard_normal((5, 2))
    dev = [b.from_host(a) for a in (x, w, bias, g)]
    np.testing.assert_allclose(b.to_host(Backend.linear(b, *dev[:3])), x @ w + bias, rtol=1e-12)
    dx, dw, db = (b.to_host(a) for a in Backend.linear_backward(b, dev[0], dev[1], dev[3]))
    np.testing.assert_allclose(dx, g @ w.T, rtol=1e-12)
    np.testing.assert_allclose(dw, x.T @ g, rtol=1e-12)
    np.testing.assert_allclose(db, g.sum(axis=0), rtol=1e-12)
    assert Backend.linear_backward(b, dev[0], dev[1], dev[3], need_input_grad=False)[0] is None
    y = b.from_host(np.array([[-1.0, 0.0, 2.0]]))
    np.testing.assert_array_equal(b.to_host(Backend.relu(b, y)), [[0.0, 0.0, 2.0]])
    up = b.from_host(np.array([[3.0, 4.0, 5.0]]))
    relu_y = Backend.relu(b, y)
    np.testing.assert_array_equal(b.to_host(Backend.relu_backward(b, up, relu_y)), [[0.0, 0.0, 5.0]])
    np.testing.assert_allclose(
        b.to_host(Backend.sgd_update(b, b.from_host(np.array([1.0])), b.from_host(np.array([2.0])), 0.25)),
        [0.5],
    )
    pixels = b.from_host(np.array([0, 255, 51], dtype=np.uint8))
    np.testing.assert_allclose(b.to_host(Backend.scale_images(b, pixels)), [0.0, 1.0, 0.2])
    # the reference zeros runs on strict (Array API `device=`); NumPy 1.26 and CuPy use their own (plumbing)
    zeros = partial(Backend.zeros, b) if b.device == "strict" else b.zeros
    assert b.to_host(zeros((2,))).dtype == np.float64


def test_memory_info_is_the_host_rss_here(backend):
    keep = backend.from_host(np.ones(1000))  # a live array: a GPU pool's used bytes count live arrays only
    info = backend.memory_info()
    expected = f"cuda memory pool ({backend.device})" if backend.device.startswith("cuda") else "host rss"
    assert info["kind"] == expected and 0 < info["used_bytes"] <= info["total_bytes"]
    del keep


def test_from_host_lays_out_strided_and_fortran_arrays_in_c_order(fresh):
    base = np.arange(12.0).reshape(3, 4)
    for view in (base.T, base[:, ::2], np.asfortranarray(base)):
        moved = fresh.from_host(view, copy=False)
        fresh.check(moved)
        np.testing.assert_array_equal(fresh.to_host(moved), view)
        if fresh.name == "numpy":  # the host array itself: GEMMs and the flat buffers want C order
            assert moved.flags.c_contiguous and not np.shares_memory(moved, base)


class NotAnArray:
    """Neither NumPy nor DLPack-capable; not a builtin, so its module and name both show in messages."""


def test_the_host_doors_name_what_they_were_given(fresh):
    with pytest.raises(DeviceMismatchError) as err:
        fresh.from_host(NotAnArray())
    assert str(err.value) == (
        f"from_host expects a NumPy array, got {__name__}.NotAnArray; arrays already on a device move with "
        "their own backend's to_host() first"
    )
    with pytest.raises(DeviceMismatchError) as err:
        fresh.from_dlpack(NotAnArray())
    assert str(err.value) == (
        f"from_dlpack expects an array with __dlpack__ (NumPy, PyTorch, JAX, CuPy, ...), got {__name__}.NotAnArray"
    )


def test_from_dlpack_moves_a_numpy_array_to_a_device_like_from_host():
    strict = StrictBackend("float32")
    host = np.array([[0.5, -1.0], [2.0, 3.25]])  # float64: takes the backend dtype, as from_host does
    moved = strict.from_dlpack(host)
    strict.check(moved)
    assert moved.dtype == strict.xp.float32
    np.testing.assert_array_equal(strict.to_host(moved), host)


def test_adam_update_without_weight_decay_by_hand(backend64):
    b = backend64
    value, grad = np.array([1.0, -2.0, 0.5]), np.array([0.5, -0.25, 0.0])
    m, v = np.array([0.1, 0.0, -0.2]), np.array([0.01, 0.04, 0.0])
    lr, beta1, beta2, eps, step = 0.1, 0.9, 0.999, 1e-8, 3
    new_m = beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * grad * grad
    new_value = value - lr * (new_m / (1 - beta1**step)) / (np.sqrt(new_v / (1 - beta2**step)) + eps)
    for adam in (b.adam_update, partial(Backend.adam_update, b)):  # the backend's own and the reference
        out = adam(*(b.from_host(a) for a in (value, grad, m, v)), lr, beta1, beta2, eps, step)
        for got, want in zip(out, (new_value, new_m, new_v), strict=True):
            np.testing.assert_allclose(b.to_host(got), want, rtol=1e-14)


def test_backward_primitives_return_the_input_gradient_by_default(backend64):
    b = backend64
    rng = np.random.default_rng(5)
    x, w, g = rng.standard_normal((4, 3)), rng.standard_normal((3, 2)), rng.standard_normal((4, 2))
    y = np.maximum(rng.standard_normal((4, 2)), 0.0)  # a ReLU output
    assert (y == 0).any() and (y > 0).any()
    dx, dw, db = (b.to_host(a) for a in b.linear_backward(*(b.from_host(a) for a in (x, w, g))))
    np.testing.assert_allclose(dx, g @ w.T, rtol=1e-12)
    np.testing.assert_allclose(dw, x.T @ g, rtol=1e-12)
    np.testing.assert_allclose(db, g.sum(axis=0), rtol=1e-12)
    masked = g * (y > 0)
    for backward in (b.relu_linear_backward, partial(Backend.relu_linear_backward, b)):
        dx, dw, db = (b.to_host(a) for a in backward(*(b.from_host(a) for a in (x, w, g, y))))
        np.testing.assert_allclose(dx, masked @ w.T, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(dw, x.T @ masked, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(db, masked.sum(axis=0), rtol=1e-12, atol=1e-15)


def test_without_weight_decay_the_gradient_passes_through_untouched():
    """No decay, no arithmetic: the update rules get the gradient itself, not a fresh grad + 0 * value."""
    grad, value = np.array([1.0, -2.0]), np.array([3.0, 4.0])
    assert Backend.decayed(grad, value, 0.0) is grad
    np.testing.assert_array_equal(Backend.decayed(grad, value, 0.5), [2.5, 0.0])


def test_sparse_input_takes_the_backend_dtype_and_gives_the_dense_products(fresh):
    from scipy import sparse

    x = np.array([[0.0, 2.0], [1.5, 0.0], [0.0, 0.0]])  # float64 on every backend dtype
    w, bias = np.array([[1.0, -1.0, 0.5], [2.0, 0.0, 1.0]]), np.array([0.25, 0.5, -1.0])
    g = np.array([[1.0, 0.0, -2.0], [0.5, 1.0, 0.0], [3.0, 3.0, 3.0]])
    xs = fresh.sparse_from_host(sparse.csr_matrix(x))
    assert xs.dtype == fresh.dtype
    out = fresh.sparse_linear(xs, fresh.from_host(w), fresh.from_host(bias))
    assert out.dtype == fresh.dtype
    np.testing.assert_array_equal(fresh.to_host(out), x @ w + bias)
    np.testing.assert_array_equal(fresh.to_host(fresh.sparse_weight_grad(xs, fresh.from_host(g))), x.T @ g)


def test_sparse_products_check_their_dense_arguments():
    from scipy import sparse

    cpu, strict = NumpyBackend("float64"), StrictBackend("float64")
    x = cpu.sparse_from_host(sparse.csr_matrix(np.eye(2)))  # stays a SciPy matrix: nothing to check
    weight, bias = cpu.from_host(MATRIX), cpu.from_host(MATRIX[0])
    for args in ((strict.from_host(MATRIX), bias), (weight, strict.from_host(MATRIX[0]))):
        with pytest.raises(DeviceMismatchError):
            cpu.sparse_linear(x, *args)
    # the reference densifies x onto the device, so it checks x as well as the gradient
    for args in ((MATRIX, strict.from_host(MATRIX)), (strict.from_host(MATRIX), MATRIX)):
        with pytest.raises(DeviceMismatchError):
            strict.sparse_weight_grad(*args)


def test_later_writes_to_the_host_array_never_reach_the_device_copy(fresh):
    """A device array is a copy (array-api-strict would share the NumPy buffer unless told to copy); only the
    NumPy backend may share, and only when asked with copy=False."""
    for copy in (True, False) if fresh.name != "numpy" else (True,):
        user = np.array([1.0, 2.0], dtype=fresh.dtype_name)  # already the backend dtype: no cast copies it
        moved = fresh.from_host(user, copy=copy)
        user[0] = 99.0
        assert fresh.to_host(moved).tolist() == [1.0, 2.0]
