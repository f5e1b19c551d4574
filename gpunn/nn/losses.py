"""Losses: each returns (loss as a 0-d device array, gradient with respect to its input).

Keeping the loss on the device lets a training epoch add losses up without a host synchronisation.
Means: MSE and BCE average over every element; the cross-entropies average over rows (samples).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gpunn.errors import ShapeError
from gpunn.nn.layers import Exp, Identity, Sigmoid, Softmax

CLIP_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] before log, as the seed does


def as_targets(backend, targets, classes: int):
    """Integer labels (N,) or one-hot/probabilities (N, classes) -> (N, classes) floats on the device.

    Integer labels are range-checked, which reads one boolean back from the device.
    """
    backend.check(targets)
    xp = backend.xp
    if backend.is_integral(targets):
        if targets.ndim != 1:
            raise ShapeError(f"integer labels must be 1-D, got shape {tuple(targets.shape)}")
        out_of_range = xp.any((targets < 0) | (targets >= classes))
        if bool(backend.to_host(out_of_range)):
            checked_labels(backend.to_host(targets), classes)
        return backend.one_hot(targets, classes)
    if tuple(targets.shape[1:]) != (classes,):
        raise ShapeError(f"targets of shape {tuple(targets.shape)} do not match {classes} classes")
    return backend.astype(targets, backend.dtype)


def checked_labels(labels, classes: int):
    """Host integer labels, returned unchanged when all lie in [0, classes), else a ShapeError naming one.

    A training set's labels are checked once here before they are uploaded, so no batch reads back.
    """
    bad = labels[(labels < 0) | (labels >= classes)]
    if bad.size:
        raise ShapeError(f"label {int(bad[0])} is outside [0, {classes}): the model has {classes} classes")
    return labels


def _elementwise_inputs(backend, predictions, targets):
    """Checks shared by the element-wise losses: same device, same shape; returns (targets as floats, count)."""
    backend.check(predictions, targets)
    if tuple(predictions.shape) != tuple(targets.shape):
        raise ShapeError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} differ")
    size = predictions.shape[0] * (predictions.shape[1] if predictions.ndim > 1 else 1)
    return backend.astype(targets, backend.dtype), size


class MSE:
    """mean((p - y)^2) over every element; gradient 2 (p - y) / size."""

    def __call__(self, backend, predictions, targets):
        y, size = _elementwise_inputs(backend, predictions, targets)
        diff = predictions - y
        return backend.xp.sum(diff * diff) / size, (2.0 / size) * diff


class BinaryCrossEntropy:
    """-mean(y log p + (1 - y) log(1 - p)) on probabilities clipped to [eps, 1 - eps]."""

    def __call__(self, backend, probabilities, targets):
        y, size = _elementwise_inputs(backend, probabilities, targets)
        xp = backend.xp
        p = xp.clip(probabilities, CLIP_EPS, 1.0 - CLIP_EPS)
        loss = -xp.sum(y * xp.log(p) + (1.0 - y) * xp.log(1.0 - p)) / size
        return loss, (p - y) / (p * (1.0 - p)) / size


class BinaryCrossEntropyWithLogits:
    """BCE of sigmoid(z), in the stable form max(z, 0) - z y + log(1 + exp(-|z|)); gradient (sigmoid(z) - y)."""

    def __call__(self, backend, logits, targets):
        y, size = _elementwise_inputs(backend, logits, targets)
        xp = backend.xp
        per_element = (
            xp.maximum(logits, xp.zeros_like(logits)) - logits * y + xp.log1p(xp.exp(-xp.abs(logits)))
        )
        sigmoid = 0.5 * (1.0 + xp.tanh(0.5 * logits))
        return xp.sum(per_element) / size, (sigmoid - y) / size


class CategoricalCrossEntropy:
    """-sum(y log p) / m on probabilities (e.g. after a Softmax layer), clipped to [eps, 1 - eps]."""

    def __call__(self, backend, probabilities, targets):
        backend.check(probabilities, targets)
        y = as_targets(backend, targets, probabilities.shape[1])
        xp = backend.xp
        p = xp.clip(probabilities, CLIP_EPS, 1.0 - CLIP_EPS)
        m = p.shape[0]
        return -xp.sum(y * xp.log(p)) / m, -(y / p) / m


class SoftmaxCrossEntropy:
    """Softmax + cross-entropy fused on logits: stable log-sum-exp, gradient (p - y) / m."""

    def __call__(self, backend, logits, targets):
        backend.check(logits, targets)
        return backend.softmax_cross_entropy(logits, as_targets(backend, targets, logits.shape[1]))

    def with_correct(self, backend, logits, targets, labels):
        """(loss, gradient, number of rows whose argmax is the label) in one backend call."""
        backend.check(logits, targets, labels)
        targets = as_targets(backend, targets, logits.shape[1])
        return backend.softmax_cross_entropy_counted(logits, targets, labels)


class SoftmaxCrossEntropyTotals(SoftmaxCrossEntropy):
    """Softmax cross-entropy on a training set's integer labels that also adds each batch into the epoch's
    running totals (float64 loss x rows, int64 correct count), all in one device pass (one launch on a GPU).

    The labels are the targets (pass them as both) and are trusted to lie in [0, classes): the caller checked
    them once on the host (checked_labels), so no batch pays the range check's read-back.
    After a step, `totals` holds the new (loss_sum, correct); the arrays given are left as they were, so a
    step abandoned after its loss (a distributed stop) leaves the epoch's totals untouched.

    The same pass sums the gradient's columns: `column_sums`, the output Dense layer's bias gradient, which
    train_step hands to the model's backprop so that layer launches no sum of its own. column_sums_into: the
    array to write them to (the model's `output_bias_grad`, a view of its flat gradient buffer), so that
    handing them over copies nothing.
    """

    def __init__(self, loss_sum, correct, column_sums_into=None):
        self.totals = (loss_sum, correct)
        self.column_sums_into, self.column_sums = column_sums_into, None

    def with_correct(self, backend, logits, targets, labels):
        if targets is not labels:
            raise ValueError(
                "SoftmaxCrossEntropyTotals takes the integer labels as its targets: pass them as both"
            )
        loss, grad, correct, loss_sum, correct_sum, self.column_sums = backend.softmax_cross_entropy_totals(
            logits, labels, *self.totals, column_sums_out=self.column_sums_into
        )
        self.totals = (loss_sum, correct_sum)
        return loss, grad, correct


def loss_and_correct(loss, backend, outputs, targets, labels):
    """(loss, gradient, correct count) for any loss: its fused `with_correct` when it has one."""
    if hasattr(loss, "with_correct"):
        return loss.with_correct(backend, outputs, targets, labels)
    value, grad = loss(backend, outputs, targets)
    return value, grad, backend.count_correct(outputs, labels)


# ---- losses on the output layer's pre-activation, with their output activation as the link -------------------
class WeightedTargets(NamedTuple):
    """Targets with a weight per row (None: all 1): a weighted loss averages over the sum of the weights."""

    values: object
    weights: object = None


def targets_and_weights(backend, targets):
    """(target values, row weights or None, the sum of the weights: the rows' count without weights)."""
    values, weights = targets if isinstance(targets, WeightedTargets) else (targets, None)
    return values, weights, (values.shape[0] if weights is None else backend.xp.sum(weights))


def _weighted_mean_rows(backend, per_row, weights, total):
    """sum over rows of per_row * w / sum(w) (the plain mean without weights): numpy.average along axis 0."""
    if weights is not None:
        per_row = per_row * backend.xp.reshape(weights, (-1, 1))
    return backend.xp.sum(per_row, axis=0) / total


def _xlogy(backend, x, y):
    """x log y, and 0 where x is 0 (scipy.special.xlogy)."""
    xp = backend.xp
    safe = xp.where(x == 0, xp.ones_like(y), y)
    return xp.where(x == 0, xp.zeros_like(x), x * xp.log(safe))


class LinkedLoss:
    """A loss on the output layer's pre-activation z, its output activation (`link`, a Layer) being the
    loss's canonical link, as scikit-learn's MLPs pair them: the gradient with respect to z is
    (link(z) - y) times each row's weight, over the sum of the weights.

    targets: float rows of the backend's dtype, or WeightedTargets of them (one-hot rows for LogLoss).
    `outputs(backend, z)` is the prediction (the link applied).
    """

    link: type = Identity

    def __init__(self):
        self._link = self.link()

    def outputs(self, backend, z):
        self._link.bind(backend)
        return self._link.forward(z)

    def log_outputs(self, backend, z):
        """log(outputs(z)): the log of each output where it is positive (so it agrees with the outputs, ties
        and all), and the link's log computed in log space where the output underflowed to 0 (finite there,
        where log(outputs) would be -inf)."""
        xp = backend.xp
        out = self.outputs(backend, z)
        positive = out > 0
        return xp.where(
            positive, xp.log(xp.where(positive, out, xp.ones_like(out))), self._log_space(backend, z)
        )

    def _log_space(self, backend, z):
        return backend.xp.log(self.outputs(backend, z))

    def __call__(self, backend, z, targets):
        y, weights, total = targets_and_weights(backend, targets)
        out = self.outputs(backend, z)
        delta = out - y
        if weights is not None:
            delta = delta * backend.xp.reshape(weights, (-1, 1))
        return self.value(backend, y, out, weights, total), delta / total

    def value(self, backend, y, out, weights, total):
        raise NotImplementedError


class HalfSquaredError(LinkedLoss):
    """0.5 * the mean squared error over outputs (of the weighted mean over rows): scikit-learn's
    squared_error; identity link. The gradient is scikit-learn's delta, (z - y) over the rows' weight: the
    loss's own gradient for one output, k times it for k outputs (scikit-learn divides the value alone by k)."""

    link = Identity

    def value(self, backend, y, out, weights, total):
        diff = y - out
        return 0.5 * backend.xp.mean(_weighted_mean_rows(backend, diff * diff, weights, total))


class PoissonLoss(LinkedLoss):
    """sum over outputs of the mean of y log(y / mu) - y + mu, mu = exp(z): scikit-learn's poisson."""

    link = Exp

    def value(self, backend, y, out, weights, total):
        per = _xlogy(backend, y, y / out) - y + out
        return backend.xp.sum(_weighted_mean_rows(backend, per, weights, total))


def _clipped(backend, probabilities):
    eps = float(np.finfo(backend.dtype_name).eps)  # scikit-learn clips to its dtype's eps
    return backend.xp.clip(probabilities, eps, 1.0 - eps)


class LogLoss(LinkedLoss):
    """-sum y log p over classes (mean over rows), p = softmax(z) clipped: scikit-learn's log_loss."""

    link = Softmax

    def _log_space(self, backend, z):
        """log softmax: z - max - log(sum(exp(z - max)))."""
        xp = backend.xp
        shifted = z - xp.max(z, axis=1, keepdims=True)
        return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))

    def value(self, backend, y, out, weights, total):
        per = _xlogy(backend, y, _clipped(backend, out))
        return -backend.xp.sum(_weighted_mean_rows(backend, per, weights, total))


class BinaryLogLoss(LinkedLoss):
    """-sum of y log p + (1 - y) log(1 - p) per output (mean over rows), p = sigmoid(z) clipped:
    scikit-learn's binary_log_loss (binary and multilabel classifiers)."""

    link = Sigmoid

    def outputs(self, backend, z):
        """sigmoid(z) as exp(log sigmoid(z)): a tiny probability stays positive where the Sigmoid layer's
        tanh form (1 + tanh(z/2) cancels to 0 below z = -38) would round it to 0, as scipy's expit does."""
        return backend.xp.exp(self._log_space(backend, z))

    def _log_space(self, backend, z):
        """log sigmoid(z) = -softplus(-z) = -(max(-z, 0) + log(1 + exp(-|z|)))."""
        xp = backend.xp
        return -(xp.maximum(-z, xp.zeros_like(z)) + xp.log1p(xp.exp(-xp.abs(z))))

    def value(self, backend, y, out, weights, total):
        p = _clipped(backend, out)
        per = _xlogy(backend, y, p) + _xlogy(backend, 1.0 - y, 1.0 - p)
        return -backend.xp.sum(_weighted_mean_rows(backend, per, weights, total))
