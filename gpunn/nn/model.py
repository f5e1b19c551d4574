"""Sequential: a stack of layers on one backend, with host-side weights for saving and moving."""

from __future__ import annotations

import numpy as np

from gpunn.backend import Backend, get_backend
from gpunn.errors import ShapeError
from gpunn.nn.flat import ParameterBuffer
from gpunn.nn.layers import Dense, Layer, activation, layer_from_description
from gpunn.rng import host_rng


class Sequential:
    """Layers applied in order. Weights are drawn from a host Generator(seed), then moved to the backend."""

    def __init__(
        self,
        layers: list[Layer],
        backend: Backend | str | None = None,
        seed: int | None = 0,
        dtype: str | None = None,
    ):
        self.layers = list(layers)
        self.backend = backend if isinstance(backend, Backend) else get_backend(backend, dtype)
        rng = host_rng(seed)
        for layer in self.layers:
            layer.bind(self.backend, rng)
        self.buffer = ParameterBuffer(self.backend, self.parameters())
        dense = [layer for layer in self.layers if isinstance(layer, Dense)]
        if dense:
            dense[0].need_input_grad = False  # nothing reads the gradient of the input data
        self.in_features = dense[0].in_features if dense else None

    # ---- the two passes --------------------------------------------------------------------------------
    def forward(self, x):
        """Forward pass on a device array (N, in_features) of the backend's dtype."""
        self.backend.check(x)
        self.backend.check_dtype(x)
        if x.ndim != 2 or (self.in_features is not None and x.shape[1] != self.in_features):
            raise ShapeError(
                f"input of shape {tuple(x.shape)} given to a model that expects (N, {self.in_features})"
            )
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad) -> None:
        """Backward pass from the loss gradient; leaves each Param's `.grad` set (in the flat buffer where the
        backend writes in place; `self.buffer.collect_gradient()` gathers them otherwise)."""
        for layer in reversed(self.layers):
            grad = layer.backward(grad)

    __call__ = forward

    # ---- parameters ------------------------------------------------------------------------------------
    def parameters(self) -> list:
        return [p for layer in self.layers for p in layer.params]

    def num_parameters(self) -> int:
        return sum(int(np.prod(p.value.shape)) for p in self.parameters())

    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(p.value.shape) for p in self.parameters()]

    def get_weights(self) -> list[np.ndarray]:
        """Host copies of every parameter, in order (one transfer of the flat buffer)."""
        return self.buffer.split_host(self.backend.to_host(self.buffer.values))

    def set_weights(self, weights: list[np.ndarray]) -> None:
        params = self.parameters()
        if len(weights) != len(params) or any(
            tuple(w.shape) != tuple(p.value.shape) for w, p in zip(weights, params, strict=False)
        ):
            raise ShapeError(
                f"weights of shapes {[tuple(w.shape) for w in weights]} do not fit this model's {self.shapes()}"
            )
        self.buffer.load_host([np.asarray(weight) for weight in weights])

    def to(self, device: Backend | str, dtype: str | None = None) -> Sequential:
        """Move every weight to another device (through the host) and return self."""
        target = (
            device if isinstance(device, Backend) else get_backend(device, dtype or self.backend.dtype_name)
        )
        for layer in self.layers:
            layer.bind(target)
        self.backend = target
        self.buffer = ParameterBuffer(target, self.parameters())
        return self

    # ---- description (for checkpoints) ----------------------------------------------------------------
    def describe(self) -> list[dict]:
        return [layer.describe() for layer in self.layers]

    @classmethod
    def from_description(
        cls, description: list[dict], backend: Backend | str | None = None, dtype: str | None = None
    ) -> Sequential:
        return cls([layer_from_description(d) for d in description], backend, seed=0, dtype=dtype)

    def save(self, path) -> None:
        """Weights and architecture only (no optimizer state), atomically, as a checkpoint .npz."""
        from gpunn.checkpoint import save_checkpoint

        save_checkpoint(path, self)

    @classmethod
    def load(cls, path, device=None, dtype: str | None = None) -> Sequential:
        """Rebuild a model from any gpunn checkpoint (a file or a run folder), on any device."""
        from gpunn.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(path)
        model = cls.from_description(checkpoint.architecture, device, dtype or checkpoint.header["dtype"])
        model.set_weights(checkpoint.weights)
        return model

    def predict_proba(self, x_host: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Softmax probabilities for host inputs: uint8 pixels (scaled on the device) or finite floats."""
        x_host = np.asarray(x_host)
        if x_host.dtype != np.uint8 and not np.all(np.isfinite(x_host)):
            raise ShapeError("input contains NaN or infinite values")
        out = []
        for start in range(0, len(x_host), batch_size):
            batch = self.backend.from_host(x_host[start : start + batch_size])
            if x_host.dtype == np.uint8:
                batch = self.backend.scale_images(batch)
            out.append(self.backend.to_host(self.backend.softmax(self.forward(batch))))
        return np.concatenate(out) if out else np.zeros((0, 0))


def mlp(
    sizes: list[int],
    activation_name: str = "relu",
    init: str = "he",
    backend=None,
    seed: int | None = 0,
    dtype: str | None = None,
    **kwargs,
) -> Sequential:
    """Dense layers of the given sizes with `activation` between them (none after the last: logits)."""
    activation_name = kwargs.pop("activation", activation_name)
    if kwargs:
        raise TypeError(f"unexpected arguments: {', '.join(kwargs)}")
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"an MLP needs at least two positive layer sizes, got {sizes}")
    layers: list[Layer] = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(Dense(fan_in, fan_out, init))
        if index < len(sizes) - 2:
            layers.append(activation(activation_name))
    return Sequential(layers, backend, seed=seed, dtype=dtype)
