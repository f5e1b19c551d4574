"""Layers' forward values, their descriptions, the losses' clipping and checks, all through the public API."""

from __future__ import annotations

import math

import array_api_strict
import numpy as np
import pytest

from gpunn.errors import DeviceMismatchError, ShapeError
from gpunn.nn import (
    GELU,
    MSE,
    BinaryCrossEntropy,
    BinaryCrossEntropyWithLogits,
    CategoricalCrossEntropy,
    Dense,
    LeakyReLU,
    ReLU,
    Sequential,
)
from gpunn.nn.layers import activation, layer_from_description


def forward(backend, layer, values):
    layer.bind(backend)
    return backend.to_host(layer.forward(backend.from_host(np.array([values], dtype=np.float64))))[0]


def test_leaky_relu_scales_negatives_and_passes_zero_and_small_positives(backend64):
    np.testing.assert_allclose(forward(backend64, LeakyReLU(), [-2.0, 0.0, 0.5, 3.0]), [-0.02, 0, 0.5, 3.0])
    layer = LeakyReLU(0.2)
    layer.bind(backend64)
    _, backprop = layer.begin_update(backend64.from_host(np.array([[-1.0, 0.0, 0.5]])))
    grad = backend64.to_host(backprop(backend64.from_host(np.ones((1, 3)))))[0]
    np.testing.assert_allclose(grad, [0.2, 0.2, 1.0])  # slope alpha at and below zero


def test_gelu_is_the_tanh_approximation(backend64):
    x = np.array([-3.0, -1.0, 0.0, 1.0, 2.5])
    k = math.sqrt(2 / math.pi)
    expected = 0.5 * x * (1 + np.tanh(k * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(forward(backend64, GELU(), x), expected, rtol=1e-12)
    assert forward(backend64, GELU(), [1.0])[0] == pytest.approx(0.8411919906, rel=1e-9)


@pytest.mark.parametrize(
    "layer",
    [Dense(3, 2, init="xavier_uniform"), LeakyReLU(0.3), activation("tanh"), activation("gelu")],
    ids=["dense", "leaky", "tanh", "gelu"],
)
def test_description_round_trips(layer):
    rebuilt = layer_from_description(layer.describe())
    assert type(rebuilt) is type(layer) and rebuilt.describe() == layer.describe()


def test_descriptions_say_what_rebuilding_needs():
    assert Dense(3, 2, init="zeros").describe() == {"type": "Dense", "in": 3, "out": 2, "init": "zeros"}
    assert LeakyReLU(0.3).describe() == {"type": "LeakyReLU", "alpha": 0.3}
    assert activation("softmax").describe() == {"type": "Softmax"}


def test_old_descriptions_without_optional_fields_get_the_defaults():
    assert layer_from_description({"type": "Dense", "in": 3, "out": 2}).describe()["init"] == "he"
    assert layer_from_description({"type": "LeakyReLU"}).describe() == {"type": "LeakyReLU", "alpha": 0.01}


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"^unknown layer type 'Conv2D'$"):
        layer_from_description({"type": "Conv2D"})
    with pytest.raises(ValueError, match=r"^unknown activation 'swish': choose from relu, leaky_relu, sigmoid"):
        activation("swish")


def loss_of(backend, loss, predictions, targets):
    value, grad = loss(backend, backend.from_host(np.asarray(predictions, float)), backend.from_host(targets))
    return backend.to_scalar(value), backend.to_host(grad)


def test_probability_losses_clip_at_1e7_so_certain_mistakes_stay_finite(backend64):
    eps = 1e-7
    value, grad = loss_of(backend64, BinaryCrossEntropy(), [[0.0, 1.0]], np.array([[1.0, 0.0]]))
    assert value == pytest.approx(-math.log(eps), rel=1e-6)
    assert np.all(np.isfinite(grad))
    value, _ = loss_of(backend64, BinaryCrossEntropy(), [[1.0, 0.0]], np.array([[1.0, 0.0]]))
    assert value == pytest.approx(-math.log(1 - eps), rel=1e-6)
    value, grad = loss_of(backend64, CategoricalCrossEntropy(), [[0.0, 1.0]], np.array([[1.0, 0.0]]))
    assert value == pytest.approx(-math.log(eps), rel=1e-6)
    np.testing.assert_allclose(grad, [[-1 / eps, 0.0]], rtol=1e-6)
    value, grad = loss_of(backend64, CategoricalCrossEntropy(), [[1.0, 0.0]], np.array([[1.0, 0.0]]))
    assert value == pytest.approx(-math.log(1 - eps), rel=1e-6)
    np.testing.assert_allclose(grad, [[-1 / (1 - eps), 0.0]], rtol=1e-6)


def test_categorical_cross_entropy_takes_integer_labels(backend64):
    value, _ = loss_of(backend64, CategoricalCrossEntropy(), [[0.25, 0.75], [0.5, 0.5]], np.array([1, 0]))
    assert value == pytest.approx(-(math.log(0.75) + math.log(0.5)) / 2, rel=1e-12)


def test_one_dimensional_predictions_average_over_their_length(backend64):
    value, grad = loss_of(backend64, MSE(), [1.0, 2.0, 3.0], np.array([0.0, 0.0, 0.0]))
    assert value == pytest.approx(14 / 3)
    np.testing.assert_allclose(grad, [2 / 3, 4 / 3, 2.0])


def test_bce_with_logits_is_stable_for_huge_logits(backend64):
    value, grad = loss_of(backend64, BinaryCrossEntropyWithLogits(), [[800.0, -800.0]], np.array([[0.0, 1.0]]))
    assert value == pytest.approx(800.0)
    np.testing.assert_allclose(grad, [[0.5, -0.5]])


@pytest.mark.parametrize("loss", [MSE(), BinaryCrossEntropy(), CategoricalCrossEntropy()], ids=["mse", "bce", "cce"])
def test_losses_refuse_targets_from_another_device_and_mismatched_shapes(loss):
    from gpunn.backend import get_backend

    strict, cpu = get_backend("strict", "float64"), get_backend("cpu", "float64")
    p = strict.from_host(np.full((2, 3), 0.5))
    with pytest.raises(DeviceMismatchError):
        loss(strict, p, cpu.from_host(np.eye(3)[:2]))
    with pytest.raises(DeviceMismatchError):
        loss(strict, cpu.from_host(np.full((2, 3), 0.5)), strict.from_host(np.eye(3)[:2]))
    with pytest.raises(ShapeError, match=r"\(2, 2\)"):
        loss(strict, p, strict.from_host(np.eye(2)))


def test_elementwise_shape_error_names_both_shapes(backend64):
    b = backend64
    with pytest.raises(ShapeError) as err:
        MSE()(b, b.from_host(np.ones((2, 3))), b.from_host(np.ones((3, 2))))
    assert str(err.value) == "predictions (2, 3) and targets (3, 2) differ"


def test_a_label_equal_to_the_class_count_is_out_of_range(backend64):
    b = backend64
    with pytest.raises(ShapeError, match=r"^label 2 is outside \[0, 2\)"):
        CategoricalCrossEntropy()(b, b.from_host(np.full((2, 2), 0.5)), b.from_host(np.array([1, 2])))


def test_dense_bound_without_a_generator_draws_from_seed_zero():
    from gpunn.backend import get_backend
    from gpunn.nn.init import he_normal

    layer = Dense(3, 2)
    layer.bind(get_backend("cpu", "float64"))
    np.testing.assert_array_equal(layer.params[0].value, he_normal(np.random.default_rng(0), 3, 2))


def test_integer_labels_must_be_one_dimensional(backend64):
    b = backend64
    with pytest.raises(ShapeError, match=r"integer labels must be 1-D, got shape \(2, 1\)"):
        CategoricalCrossEntropy()(b, b.from_host(np.full((2, 2), 0.5)), b.from_host(np.array([[0], [1]])))
    with pytest.raises(ShapeError, match=r"^label -1 is outside \[0, 2\): the model has 2 classes$"):
        CategoricalCrossEntropy()(b, b.from_host(np.full((2, 2), 0.5)), b.from_host(np.array([0, -1])))


def test_dense_weights_move_with_the_layer_between_backends():
    from gpunn.backend import get_backend

    cpu, strict = get_backend("cpu", "float64"), get_backend("strict", "float64")
    model = Sequential([Dense(3, 2)], cpu, seed=4)
    weights = model.get_weights()
    layer = model.layers[0]
    layer.bind(strict)
    out = strict.to_host(layer.forward(strict.from_host(np.eye(3))))
    np.testing.assert_allclose(out, weights[0] + weights[1], rtol=1e-12)


def test_the_totals_loss_matches_the_plain_loss_and_adds_up_the_epoch(backend64):
    """SoftmaxCrossEntropyTotals: the same loss, gradient and count as SoftmaxCrossEntropy on the same labels,
    the batch added into the totals it was given (mean loss x rows, correct), and one-hot targets refused."""
    from gpunn.nn.losses import SoftmaxCrossEntropy, SoftmaxCrossEntropyTotals

    b = backend64
    logits = b.from_host(np.array([[3.0, 0, 1], [0, 2.0, 0], [1.0, 0, 0]]))
    labels = b.from_host(np.array([0, 2, 0]))
    want_loss, want_grad, want_correct = SoftmaxCrossEntropy().with_correct(b, logits, labels, labels)
    totals = SoftmaxCrossEntropyTotals(b.from_host(np.array(1.0), dtype="float64"), b.from_host(np.array(5)))
    loss, grad, correct = totals.with_correct(b, logits, labels, labels)
    assert b.to_scalar(loss) == pytest.approx(b.to_scalar(want_loss), rel=1e-12)
    np.testing.assert_allclose(b.to_host(grad), b.to_host(want_grad), rtol=1e-12)
    assert b.to_scalar(correct) == b.to_scalar(want_correct) == 2
    assert b.to_scalar(totals.totals[0]) == pytest.approx(1.0 + 3 * b.to_scalar(want_loss), rel=1e-12)
    assert b.to_scalar(totals.totals[1]) == 7
    with pytest.raises(ValueError, match="takes the integer labels as its targets"):
        totals.with_correct(b, logits, b.from_host(np.eye(3)[[0, 2, 0]]), labels)


@pytest.mark.parametrize("bad", [0, -2, True, "3", 2.0, None])
def test_a_dense_description_needs_positive_integer_sizes_and_says_which(bad):
    description = {"type": "Dense", "in": 3, "out": bad}
    with pytest.raises(ValueError) as err:
        layer_from_description(description)
    assert str(err.value) == f"a Dense layer needs a positive integer 'out', got {description}"


def test_a_dense_description_of_width_one_is_accepted():
    layer = layer_from_description({"type": "Dense", "in": 1, "out": 1})
    assert layer.describe() == {"type": "Dense", "in": 1, "out": 1, "init": "he"}


@pytest.mark.parametrize("description", [["Dense"], None, "Dense"])
def test_a_description_that_is_not_a_dict_is_an_unknown_layer(description):
    with pytest.raises(ValueError, match=r"^unknown layer type None$"):
        layer_from_description(description)


def test_summary_lists_the_widths_then_the_activation_words():
    from gpunn.nn.layers import summary_of

    assert summary_of(mlp_layers := [Dense(4, 3), activation("tanh"), Dense(3, 2)]) == "4-3-2 tanh"
    assert summary_of(mlp_layers + [activation("relu")]) == "4-3-2 relu/tanh"
    assert summary_of([activation("relu")]) == "relu"  # no layer fixes a width
    assert summary_of([]) == ""


def test_dense_names_its_parameters_and_refuses_widths_that_do_not_chain():
    assert Dense(3, 2).parameter_shapes() == (("weight", (3, 2)), ("bias", (2,)))
    model = Sequential([Dense(3, 2), ReLU(), Dense(2, 1)], "cpu")  # each Param is named as announced
    announced = [item for layer in model.layers for item in layer.parameter_shapes()]
    assert [(p.name, p.value.shape) for p in model.parameters()] == announced
    with pytest.raises(ValueError) as err:
        _ = Sequential([Dense(2, 3), Dense(4, 2)], "cpu").out_features
    assert str(err.value) == "layer sizes do not chain (3 then 4)"


def test_a_lone_dense_layer_returns_the_input_gradient_and_takes_a_given_bias_gradient(backend64):
    """backprop(grad) gives grad @ W.T for the input; a bias gradient handed in (a loss's column sums) is the
    layer's bias gradient as it is, not recomputed from grad."""
    b = backend64
    rng = np.random.default_rng(0)
    layer = Dense(4, 3)
    layer.bind(b, rng)
    x, g = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    weight = b.to_host(layer.weight.value)
    _, backprop = layer.begin_update(b.from_host(x))
    np.testing.assert_allclose(b.to_host(backprop(b.from_host(g))), g @ weight.T, rtol=1e-12)
    np.testing.assert_allclose(b.to_host(layer.weight.grad), x.T @ g, rtol=1e-12)
    np.testing.assert_allclose(b.to_host(layer.bias.grad), g.sum(axis=0), rtol=1e-12)
    _, backprop = layer.begin_update(b.from_host(x))
    backprop(b.from_host(g), bias_grad=b.from_host(np.array([0.5, -1.0, 2.0])))
    np.testing.assert_array_equal(b.to_host(layer.bias.grad), [0.5, -1.0, 2.0])
    np.testing.assert_allclose(b.to_host(layer.weight.grad), x.T @ g, rtol=1e-12)


def test_the_first_dense_layer_of_a_model_computes_no_input_gradient(backend64):
    """Nothing reads the gradient of the input data, so a model's backprop returns None, not an array."""
    b = backend64
    x, g = b.from_host(np.ones((2, 4))), b.from_host(np.ones((2, 2)))
    for layers in ([Dense(4, 3), ReLU(), Dense(3, 2)], [ReLU(), Dense(4, 2)], [Dense(4, 2)]):
        model = Sequential(layers, b)
        assert model.begin_update(x)[1](g) is None
    assert Sequential([ReLU()], b).begin_update(x)[1](x) is not None  # no Dense: the ReLU's own gradient


def test_valid_integer_labels_cost_one_boolean_read_back(backend64, monkeypatch):
    """The range check reads back one 0-d boolean; the labels themselves come to the host only when one is
    out of range (to name it)."""
    b = backend64
    downloads = []
    original = b._download
    monkeypatch.setattr(b, "_download", lambda array: downloads.append(tuple(array.shape)) or original(array))
    value, _ = CategoricalCrossEntropy()(
        b, b.from_host(np.full((3, 2), 0.5)), b.from_host(np.array([0, 1, 0]))
    )
    assert downloads == [()]
    assert b.to_scalar(value) == pytest.approx(math.log(2), rel=1e-12)


def test_a_loss_without_a_fused_count_is_counted_by_the_backend(backend64):
    from gpunn.nn.losses import loss_and_correct

    b = backend64
    probabilities = b.from_host(np.array([[0.25, 0.75], [0.6, 0.4], [0.1, 0.9]]))
    targets, labels = b.from_host(np.array([1, 0, 0])), b.from_host(np.array([1, 1, 0]))
    value, grad, correct = loss_and_correct(CategoricalCrossEntropy(), b, probabilities, targets, labels)
    assert b.to_scalar(value) == pytest.approx(
        -(math.log(0.75) + math.log(0.6) + math.log(0.1)) / 3, rel=1e-12
    )
    np.testing.assert_allclose(b.to_host(grad), [[0, -1 / 0.75 / 3], [-1 / 0.6 / 3, 0], [-1 / 0.1 / 3, 0]])
    assert b.to_scalar(correct) == 1  # rows' argmax 1, 0, 1 against labels 1, 1, 0


def test_the_totals_loss_refuses_one_hot_targets_with_the_fix():
    from gpunn.backend import get_backend
    from gpunn.nn.losses import SoftmaxCrossEntropyTotals

    b = get_backend("cpu", "float64")
    labels = b.from_host(np.array([0, 1]))
    totals = SoftmaxCrossEntropyTotals(b.from_host(np.array(0.0)), b.from_host(np.array(0)))
    with pytest.raises(ValueError) as err:
        totals.with_correct(b, b.from_host(np.zeros((2, 2))), b.from_host(np.array([0, 1])), labels)
    assert str(err.value) == (
        "SoftmaxCrossEntropyTotals takes the integer labels as its targets: pass them as both"
    )


def test_the_softmax_losses_name_the_first_array_on_the_wrong_device_before_reading_labels():
    """An array from another device is reported as such (the first wrong one in argument order), even when
    the labels are also out of range: nothing is read from the targets before every array is checked."""
    from gpunn.backend import get_backend
    from gpunn.nn import SoftmaxCrossEntropy

    strict = get_backend("strict", "float64")
    logits, bad_labels = strict.from_host(np.zeros((2, 3))), strict.from_host(np.array([0, 5]))
    host = np.zeros((2, 3))
    loss = SoftmaxCrossEntropy()
    host_message = r"^a host NumPy array was passed to the strict backend"
    with pytest.raises(DeviceMismatchError, match=host_message):
        loss(strict, host, bad_labels)
    with pytest.raises(DeviceMismatchError, match=host_message):
        loss.with_correct(strict, host, bad_labels, bad_labels)
    with pytest.raises(DeviceMismatchError, match=host_message):
        loss.with_correct(strict, logits, bad_labels, np.array([0, 5]))
    foreign = array_api_strict.asarray(np.array([0, 1]))  # another device's array, named differently
    with pytest.raises(DeviceMismatchError, match=host_message):
        loss.with_correct(strict, logits, np.array([0, 1]), foreign)


def test_cross_entropies_refuse_host_targets_before_reading_the_output_shape():
    # The device check of both arguments comes first: a 1-D output with host targets is a
    # DeviceMismatchError naming the fix, not an IndexError from shape[1].
    from gpunn.backend import get_backend
    from gpunn.nn import SoftmaxCrossEntropy

    strict = get_backend("strict", "float64")
    output = strict.from_host(np.full(3, 0.5))
    for loss in (CategoricalCrossEntropy(), SoftmaxCrossEntropy()):
        with pytest.raises(DeviceMismatchError, match="from_host"):
            loss(strict, output, np.array([0, 1, 2]))
