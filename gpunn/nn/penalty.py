"""scikit-learn's `alpha`: an L2 term on the Dense weights (not biases), over the batch's weight.

loss + 0.5 * alpha * sum ||W||^2 / (the batch's sum of sample weights). Its gradient, alpha * W over that
sum, cannot be an optimizer's weight decay (which is not divided by the batch's weight and reaches the
biases too), so `gradient_hook` adds it between backward and update: train_step's hook.
"""

from __future__ import annotations

import numpy as np

from gpunn.nn.layers import Dense
from gpunn.nn.losses import targets_and_weights


class L2Penalty:
    """`loss` (any gpunn loss) with the L2 term of `alpha` on `model`'s Dense weights added."""

    def __init__(self, loss, model, alpha: float):
        self.loss, self.alpha = loss, float(alpha)
        self.weights = [layer.weight for layer in model.layers if isinstance(layer, Dense)]
        self.scale = 0.0  # alpha / the last batch's sum of weights, for the hook
        self._mask = None  # (buffer, flat 1 on weights and 0 on biases)

    def __call__(self, backend, outputs, targets):
        value, grad = self.loss(backend, outputs, targets)
        if self.alpha:
            xp, total = backend.xp, targets_and_weights(backend, targets)[2]
            squares = sum(xp.sum(w.value * w.value) for w in self.weights)
            value = value + (0.5 * self.alpha) * squares / total
            self.scale = self.alpha / total
        return value, grad

    def gradient_hook(self, buffer) -> bool:
        """Adds scale * W to the weights' gradients in the model's flat buffer; never skips the update."""
        if self.alpha:
            gradient, n = buffer.gradient_with_slot, buffer.size
            penalised = gradient[:n] + (self.scale * buffer.values) * self._weights_mask(buffer)
            buffer.set_gradient(buffer.backend.concat([penalised, gradient[n:]]))
        return False

    def _weights_mask(self, buffer):
        if self._mask is None or self._mask[0] is not buffer:
            ids = {id(w) for w in self.weights}
            flags = [float(id(p) in ids) for p in buffer.params]
            mask = np.concatenate(
                [np.full(size, flag) for size, flag in zip(buffer.sizes, flags, strict=True)]
            )
            self._mask = (buffer, buffer.backend.from_host(mask))
        return self._mask[1]
