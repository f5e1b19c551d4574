"""Sequential's and the optimizers' public API: arguments, defaults, batching, and what each refusal says."""

from __future__ import annotations

import numpy as np
import pytest

from gpunn.backend import get_backend
from gpunn.checkpoint import load_checkpoint, save_checkpoint
from gpunn.errors import ShapeError
from gpunn.nn import SGD, Adam, Dense, Param, ReLU, Sequential, Softmax, make_optimizer, mlp
from gpunn.nn.optim import Optimizer


def test_mlp_checks_its_sizes_and_arguments():
    assert mlp([3, 2], backend="cpu").shapes() == [(3, 2), (2,)]  # two sizes: one Dense layer, no activation
    for sizes in ([3], [3, 0, 2], []):
        with pytest.raises(ValueError, match=r"^an MLP needs at least two positive layer sizes, got"):
            mlp(sizes, backend="cpu")
    with pytest.raises(TypeError, match=r"^unexpected arguments: width, depth$"):
        mlp([3, 2], backend="cpu", width=1, depth=2)


def test_default_seed_is_zero():
    np.testing.assert_array_equal(
        mlp([4, 3], backend="cpu").get_weights()[0], mlp([4, 3], backend="cpu", seed=0).get_weights()[0]
    )
    layers = [Dense(4, 3)]
    np.testing.assert_array_equal(
        Sequential(layers, "cpu").get_weights()[0], mlp([4, 3], backend="cpu", seed=0).get_weights()[0]
    )


def test_mlp_puts_an_activation_between_dense_layers_only_and_allows_width_one():
    kinds = [layer["type"] for layer in mlp([4, 3, 3, 1], activation="tanh", backend="cpu").describe()]
    assert kinds == ["Dense", "Tanh", "Dense", "Tanh", "Dense"]
    assert mlp([1, 1], backend="cpu").shapes() == [(1, 1), (1,)]


def test_a_model_without_dense_layers_takes_any_width():
    out = Sequential([ReLU()], "cpu").forward(get_backend("cpu").from_host(np.array([[-1.0, 2.0, 3.0]])))
    assert out.tolist() == [[0.0, 2.0, 3.0]]


def test_save_and_load_keep_weights_and_architecture(tmp_path):
    model = mlp([4, 3, 2], activation="gelu", backend="cpu", dtype="float64", seed=3)
    model.save(tmp_path / "m.npz")
    loaded = Sequential.load(tmp_path / "m.npz")
    assert loaded.describe() == model.describe() and loaded.backend.dtype_name == "float64"
    for a, b in zip(loaded.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_predict_proba_batches_and_scales_uint8_pixels():
    model = mlp([6, 5, 3], backend="cpu", dtype="float64", seed=1)
    pixels = np.random.default_rng(0).integers(0, 256, (11, 6)).astype(np.uint8)
    whole = model.predict_proba(pixels)
    np.testing.assert_allclose(model.predict_proba(pixels, batch_size=4), whole, rtol=1e-12)
    np.testing.assert_allclose(model.predict_proba(pixels.astype(np.float64) / 255), whole, rtol=1e-12)
    assert whole.shape == (11, 3) and np.allclose(whole.sum(axis=1), 1.0)
    assert model.predict_proba(np.zeros((0, 6), dtype=np.uint8)).shape == (0, 0)
    with pytest.raises(ShapeError, match=r"^input contains NaN or infinite values$"):
        model.predict_proba(np.array([[np.inf] * 6]))


def test_set_weights_refuses_a_wrong_count_or_shape_and_names_both():
    model = mlp([3, 2], backend="cpu", dtype="float64")
    with pytest.raises(ShapeError) as err:
        model.set_weights([np.ones((3, 2))])
    assert str(err.value) == "weights of shapes [(3, 2)] do not fit this model's [(3, 2), (2,)]"
    with pytest.raises(ShapeError, match=r"^weights of shapes \[\(2, 3\), \(2,\)\] do not fit"):
        model.set_weights([np.ones((2, 3)), np.ones(2)])
    with pytest.raises(ShapeError):
        model.set_weights([np.ones((3, 2)), np.ones(2), np.ones(2)])
    model.set_weights([np.full((3, 2), 0.5), np.array([1.0, 2.0])])
    np.testing.assert_array_equal(model.get_weights()[1], [1.0, 2.0])


def test_from_description_builds_on_the_asked_backend_and_dtype():
    description = mlp([4, 3, 2], activation="tanh", backend="cpu").describe()
    model = Sequential.from_description(description, "strict", dtype="float64")
    assert model.backend is get_backend("strict", "float64")
    assert model.describe() == description
    np.testing.assert_array_equal(
        model.get_weights()[0], mlp([4, 3, 2], "tanh", backend="cpu", dtype="float64", seed=0).get_weights()[0]
    )


def test_to_accepts_a_backend_object_and_keeps_the_dtype_by_default():
    model = mlp([3, 2], backend="cpu", dtype="float64")
    strict = get_backend("strict", "float64")
    assert model.to(strict).backend is strict
    assert model.to("cpu").backend is get_backend("cpu", "float64")


def one_step(optimizer, value=1.0, grad=0.5):
    backend = get_backend("cpu", "float64")
    param = Param("w", backend.from_host(np.array([value])))
    param.grad = backend.from_host(np.array([grad]))
    optimizer.step([param], backend)
    return float(param.value[0])


@pytest.mark.parametrize(
    "name, expected",
    [
        ("sgd", 1.0 - 0.05 * (0.5 + 0.01 * 1.0)),
        ("momentum", 1.0 - 0.05 * (0.5 + 0.01)),  # first step: v = g
        ("nesterov", 1.0 - 0.05 * ((0.5 + 0.01) + 0.8 * (0.5 + 0.01))),
        ("adam", 1.0 - 0.05),  # Adam's first step is lr * sign(g)
    ],
)
def test_make_optimizer_passes_lr_momentum_and_weight_decay(name, expected):
    assert one_step(make_optimizer(name, 0.05, momentum=0.8, weight_decay=0.01)) == pytest.approx(expected)


def test_make_optimizer_gives_adam_its_weight_decay():
    # g = -0.005 + 0.01 * 1.0 > 0: with the decay the first step goes down, without it up
    assert one_step(make_optimizer("adam", 0.05, weight_decay=0.01), grad=-0.005) == pytest.approx(0.95)


def test_plain_sgd_keeps_no_velocity_state():
    backend = get_backend("cpu", "float64")
    sgd = SGD(0.1)
    one_step(sgd)
    assert set(sgd.state_dict(backend)) == {"steps"}
    assert set(SGD(0.1, momentum=0.5).state_dict(backend)) == {"steps"}  # filled on the first step


def test_make_optimizer_defaults_and_refusal():
    assert one_step(make_optimizer("sgd", 0.1)) == pytest.approx(1.0 - 0.05)  # no weight decay by default
    momentum = make_optimizer("momentum", 0.1)
    one_step(momentum)
    assert one_step(momentum) == pytest.approx(1.0 - 0.1 * (0.9 * 0.5 + 0.5))  # momentum 0.9 by default
    with pytest.raises(ValueError, match=r"^unknown optimizer 'rmsprop': choose from sgd, momentum, nesterov"):
        make_optimizer("rmsprop", 0.1)


def test_sgd_and_adam_refusals_and_defaults():
    with pytest.raises(ValueError, match="^Nesterov needs a momentum > 0$"):
        SGD(0.1, nesterov=True)
    with pytest.raises(ValueError, match=r"^momentum must lie in \[0, 1\), got -0.1$"):
        SGD(0.1, momentum=-0.1)
    with pytest.raises(ValueError, match=r"^weight decay must be >= 0, got -1$"):
        SGD(0.1, weight_decay=-1)
    with pytest.raises(ValueError, match=r"^learning rate must be a finite number > 0, got 'x'$"):
        SGD("x")
    assert SGD().lr == 0.1
    adam = Adam()
    assert (adam.lr, adam.beta1, adam.beta2, adam.eps, adam.weight_decay) == (1e-3, 0.9, 0.999, 1e-8, 0.0)
    assert one_step(Adam(0.1, weight_decay=1.0), value=1.0, grad=-0.5) == pytest.approx(1.0 - 0.1)


def test_optimizer_state_keeps_parameter_order_past_ten(tmp_path):
    backend = get_backend("cpu", "float64")
    params = [Param(f"p{i}", backend.from_host(np.zeros(1))) for i in range(12)]
    for i, param in enumerate(params):
        param.grad = backend.from_host(np.array([float(i)]))
    adam = Adam(0.1)
    adam.step(params, backend)
    state = adam.state_dict(backend)
    assert [float(state[f"m.{i}"][0]) for i in range(12)] == pytest.approx([0.1 * i for i in range(12)])
    restored = Adam(0.1)
    restored.load_state_dict(state, backend)  # `m.10` sorts before `m.2` as text; the buffer must not
    assert backend.to_host(restored.state["m"]).tolist() == pytest.approx([0.1 * i for i in range(12)])


def test_a_checkpoint_restores_momentum_of_more_than_ten_parameters_bit_exactly(tmp_path):
    """A 6-layer MLP has 12 parameter arrays of different shapes: the saved velocity must come back in
    parameter order, so the restored flat buffer is bit-equal and the layout (shapes) the same."""
    model = mlp([5, 7, 6, 5, 4, 3, 2], backend="cpu", dtype="float64", seed=3)
    optimizer = SGD(0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    for _ in range(2):
        for param in model.parameters():
            param.grad = model.backend.from_host(rng.standard_normal(param.value.shape))
        optimizer.step(model.parameters(), model.backend)
    save_checkpoint(tmp_path / "c.npz", model, optimizer=optimizer)
    restored = SGD(0.1, momentum=0.9)
    restored.load_state_dict(load_checkpoint(tmp_path / "c.npz").optimizer_state, model.backend)
    assert len(model.parameters()) == 12 and restored.steps == 2
    assert restored.shapes == model.shapes()
    np.testing.assert_array_equal(
        model.backend.to_host(restored.state["velocity"]), model.backend.to_host(optimizer.state["velocity"])
    )


def test_a_dense_then_relu_runs_as_one_backend_call_each_way(backend, monkeypatch):
    """Every Dense followed by a ReLU (the last pair too) is one fused call forward and one backward; the
    ReLU layer itself is skipped (a GPU saves a launch and a pass over the activations)."""
    calls, depth = [], [0]

    def spy(name, original):
        def outermost(*args, **kwargs):
            if depth[0] == 0:
                calls.append(name)
            depth[0] += 1
            try:
                return original(*args, **kwargs)
            finally:
                depth[0] -= 1

        return outermost

    names = ("linear", "linear_relu", "relu", "linear_backward", "relu_linear_backward", "relu_backward")
    for name in names:
        monkeypatch.setattr(backend, name, spy(name, getattr(backend, name)))
    model = Sequential([Dense(4, 3), ReLU(), Dense(3, 2), ReLU(), Dense(2, 2)], backend)
    x = backend.from_host(np.ones((5, 4)))
    model.forward(x)
    assert calls == ["linear_relu", "linear_relu", "linear"]
    calls.clear()
    _, backprop = model.begin_update(x)
    backprop(backend.from_host(np.ones((5, 2))))
    assert calls == ["linear_relu", "linear_relu", "linear", "linear_backward"] + ["relu_linear_backward"] * 2
    calls.clear()
    Sequential([Dense(4, 3), ReLU()], backend).forward(x)
    assert calls == ["linear_relu"]


def test_a_given_output_bias_gradient_goes_to_an_output_dense_layer_only(backend64):
    """backprop(grad, output_bias_grad=g) makes g the last Dense's bias gradient (a loss summed it already);
    every other gradient is what a plain backprop gives. A model that ends in another layer ignores it."""
    b = backend64
    x, grad = b.from_host(np.arange(8.0).reshape(2, 4) / 8), b.from_host(np.array([[0.5, -1.0], [0.25, 2.0]]))
    given = np.array([3.0, -4.0])

    def gradients(layers, **given_bias):
        model = Sequential(layers, b, seed=2)
        model.begin_update(x)[1](grad, **given_bias)
        return model.buffer.split_host(b.to_host(model.buffer.collect_gradient())[:-1])

    plain = gradients([Dense(4, 3), ReLU(), Dense(3, 2)])
    taken = gradients([Dense(4, 3), ReLU(), Dense(3, 2)], output_bias_grad=b.from_host(given))
    np.testing.assert_array_equal(taken[3], given)
    assert not np.allclose(plain[3], given)
    for a, c in zip(plain[:3], taken[:3], strict=True):
        np.testing.assert_array_equal(a, c)
    plain = gradients([Dense(4, 2), Softmax()])
    ignored = gradients([Dense(4, 2), Softmax()], output_bias_grad=b.from_host(given))
    for a, c in zip(plain, ignored, strict=True):
        np.testing.assert_array_equal(a, c)


def test_predict_proba_takes_an_array_already_on_the_device_where_it_is(backend64):
    """A model given arrays of its own device: uint8 pixels scaled there, floats of another dtype converted,
    batches as slices, non-finite input and empty input answered as for host input."""
    host = mlp([6, 5, 3], backend="cpu", dtype="float64", seed=1)
    b = backend64
    model = mlp([6, 5, 3], backend=b, seed=1)
    pixels = np.random.default_rng(0).integers(0, 256, (11, 6)).astype(np.uint8)
    want = host.predict_proba(pixels)
    np.testing.assert_allclose(model.predict_proba(b.from_host(pixels)), want, rtol=1e-12)
    np.testing.assert_allclose(model.predict_proba(b.from_host(pixels), batch_size=4), want, rtol=1e-12)
    as_float32 = b.from_host(pixels / 255, dtype="float32")
    np.testing.assert_allclose(model.predict_proba(as_float32), host.predict_proba(pixels / 255), rtol=1e-6)
    assert model.predict_proba(b.from_host(np.zeros((0, 6), dtype=np.uint8))).shape == (0, 0)
    with pytest.raises(ShapeError) as err:
        model.predict_proba(b.from_host(np.array([[np.nan] * 6])))
    assert str(err.value) == "input contains NaN or infinite values"


def test_predict_proba_refuses_input_that_is_not_a_table_of_rows(backend64):
    """A scalar or one row without its batch axis is one ShapeError naming the shape, on the host and on
    the device alike (a NumPy scalar once fell into the device path and raised IndexError)."""
    b = backend64
    model = mlp([6, 5, 3], backend=b, seed=1)
    expected = "input of shape {} given to a model that expects (N, 6)"
    for x, shape in ((np.float64(1.0), ()), (2.0, ()), (np.ones(6), (6,)), (b.from_host(np.ones(6)), (6,))):
        with pytest.raises(ShapeError) as err:
            model.predict_proba(x)
        assert str(err.value) == expected.format(shape)


def test_predict_proba_uploads_host_input_one_batch_at_a_time(monkeypatch):
    """A large host array (NumPy or any DLPack array in host memory) never lands on the device whole."""
    import array_api_strict

    backend = get_backend("cpu", "float64")
    model = mlp([6, 5, 3], backend=backend, seed=1)
    pixels = np.random.default_rng(0).integers(0, 256, (11, 6)).astype(np.uint8)
    uploads, original = [], backend._upload
    monkeypatch.setattr(
        backend, "_upload", lambda array, copy: uploads.append(array.shape) or original(array, copy)
    )
    want = model.predict_proba(pixels)
    assert uploads == [(11, 6)]  # the default batch (4096 rows) holds all 11
    foreign = array_api_strict.asarray(pixels)  # host memory, another library
    for x in (pixels, foreign):
        uploads.clear()
        np.testing.assert_allclose(model.predict_proba(x, batch_size=4), want, rtol=1e-12)
        assert uploads == [(4, 6), (4, 6), (3, 6)]


def test_load_builds_the_model_in_the_asked_dtype(tmp_path):
    mlp([4, 3], backend="cpu", dtype="float64", seed=3).save(tmp_path / "m.npz")
    loaded = Sequential.load(tmp_path / "m.npz", "cpu", "float32")
    assert loaded.backend is get_backend("cpu", "float32")
    assert loaded.get_weights()[0].dtype == np.float32


def test_a_model_without_parameters_has_empty_buffers():
    model = Sequential([ReLU()], "cpu")
    assert tuple(model.buffer.values.shape) == (0,) and tuple(model.buffer.gradient_with_slot.shape) == (1,)
    model.set_weights([])
    assert model.get_weights() == [] and tuple(model.buffer.values.shape) == (0,)


def test_a_fresh_optimizer_has_no_state_and_no_layout():
    for optimizer in (SGD(0.1, momentum=0.9), Adam()):
        assert (optimizer.steps, optimizer.state, optimizer.shapes) == (0, {}, [])
        assert optimizer.state_dict(get_backend("cpu")) == {"steps": 0}
    assert Optimizer(0.1).weight_decay == 0.0  # a subclass that passes no weight decay gets none


def test_predict_proba_batches_by_4096_by_default():
    # The batch size shows in the result's last bits (a BLAS row of a 1-row batch is summed in another
    # order than inside a 4096-row one) and in the calls each batch makes: both follow the default of 4096.
    model = mlp([3, 2], backend="cpu")
    seen = []
    forward = model.forward
    model.forward = lambda x: seen.append(x.shape[0]) or forward(x)
    x = np.random.default_rng(0).random((4097, 3)).astype(np.float32)
    model.predict_proba(x)
    assert seen == [4096, 1]


def test_unbound_dense_has_no_weights_and_the_model_skips_the_first_input_gradient():
    layer = Dense(3, 2)
    assert layer.weight is None and layer.bias is None and layer.params == (None, None)
    model = Sequential([layer, ReLU(), Dense(2, 2)], backend="cpu")
    assert [dense.need_input_grad for dense in (model.layers[0], model.layers[2])] == [False, True]
    assert model.layers[0].need_input_grad is False


def test_optimizer_steps_any_objects_with_value_and_grad():
    # ParameterBuffer.of asks a parameter for its owner with a default: an object that is not a Param
    # (no owner attribute) is adopted like a fresh Param, not refused with an AttributeError.
    from types import SimpleNamespace

    backend = get_backend("cpu", "float64")
    param = SimpleNamespace(
        name="w", value=backend.from_host(np.ones(3)), grad=backend.from_host(np.full(3, 2.0))
    )
    SGD(0.25).step([param], backend)
    np.testing.assert_array_equal(backend.to_host(param.value), [0.5, 0.5, 0.5])
