"""The one training step: forward, loss, backward, an optional gradient hook, and the optimizer update.

The model contract: `model.begin_update(x, step=, first_row=)` returns (outputs, backprop), and backprop(grad)
sets the gradients that `model.buffer` (a ParameterBuffer) collects. A loss that also summed its gradient's
columns (it has `column_sums`, not None) passes them as backprop(grad, output_bias_grad=...): the output
layer's bias gradient, which the model then does not compute again.

`gpunn train`, the scikit-learn estimators, the parity checks and the benchmark scripts all call it, so what
is timed and checked is what trains. The loss contract: `loss(backend, outputs, targets)` returns the mean
loss over the batch as a 0-d device array and its gradient with respect to `outputs` (gpunn.nn.losses).
Nothing here reads a device value back, so a GPU step queues work without synchronising.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from gpunn.nn.losses import SoftmaxCrossEntropy, loss_and_correct

softmax_cross_entropy = SoftmaxCrossEntropy()


class StepResult(NamedTuple):
    loss: object  # 0-d device array: the batch's mean loss
    correct: object  # 0-d device array of correct argmax predictions, or None without labels


def train_step(
    model,
    optimizer,
    x,
    targets,
    *,
    loss: Callable = softmax_cross_entropy,
    labels=None,
    gradient_hook: Callable | None = None,
    step: int | None = None,
    first_row: int = 0,
) -> StepResult | None:
    """One step on a device batch `x` with `targets` (one-hot rows or integer labels for the default loss).

    labels: integer labels to count correct predictions with (on the device). gradient_hook(buffer) runs
    between backward and update with the model's ParameterBuffer (its gradient collected); it may change the
    gradient in place or with `buffer.set_gradient` (a data-parallel allreduce) and returns True to skip the
    update and stop: then train_step returns None. step: the global step, which keys Dropout masks (a model
    with Dropout layers drops only when it is given); first_row: where x starts in the global batch (a
    rank's shard), so each rank's rows get their rows of the whole batch's masks.
    """
    result = backward(model, x, targets, loss=loss, labels=labels, step=step, first_row=first_row)
    if gradient_hook is not None and gradient_hook(model.buffer):
        return None
    optimizer.step(model.buffer)
    return result


def backward(
    model, x, targets, *, loss: Callable = softmax_cross_entropy, labels=None, step=None, first_row: int = 0
) -> StepResult:
    """train_step short of the hook and the update: forward, loss, backward, the gradient collected in
    `model.buffer.gradient`. L-BFGS calls it alone (SciPy makes its update on the host)."""
    backend = model.backend
    outputs, backprop = model.begin_update(x, step=step, first_row=first_row)
    if labels is None:
        (loss_value, grad), correct = loss(backend, outputs, targets), None
    else:
        loss_value, grad, correct = loss_and_correct(loss, backend, outputs, targets, labels)
    column_sums = getattr(loss, "column_sums", None)
    backprop(grad) if column_sums is None else backprop(grad, output_bias_grad=column_sums)
    model.buffer.collect_gradient()
    return StepResult(loss_value, correct)
