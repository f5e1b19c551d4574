"""The one train_step and the model's flat buffers: the update rule, the gradient hook, state layout."""

from __future__ import annotations

import numpy as np
import pytest

from gpunn.backend import get_backend
from gpunn.nn import SGD, Adam, make_optimizer, mlp
from gpunn.nn.losses import SoftmaxCrossEntropyTotals
from gpunn.nn.step import train_step

SIZES = [6, 5, 4, 3]


def batch(backend, seed=0, rows=8):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, SIZES[-1], rows)
    return (
        backend.from_host(rng.standard_normal((rows, SIZES[0]))),
        backend.from_host(np.eye(3)[labels]),
        labels,
    )


def test_sgd_step_moves_every_weight_by_lr_times_its_decayed_gradient(backend64):
    b = backend64
    model = mlp(SIZES, backend=b, seed=1)
    before = model.get_weights()
    seen = {}

    def hook(buffer):
        seen["grads"] = buffer.split_host(b.to_host(buffer.gradient))
        return False

    x, targets, _ = batch(b)
    train_step(model, SGD(0.5, weight_decay=0.1), x, targets, gradient_hook=hook)
    for w0, g, w1 in zip(before, seen["grads"], model.get_weights(), strict=True):
        np.testing.assert_allclose(w1, w0 - 0.5 * (g + 0.1 * w0), rtol=1e-12, atol=1e-15)
    assert any(np.abs(g).max() > 0 for g in seen["grads"])


def test_the_gradient_is_the_backward_pass_of_each_layer(backend64):
    """The flat gradient holds exactly the per-layer gradients the backward pass computed, in order."""
    b = backend64
    model = mlp(SIZES, backend=b, seed=2)
    x, targets, _ = batch(b, seed=3)
    outputs, backprop = model.begin_update(x)
    loss, grad = b.softmax_cross_entropy(outputs, targets)
    backprop(grad)
    per_param = [b.to_host(p.grad) for p in model.parameters()]
    flat = b.to_host(model.buffer.collect_gradient())
    assert flat.shape == (model.num_parameters() + 1,)
    np.testing.assert_array_equal(flat[:-1], np.concatenate([g.ravel() for g in per_param]))


def test_the_output_bias_takes_the_loss_column_sums_with_every_gradient_unchanged(backend):
    """train_step hands the totals loss's column sums (written into the output bias's gradient view) to the
    last Dense as its bias gradient: the step's gradients are bit-equal to a backward pass that sums the bias
    itself, and that layer's gradient is the loss's array, still the flat buffer's view where it is written
    in place (nothing to gather or copy)."""
    x, _, host_labels = batch(backend, seed=5, rows=9)
    labels = backend.from_host(host_labels)

    def fresh():
        model = mlp(SIZES, backend=backend, seed=3)
        totals = (backend.from_host(np.array(0.0), dtype="float64"), backend.from_host(np.array(0)))
        return model, SoftmaxCrossEntropyTotals(*totals, column_sums_into=model.output_bias_grad)

    model, loss = fresh()
    seen = {}

    def hook(buffer):
        seen["gradient"] = backend.to_host(buffer.gradient)
        return True

    train_step(model, SGD(0.1), x, labels, loss=loss, labels=labels, gradient_hook=hook)
    if backend.writes_in_place:  # (a functional backend gathers its gradients into a new buffer instead)
        assert model.layers[-1].bias.grad is loss.column_sums is loss.column_sums_into

    plain, plain_loss = fresh()
    outputs, backprop = plain.begin_update(x)
    backprop(plain_loss.with_correct(backend, outputs, labels, labels)[1])  # no column sums handed over
    want = backend.to_host(plain.buffer.collect_gradient())[:-1]
    np.testing.assert_array_equal(seen["gradient"], want)
    assert np.abs(want[-SIZES[-1] :]).max() > 1e-3  # the output bias's gradient is not trivially zero


def test_a_hook_that_says_stop_skips_the_update(backend):
    model = mlp(SIZES, backend=backend, seed=1)
    before = model.get_weights()
    x, targets, _ = batch(backend)
    assert train_step(model, SGD(0.5), x, targets, gradient_hook=lambda buffer: True) is None
    for w0, w1 in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(w0, w1)


def test_a_hook_that_replaces_the_gradient_is_what_the_update_uses(backend64):
    """As an allreduce does on a device without in-place collectives: a new buffer via set_gradient."""
    b = backend64
    runs = []
    for factor in (1.0, 2.0):
        model = mlp(SIZES, backend=b, seed=1)
        start = model.get_weights()

        def hook(buffer, factor=factor):
            buffer.set_gradient(buffer.collect_gradient() * factor)
            return False

        x, targets, _ = batch(b)
        train_step(model, SGD(0.25), x, targets, gradient_hook=hook)
        runs.append([w1 - w0 for w0, w1 in zip(start, model.get_weights(), strict=True)])
    for once, twice in zip(*runs, strict=True):
        np.testing.assert_allclose(twice, 2 * once, rtol=1e-12, atol=1e-15)


def test_in_place_backends_reuse_one_buffer_per_step():
    """NumPy: the hook (the allreduce) gets the same gradient buffer every step, and values stay put."""
    b = get_backend("cpu", "float32")
    model = mlp(SIZES, backend=b, seed=1)
    values, seen = model.buffer.values, []
    opt = make_optimizer("nesterov", 0.1, weight_decay=1e-4)
    for seed in range(3):
        x, targets, _ = batch(b, seed)
        train_step(
            model, opt, x, targets, gradient_hook=lambda buffer: seen.append(buffer.gradient_with_slot)
        )
    assert all(g is seen[0] for g in seen) and model.buffer.values is values
    assert all(np.shares_memory(p.value, values) for p in model.parameters())


def test_train_step_counts_correct_predictions(backend):
    model = mlp(SIZES, backend=backend, seed=4)
    x, targets, labels = batch(backend, seed=5, rows=32)
    expected = int((backend.to_host(model.forward(x)).argmax(axis=1) == labels).sum())
    result = train_step(model, SGD(0.1), x, targets, labels=backend.from_host(labels))
    assert int(backend.to_host(result.correct)) == expected


@pytest.mark.parametrize(
    "make", [lambda: Adam(0.01, weight_decay=1e-3), lambda: make_optimizer("nesterov", 0.1)]
)
def test_optimizer_state_saved_per_parameter_resumes_bit_exactly(backend64, make):
    b = backend64
    straight, first = mlp(SIZES, backend=b, seed=1), make()
    for seed in range(4):
        train_step(straight, first, *batch(b, seed)[:2])

    model, opt = mlp(SIZES, backend=b, seed=1), make()
    for seed in range(2):
        train_step(model, opt, *batch(b, seed)[:2])
    state, weights = opt.state_dict(b), model.get_weights()
    name = opt.state_names[0]
    assert [state[f"{name}.{i}"].shape for i in range(6)] == [w.shape for w in weights]
    resumed, opt2 = mlp(SIZES, backend=b, seed=9), make()
    resumed.set_weights(weights)
    opt2.load_state_dict(state, b)
    for seed in range(2, 4):
        train_step(resumed, opt2, *batch(b, seed)[:2])
    for a, c in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, c)


class GivenColumnSums:
    """The default loss, reporting column sums the test chooses (not its gradient's): where they land shows
    that train_step handed them to the output layer instead of letting it sum its own."""

    def __init__(self, column_sums):
        self.column_sums = column_sums

    def __call__(self, backend, outputs, targets):
        return backend.softmax_cross_entropy(outputs, targets)


def step_gradient(backend, model, x, targets, **kwargs):
    """The flat gradient (without its slot) that train_step hands the hook; the update is skipped."""
    seen = {}

    def hook(buffer):
        seen["gradient"] = backend.to_host(buffer.gradient)
        return True

    train_step(model, SGD(0.1), x, targets, gradient_hook=hook, **kwargs)
    return seen["gradient"]


def test_a_loss_with_column_sums_gives_the_output_bias_gradient(backend64):
    b = backend64
    x, targets, _ = batch(b, seed=2)
    plain = step_gradient(b, mlp(SIZES, backend=b, seed=1), x, targets)
    given = np.array([1.0, -2.0, 3.0])
    taken = step_gradient(
        b, mlp(SIZES, backend=b, seed=1), x, targets, loss=GivenColumnSums(b.from_host(given))
    )
    np.testing.assert_array_equal(taken[-3:], given)
    np.testing.assert_array_equal(taken[:-3], plain[:-3])
    none = step_gradient(b, mlp(SIZES, backend=b, seed=1), x, targets, loss=GivenColumnSums(None))
    np.testing.assert_array_equal(none, plain)


def test_train_step_passes_the_step_and_first_row_to_the_dropout_masks(backend64):
    """Rows from 0 unless told otherwise: a shard's gradient is that of its rows of the whole batch's masks."""
    b = backend64
    x, targets, _ = batch(b, seed=4, rows=10)

    def by_hand(x, targets, first_row):
        model = mlp(SIZES, backend=b, seed=1, dropout=0.5)
        outputs, backprop = model.begin_update(x, step=3, first_row=first_row)
        backprop(b.softmax_cross_entropy(outputs, targets)[1])
        return b.to_host(model.buffer.collect_gradient())[:-1]

    model = mlp(SIZES, backend=b, seed=1, dropout=0.5)
    np.testing.assert_array_equal(step_gradient(b, model, x, targets, step=3), by_hand(x, targets, 0))
    shard_x, shard_targets = x[6:, :], targets[6:, :]
    shard = step_gradient(
        b, mlp(SIZES, backend=b, seed=1, dropout=0.5), shard_x, shard_targets, step=3, first_row=6
    )
    np.testing.assert_array_equal(shard, by_hand(shard_x, shard_targets, 6))
    assert not np.array_equal(shard, by_hand(shard_x, shard_targets, 0))


def test_a_models_own_parameters_are_found_in_its_buffer():
    """ParameterBuffer.of returns the buffer the Params live in (the optimizer updates the model's buffer,
    not a copy); other Params, a subset, or another backend get a new buffer that adopts them."""
    from gpunn.nn.flat import ParameterBuffer

    cpu = get_backend("cpu", "float64")
    model = mlp(SIZES, backend=cpu, seed=1)
    assert ParameterBuffer.of(model.parameters(), cpu) is model.buffer
    assert ParameterBuffer.of(model.buffer, None) is model.buffer
    assert all(p.owner is model.buffer for p in model.parameters())
    subset = ParameterBuffer.of(model.parameters()[:2], cpu)
    assert subset is not model.buffer and subset.size == 6 * 5 + 5
    other = get_backend("cpu", "float32")
    moved = ParameterBuffer.of(mlp(SIZES, backend=cpu, seed=1).parameters(), other)
    assert moved.backend is other and moved.params[0].owner is moved
    empty = ParameterBuffer.of([], cpu)  # a model without parameters (activations only)
    assert empty.size == 0 and tuple(empty.gradient_with_slot.shape) == (1,)


def test_gradients_set_before_adoption_are_kept_with_a_zero_slot(backend64):
    from gpunn.nn import Param
    from gpunn.nn.flat import ParameterBuffer

    b = backend64
    params = [Param("a", b.from_host(np.zeros((2, 2)))), Param("b", b.from_host(np.zeros(3)))]
    params[0].grad, params[1].grad = (
        b.from_host(np.arange(4.0).reshape(2, 2)),
        b.from_host(np.array([5.0, 6, 7])),
    )
    buffer = ParameterBuffer(b, params)
    np.testing.assert_array_equal(b.to_host(buffer.gradient_with_slot), [0, 1, 2, 3, 5, 6, 7, 0])
    np.testing.assert_array_equal(b.to_host(params[1].grad), [5, 6, 7])


def test_train_step_calls_backprop_with_the_gradient_alone_when_the_loss_has_no_column_sums():
    # Models whose backprop takes only the gradient (the scikit-learn estimators' network) train through
    # train_step too: output_bias_grad is passed only when the loss summed the columns.
    backend = get_backend("cpu", "float64")
    model = mlp(SIZES, backend=backend)

    class OneArgument:
        def __init__(self, inner):
            self.backend, self.buffer, self.inner = inner.backend, inner.buffer, inner

        def begin_update(self, x, step=None, first_row=0):
            outputs, backprop = self.inner.begin_update(x, step, first_row)
            return outputs, lambda grad: backprop(grad)

    x, y, _ = batch(backend)
    before = model.get_weights()
    result = train_step(OneArgument(model), SGD(0.1), x, y)
    assert result is not None and np.isfinite(float(backend.to_host(result.loss)))
    assert not np.array_equal(before[0], model.get_weights()[0])
