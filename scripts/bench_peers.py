"""The implementations scripts/bench.py and scripts/cost_growth.py time: one MLP epoch each, same data.

Every maker takes (sizes, batch, x, y) and returns run(steps=None): one shuffled epoch of SGD (lr 0.1,
softmax cross-entropy), or only its first `steps` steps, ending with the implementation's own
synchronisation (a host read of the epoch's loss). x is uint8 (N, 784-ish), y int64; each implementation
scales the pixels by 1/255 itself. The weights start from gpunn's He init (seed 0) where the library lets
us set them (not scikit-learn, which draws its own on the first partial_fit). A maker raises ImportError
when its library is missing.
"""

from __future__ import annotations

import time

import numpy as np

LR = 0.1


def initial_weights(sizes: list[int]) -> list[np.ndarray]:
    """gpunn's He-initialised float32 weights (in, out) and biases, seed 0: the start every peer shares."""
    from gpunn.nn import mlp

    return [np.asarray(w, dtype=np.float32) for w in mlp(sizes, seed=0).get_weights()]


def gemm_flops_per_sample(sizes: list[int], first_input_grad: bool = False) -> int:
    """2*m*n*k per sample for forward x@W and backward dW of every layer, dX of all but the first (gpunn
    skips the input's gradient, which nobody reads); first_input_grad=True counts that one too."""
    weights = [a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    return 2 * (2 * sum(weights) + sum(weights[0 if first_input_grad else 1 :]))


def batch_starts(n: int, batch: int, steps: int | None) -> range:
    """Where each step's rows begin: the whole epoch, or its first `steps` steps."""
    starts = range(0, n, batch)
    return starts if steps is None else starts[:steps]


# ---- gpunn: the step `gpunn train` takes, fed as its loop feeds it ----------------------------------------
def gpunn_epoch(device: str, sizes, batch, x, y):
    from gpunn.backend import get_backend
    from gpunn.nn import SGD, mlp
    from gpunn.nn.losses import SoftmaxCrossEntropyTotals
    from gpunn.nn.step import train_step

    backend = get_backend(device, "float32")
    model = mlp(sizes, backend=backend, seed=0)
    opt = SGD(LR)
    x_dev, y_dev = backend.from_host(x, copy=False), backend.from_host(y, copy=False)
    rng = np.random.default_rng(0)
    n = len(y)

    def run(steps=None):
        order = backend.from_host(rng.permutation(n))
        loss_sum = backend.from_host(np.array(0.0), dtype="float64")
        correct = backend.from_host(np.array(0, dtype=np.int64))
        for start in batch_starts(n, batch, steps):
            rows = order[start : min(start + batch, n)]
            x_batch, labels = backend.gather_batch(x_dev, y_dev, rows)
            # the loss adds the epoch's totals up and writes the output bias's gradient, as in gpunn train
            loss = SoftmaxCrossEntropyTotals(loss_sum, correct, column_sums_into=model.output_bias_grad)
            train_step(model, opt, x_batch, labels, loss=loss, labels=labels)
            loss_sum, correct = loss.totals
        backend.to_host(loss_sum), backend.to_host(correct)  # the epoch's synchronisation, as in gpunn train

    return run


def gpunn_train_epochs(device: str, x, y, epochs: int) -> list[float]:
    """gpunn.train itself (recipe classic: SGD lr 0.1, batch 128, 784-128-64-10) on the arrays: the
    seconds of each epoch as its history records them (training only: evaluation and saving are outside)."""
    import tempfile
    from pathlib import Path

    import gpunn

    test = (x[:2048], y[:2048])
    with tempfile.TemporaryDirectory() as out:
        result = gpunn.train(
            out=Path(out) / "run",
            recipe="classic",
            epochs=epochs,
            data=(x, y),
            test=test,
            device=device,
            dtype="float32",
            verbose=False,
            stall_check=False,  # random labels sit at chance level by design
        )
    return [record["seconds"] for record in result.history]


# ---- the classic from-scratch NumPy MLP (float64, weights (out, in), columns are samples) -----------------
def classic_epoch(sizes, batch, x, y):
    rng = np.random.default_rng(0)
    X = (x.astype(np.float64) / 255.0).T  # (784, N): samples are columns
    Y = np.eye(sizes[-1])[y].T  # (10, N)
    start_weights = initial_weights(sizes)
    W = [w.T.astype(np.float64) for w in start_weights[0::2]]
    b = [bias.reshape(-1, 1).astype(np.float64) for bias in start_weights[1::2]]
    layers = len(W)
    n = X.shape[1]

    def run(steps=None):
        perm = rng.permutation(n)
        Xs, Ys = X[:, perm], Y[:, perm]  # shuffled by copying the whole set, as the classic code does
        for start in batch_starts(n, batch, steps):
            A = [Xs[:, start : start + batch]]
            Yb = Ys[:, start : start + batch]
            m = A[0].shape[1]
            Z = []
            for layer in range(layers):
                Z.append(W[layer] @ A[-1] + b[layer])
                if layer < layers - 1:
                    A.append(np.maximum(0, Z[-1]))
                else:
                    e = np.exp(Z[-1] - Z[-1].max(axis=0, keepdims=True))
                    A.append(e / e.sum(axis=0, keepdims=True))
            dZ = (A[-1] - Yb) / m
            for layer in reversed(range(layers)):
                dW = dZ @ A[layer].T
                db = dZ.sum(axis=1, keepdims=True)
                if layer > 0:
                    dZ = (W[layer].T @ dZ) * (Z[layer - 1] > 0)
                W[layer] -= LR * dW
                b[layer] -= LR * db

    return run


# ---- PyTorch eager ---------------------------------------------------------------------------------------
def torch_epoch(device: str, sizes, batch, x, y):
    import torch

    torch.manual_seed(0)
    dev = torch.device(device)
    modules = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        modules.append(torch.nn.Linear(fan_in, fan_out))
        if index < len(sizes) - 2:
            modules.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*modules)
    start_weights = initial_weights(sizes)
    with torch.no_grad():
        for linear, w, b in zip(model[0::2], start_weights[0::2], start_weights[1::2], strict=True):
            linear.weight.copy_(torch.from_numpy(w.T.copy()))
            linear.bias.copy_(torch.from_numpy(b))
    model = model.to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    xt = torch.from_numpy(x).to(dev)
    yt = torch.from_numpy(y).to(dev)
    n = len(y)

    def run(steps=None):
        order = torch.randperm(n, device=dev)
        total = torch.zeros((), device=dev)
        for start in batch_starts(n, batch, steps):
            rows = order[start : start + batch]
            logits = model(xt[rows].float() / 255.0)
            loss = loss_fn(logits, yt[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        float(total)  # the synchronisation

    return run


# ---- JAX jit: the whole SGD step (gather, scaling, forward, backward, update) in one compiled function ----
def jax_epoch(platform: str, sizes, batch, x, y):
    import jax
    import jax.numpy as jnp

    device = jax.devices(platform)[0]
    start_weights = initial_weights(sizes)
    params = [jax.device_put(w, device) for w in start_weights]
    x_dev, y_dev = jax.device_put(x, device), jax.device_put(y.astype(np.int32), device)
    n = len(y)

    def loss_of(params, xb, yb):
        h = xb
        for layer in range(0, len(params), 2):
            h = h @ params[layer] + params[layer + 1]
            if layer < len(params) - 2:
                h = jax.nn.relu(h)
        logp = jax.nn.log_softmax(h)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

    def make_step(rows_per_step: int):
        def step(params, loss_sum, images, labels, order, start):
            rows = jax.lax.dynamic_slice(order, (start,), (rows_per_step,))
            xb = images[rows].astype(jnp.float32) / 255.0
            loss, grads = jax.value_and_grad(loss_of)(params, xb, labels[rows])
            return [p - LR * g for p, g in zip(params, grads, strict=True)], loss_sum + loss

        return jax.jit(step, donate_argnums=(0, 1))

    full_step, last_step = make_step(batch), make_step(n % batch) if n % batch else None
    key = jax.random.PRNGKey(0)
    state = {"params": params}

    def run(steps=None):
        nonlocal key
        key, sub = jax.random.split(key)
        order = jax.random.permutation(sub, n)
        p, loss_sum = state["params"], jax.device_put(jnp.float32(0.0), device)
        for start in batch_starts(n, batch, steps):
            step = full_step if start + batch <= n else last_step
            p, loss_sum = step(p, loss_sum, x_dev, y_dev, order, start)
        state["params"] = p
        float(loss_sum)  # the synchronisation

    return run


# ---- scikit-learn ----------------------------------------------------------------------------------------
def sklearn_epoch(sizes, batch, x, y):
    from sklearn.neural_network import MLPClassifier

    model = MLPClassifier(
        hidden_layer_sizes=tuple(sizes[1:-1]),
        solver="sgd",
        batch_size=batch,
        learning_rate_init=LR,
        momentum=0.0,
        random_state=0,
    )
    xf = x.astype(np.float32) / 255.0
    classes = np.arange(sizes[-1])

    def run(steps=None):
        if steps is not None:
            raise ValueError("scikit-learn's partial_fit runs whole epochs only")
        model.partial_fit(xf, y, classes=classes)

    return run


# ---- the GEMMs alone -------------------------------------------------------------------------------------
def gemms_alone(sizes, batch, n: int, steps: int | None = None):
    """run(): the float32 GEMMs gpunn's steps do, same shapes and layouts (x @ W, x.T @ g into the
    gradient, g @ W.T for all but the first layer), with nothing around them: an epoch's worth, or `steps`."""
    rng = np.random.default_rng(0)
    weights = [
        rng.standard_normal((a, b), dtype=np.float32) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
    ]
    grads_w = [np.empty_like(w) for w in weights]

    def arrays(rows: int):
        acts = [rng.standard_normal((rows, a), dtype=np.float32) for a in sizes[:-1]]
        grads = [rng.standard_normal((rows, b), dtype=np.float32) for b in sizes[1:]]
        outs = [np.empty((rows, b), dtype=np.float32) for b in sizes[1:]]
        dxs = [np.empty((rows, a), dtype=np.float32) for a in sizes[:-1]]
        return acts, grads, outs, dxs

    shapes = {batch: arrays(batch)}
    if n % batch:
        shapes[n % batch] = arrays(n % batch)

    def run():
        for start in batch_starts(n, batch, steps):
            acts, grads, outs, dxs = shapes[min(batch, n - start)]
            for layer, w in enumerate(weights):
                np.matmul(acts[layer], w, out=outs[layer])
            for layer in reversed(range(len(weights))):
                np.matmul(acts[layer].T, grads[layer], out=grads_w[layer])
                if layer:
                    np.matmul(grads[layer], weights[layer].T, out=dxs[layer])

    return run


def sgemm_peak_gflops(size: int = 2048, repeats: int = 3) -> float:
    """float32 GFLOP/s of a large square GEMM in this process, best of `repeats` after one warm-up."""
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, a, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def synthetic(n: int, features: int = 784, classes: int = 10, seed: int = 0):
    """MNIST-shaped random data: uint8 pixels, int64 labels (the same rows for every implementation)."""
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n, features), dtype=np.uint8),
        rng.integers(0, classes, n).astype(np.int64),
    )


# name -> (maker(sizes, batch, x, y), the module it needs): the rows of the bench and the scaling study
MAKERS = {
    "gpunn numpy": (lambda *a: gpunn_epoch("cpu", *a), "numpy"),
    "classic numpy (float64)": (classic_epoch, "numpy"),
    "pytorch eager cpu": (lambda *a: torch_epoch("cpu", *a), "torch"),
    "jax jit cpu": (lambda *a: jax_epoch("cpu", *a), "jax"),
    "sklearn MLPClassifier": (sklearn_epoch, "sklearn"),
    "gpunn cuda": (lambda *a: gpunn_epoch("cuda", *a), "cupy"),
    "pytorch eager cuda": (lambda *a: torch_epoch("cuda", *a), "torch"),
    "jax jit gpu": (lambda *a: jax_epoch("gpu", *a), "jax"),
}
TRAIN_EPOCH = {"gpunn train epoch": "cpu", "gpunn train epoch cuda": "cuda"}  # gpunn.train's whole epoch
CUDA_NAMES = ("gpunn cuda", "pytorch eager cuda", "jax jit gpu", "gpunn train epoch cuda")
