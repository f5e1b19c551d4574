"""Sequential: a stack of layers on one backend, with host-side weights for saving and moving."""

from __future__ import annotations

import numpy as np

from gpunn.backend import Backend, dlpack, get_backend
from gpunn.errors import ShapeError
from gpunn.nn.flat import ParameterBuffer
from gpunn.nn.layers import Dense, Dropout, Layer, ReLU, activation, layer_from_description
from gpunn.rng import host_rng

# The most parameters a gpunn model may have (1 GiB of float32: far beyond any MLP this toolkit trains). One
# limit for every model built (Sequential checks it before allocating) and every checkpoint read.
MAX_PARAMETERS = 1 << 28


def mlp_parameters(sizes) -> int:
    """Weights and biases of Dense layers of these sizes: sum of (a + 1) * b over consecutive pairs."""
    sizes = [int(s) for s in sizes]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def check_parameter_count(count: int, what: str = "the model") -> None:
    if count > MAX_PARAMETERS:
        raise ShapeError(
            f"{what} would have {count:,} parameters ({count * 4 / 2**30:.1f} GiB as float32); a gpunn "
            f"model holds at most {MAX_PARAMETERS:,}: choose smaller layers"
        )


class Sequential:
    """Layers applied in order. Weights are drawn from a host Generator(seed), then moved to the backend.

    rng: a host generator to draw them from instead (a Generator or a RandomState: scikit-learn's
    estimators pass their `random_state`'s, so the same seed gives scikit-learn's weights).
    """

    def __init__(
        self,
        layers: list[Layer],
        backend: Backend | str | None = None,
        seed: int | None = 0,
        dtype: str | None = None,
        rng=None,
    ):
        self.layers = list(layers)
        check_parameter_count(  # before any allocation: a typo'd size is one line, not a MemoryError
            sum(int(np.prod(shape)) for layer in self.layers for _, shape in layer.parameter_shapes())
        )
        # what gpunn.train() trained it on ({"dataset", "classes", "data"}), recorded by save(); None: unknown
        self.trained_on: dict | None = None
        self.backend = backend if isinstance(backend, Backend) else get_backend(backend, dtype)
        rng = host_rng(seed) if rng is None else rng
        for layer in self.layers:
            layer.bind(self.backend, rng)
        self.buffer = ParameterBuffer(self.backend, self.parameters())
        dense = [layer for layer in self.layers if isinstance(layer, Dense)]
        if dense:
            dense[0].need_input_grad = False  # nothing reads the gradient of the input data
        sized = [layer.input_features() for layer in self.layers if layer.input_features() is not None]
        self.in_features = sized[0] if sized else None  # the first layer that fixes a width fixes the input
        for index, layer in enumerate(self.layers):
            if isinstance(layer, Dropout):  # its masks: keyed by the seed and its place in the model
                layer.seed, layer.stream = seed or 0, index

    # ---- the two passes --------------------------------------------------------------------------------
    def forward(self, x):
        """Inference on a device array (N, in_features) of the backend's dtype: the output alone (Dropout is
        identity), and no layer keeps any of the batch."""
        self._check_input(x)
        for layer, fused in self._stages():
            x = layer.forward_relu(x) if fused else layer.forward(x)
        return x

    def begin_update(self, x, step: int | None = None, first_row: int = 0):
        """A training pass: (outputs, backprop). backprop(grad of the outputs) leaves each Param's `.grad` set
        (in the flat buffer where the backend writes in place; `self.buffer.collect_gradient()` gathers them
        otherwise) and returns the input's gradient (None: no layer needed it). The pass's arrays live in
        backprop alone, so passes in flight are independent.

        `step` is the training step: given, Dropout layers drop (with masks keyed by it); None: they do not.
        `first_row`: where x starts in the global batch, when x is one rank's shard of it.
        backprop(grad, output_bias_grad=...): the output layer's bias gradient, already summed by the loss;
        the last layer takes it when it is a Dense (see output_bias_grad), any other computes its own.
        """
        self._check_input(x)
        backprops = []
        for layer, fused in self._stages():
            x, backprop = layer.begin_update_relu(x) if fused else layer.begin_update(x, step, first_row)
            backprops.append(backprop)
        output_is_dense = bool(self.layers) and isinstance(self.layers[-1], Dense)

        def backprop_all(grad, output_bias_grad=None):
            for index, backprop in enumerate(reversed(backprops)):
                if grad is None:  # the first Dense computes no input gradient: nothing before it reads one
                    break
                given = index == 0 and output_is_dense and output_bias_grad is not None
                grad = backprop(grad, bias_grad=output_bias_grad) if given else backprop(grad)
            return grad

        return x, backprop_all

    @property
    def output_bias_grad(self):
        """The output layer's bias gradient array when that layer is a Dense (a view of the flat gradient
        buffer), else None: where a loss that sums its gradient's columns writes them (SoftmaxCrossEntropyTotals),
        so the layer's backward neither sums nor copies."""
        last = self.layers[-1] if self.layers else None
        return last.bias.grad if isinstance(last, Dense) else None

    def _check_input(self, x) -> None:
        if not self.backend.is_sparse(
            x
        ):  # a sparse matrix from backend.sparse_from_host is the first Dense's
            self.backend.check(x)
            self.backend.check_dtype(x)
        if x.ndim != 2 or (self.in_features is not None and x.shape[1] != self.in_features):
            raise self._wrong_shape(x.shape)

    def _wrong_shape(self, shape) -> ShapeError:
        return ShapeError(
            f"input of shape {tuple(shape)} given to a model that expects (N, {self.in_features})"
        )

    def _stages(self):
        """(layer, fused) in order, where fused says a Dense runs the ReLU after it too (same arrays as the
        two layers apart, fewer launches) and that ReLU is skipped."""
        layers, k = self.layers, 0
        while k < len(layers):
            fused = isinstance(layers[k], Dense) and k + 1 < len(layers) and type(layers[k + 1]) is ReLU
            yield layers[k], fused
            k += 2 if fused else 1

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

    @property
    def out_features(self) -> int | None:
        """Width of the output (the number of classes of a classifier); None if no layer fixes it."""
        width = None
        for layer in self.layers:
            width = layer.output_features(width)
        return width

    @classmethod
    def from_description(
        cls, description: list[dict], backend: Backend | str | None = None, dtype: str | None = None
    ) -> Sequential:
        return cls([layer_from_description(d) for d in description], backend, seed=0, dtype=dtype)

    def save(self, path) -> None:
        """Weights and architecture (and the dataset it was trained on, when known; no optimizer state),
        atomically, as a checkpoint .npz."""
        from gpunn.checkpoint import save_checkpoint

        save_checkpoint(path, self, header=self.trained_on)

    @classmethod
    def load(cls, path, device=None, dtype: str | None = None) -> Sequential:
        """Rebuild a model from any gpunn checkpoint (a file or a run folder), on any device."""
        from gpunn.checkpoint import load_model

        return load_model(path, device, dtype)

    def predict_proba(self, x, batch_size: int = 4096) -> np.ndarray:
        """Softmax probabilities (a NumPy array) for uint8 pixels (scaled on the device) or finite floats.

        x may be a host array (NumPy, a list, a PyTorch CPU tensor, any DLPack array in host memory) or an
        array on this model's device (its own, or a CuPy array / CUDA tensor on the same GPU), which is
        used where it is, with no round trip through the host (see Backend.from_dlpack).
        """
        backend = self.backend
        if not isinstance(x, np.ndarray) and (dlpack.is_foreign_array(x) or backend._is_mine(x)):
            host = None if backend._is_mine(x) else dlpack.host_view(x)
            if host is None:
                return self._predict_device(backend.from_dlpack(x), batch_size)
            x = host
        x_host = np.asarray(x)
        if x_host.ndim != 2:
            raise self._wrong_shape(x_host.shape)
        if x_host.dtype != np.uint8 and not np.all(np.isfinite(x_host)):
            raise ShapeError("input contains NaN or infinite values")
        out = []
        for start in range(0, len(x_host), batch_size):
            batch = backend.from_host(x_host[start : start + batch_size])
            if x_host.dtype == np.uint8:
                batch = backend.scale_images(batch)
            out.append(backend.to_host(backend.softmax(self.forward(batch))))
        return np.concatenate(out) if out else np.zeros((0, 0))

    def _predict_device(self, x, batch_size: int) -> np.ndarray:
        """predict_proba for an array already on this device: batches are slices, only results come back."""
        backend, xp = self.backend, self.backend.xp
        if x.ndim != 2:
            raise self._wrong_shape(x.shape)
        images = x.dtype == xp.uint8
        if not images:
            x = backend.astype(x, backend.dtype)
            if not bool(backend.to_host(xp.all(xp.isfinite(x)))):
                raise ShapeError("input contains NaN or infinite values")
        out = []
        n = x.shape[0]
        for start in range(0, n, batch_size):
            batch = x[start : min(start + batch_size, n), ...]
            out.append(backend.softmax(self.forward(backend.scale_images(batch) if images else batch)))
        return backend.to_host(backend.concat(out)) if out else np.zeros((0, 0))


def mlp(
    sizes: list[int],
    activation_name: str = "relu",
    init: str = "he",
    backend=None,
    seed: int | None = 0,
    dtype: str | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> Sequential:
    """Dense layers of the given sizes with `activation` between them (none after the last: logits).

    dropout > 0 adds a Dropout layer after each hidden activation.
    """
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
            if dropout:
                layers.append(Dropout(dropout))
    return Sequential(layers, backend, seed=seed, dtype=dtype)
