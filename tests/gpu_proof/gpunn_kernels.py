"""Each kernel of gpunn/backend/kernels.py launched on the executor with the arguments CupyBackend passes,
next to the answer of the generic primitive in gpunn/backend/base.py (called on a NumpyBackend).

run(name, dtype) launches one kernel and returns [(output name, got, expected)]; mismatches() lists those
not close; calls() describes every case's launch, for generating their CuPy sources in one subprocess.
`edit` is a text edit of CuPy's translation unit (a planted bug, planted.py), the rest of the keyword
arguments go to executor.launch (mode, seed, resident, blocks, weak).
"""

from __future__ import annotations

import numpy as np

from gpu_proof import elementwise, executor
from gpunn.backend.base import Backend, adam_bias_corrections
from gpunn.backend.kernels import KERNELS
from gpunn.backend.numpy_backend import NumpyBackend

ROWS, CLASSES, WIDTH = 300, 10, 37  # 300 rows: three blocks of 128, the last one partial


def reference(dtype: str):
    """base.py's generic primitives on a NumPy backend of `dtype`."""
    backend = NumpyBackend(dtype)

    class Generic:  # base.py's primitive of each name, never a NumpyBackend override
        def __getattr__(self, name):
            return getattr(Backend, name).__get__(backend)

    return Generic()


def _inputs(name: str, memory, rng, dtype: str):
    """(args, size or None, expected outputs as [(name, device array, expected array)])."""
    ref, t = reference(dtype), np.dtype(dtype).type
    put = memory.put
    normal = lambda *shape: rng.standard_normal(shape).astype(dtype)  # noqa: E731
    if name == "relu":
        x = normal(ROWS, WIDTH)
        y = memory.alloc(x.shape, dtype)
        return [put(x), y], None, [("y", y, ref.relu(x))]
    if name == "bias_relu":
        z, bias = normal(ROWS, WIDTH), normal(WIDTH)
        dz = put(z)
        return [put(bias), WIDTH, dz], None, [("z", dz, ref.relu(z + bias))]
    if name == "relu_backward":
        grad, y = normal(ROWS, WIDTH), ref.relu(normal(ROWS, WIDTH))
        out = memory.alloc(grad.shape, dtype)
        return [put(grad), put(y), out], None, [("out", out, ref.relu_backward(grad, y))]
    if name == "softmax_xent":
        logits, labels = normal(ROWS, CLASSES), rng.integers(0, CLASSES, ROWS)
        targets = ref.one_hot(labels, CLASSES)
        row_max = logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits - row_max).sum(axis=1, keepdims=True))
        grad, terms = memory.alloc(logits.shape, dtype), memory.alloc(logits.shape, dtype)
        loss, expected_grad = ref.softmax_cross_entropy(logits, targets)
        args = [put(logits), put(row_max), put(log_norm), put(targets), t(ROWS), grad, terms]
        return (
            args,
            None,
            [("grad", grad, expected_grad), ("sum(loss_term) / m", lambda: terms.sum() / t(ROWS), loss)],
        )
    if name in ("flat_sgd", "flat_momentum", "flat_adam"):
        n = 1000
        value, grad = normal(n), normal(n)
        dv, dg = put(value), put(grad)
        if name == "flat_sgd":
            return [dg, t(0.1), t(0.01), dv], None, [("value", dv, ref.sgd_update(value, grad, 0.1, 0.01))]
        if name == "flat_momentum":
            velocity = normal(n)
            dvel = put(velocity)
            new_value, new_velocity = ref.momentum_update(value, grad, velocity, 0.1, 0.9, True, 0.01)
            args = [dg, t(0.1), t(0.9), t(0.01), True, dv, dvel]
            return args, None, [("value", dv, new_value), ("velocity", dvel, new_velocity)]
        m, v = normal(n), np.abs(normal(n))
        dm, dvv = put(m), put(v)
        lr, b1, b2, eps, step, wd = 0.01, 0.9, 0.999, 1e-8, 3, 0.01
        new = ref.adam_update(value, grad, m, v, lr, b1, b2, eps, step, wd)
        m_hat, v_hat = adam_bias_corrections(b1, b2, step)
        scalars = [t(s) for s in (lr, b1, b2, 1.0 - b1, 1.0 - b2, eps, m_hat, v_hat, wd)]
        return (
            [dg, *scalars, dv, dm, dvv],
            None,
            [("value", dv, new[0]), ("m", dm, new[1]), ("v", dvv, new[2])],
        )
    if name in ("gather_images", "gather_batch"):
        images = rng.integers(0, 256, (50, WIDTH), dtype=np.uint8)
        labels, rows = rng.integers(0, CLASSES, 50), rng.integers(0, 50, ROWS)
        x = memory.alloc((ROWS, WIDTH), dtype)
        if name == "gather_images":
            return (
                [put(images), put(rows), WIDTH, x],
                None,
                [("x", x, ref.gather_images(images, rows))],
            )
        batch_labels = memory.alloc(ROWS, np.int64)
        expected_x, expected_labels = ref.gather_batch(images, labels, rows)
        args = [put(images), put(rows), put(labels), WIDTH, x, batch_labels]
        return args, None, [("x", x, expected_x), ("batch_labels", batch_labels, expected_labels)]
    if name == "softmax_xent_rows":
        logits, labels = normal(ROWS, CLASSES), rng.integers(0, CLASSES, ROWS)
        targets = ref.one_hot(labels, CLASSES)
        grad, loss_rows, hits = (
            memory.alloc(logits.shape, dtype),
            memory.alloc(ROWS, dtype),
            memory.alloc(ROWS, np.int64),
        )
        loss, expected_grad, correct = ref.softmax_cross_entropy_counted(logits, targets, labels)
        args = [put(logits), put(targets), put(labels), CLASSES, t(ROWS), grad, loss_rows, hits]
        return (
            args,
            None,
            [
                ("grad", grad, expected_grad),
                ("sum(loss_row)", lambda: loss_rows.sum(), loss),
                ("sum(hit)", lambda: hits.sum(), correct),
            ],
        )
    if name == "relu_backward_bias":
        grad, y = normal(ROWS, WIDTH), ref.relu(normal(ROWS, WIDTH))
        masked, bias_grad = memory.alloc(grad.shape, dtype), memory.alloc(WIDTH, dtype)
        expected = ref.relu_backward(grad, y)
        args = [put(grad), put(y), ROWS, masked, bias_grad]
        return args, None, [("masked", masked, expected), ("bias_grad", bias_grad, ref.column_sums(expected))]
    if name == "batch_totals":
        loss_rows, hits = normal(ROWS), rng.integers(0, 2, ROWS)
        loss, correct = memory.alloc((), dtype), memory.alloc((), np.int64)
        args = [put(loss_rows), put(hits), ROWS, loss, correct]
        return args, 1, [("loss", loss, loss_rows.sum()), ("correct", correct, hits.sum())]
    if name == "softmax_xent_totals":
        logits, labels = normal(ROWS, CLASSES), rng.integers(-1, CLASSES, ROWS)  # -1: a label out of range
        loss_sum, correct_sum = np.array(2.5), np.array(7, dtype=np.int64)
        expected = ref.softmax_cross_entropy_totals(logits, labels, loss_sum, correct_sum)
        outs = [
            memory.alloc(logits.shape, dtype),
            memory.alloc(ROWS, dtype),
            memory.alloc(ROWS, np.int64),
            memory.put(np.zeros(1, np.uint32)),
            memory.alloc((), dtype),
            memory.alloc((), np.int64),
            memory.alloc((), np.float64),
            memory.alloc((), np.int64),
            memory.alloc(CLASSES, dtype),
        ]
        grad, _, _, done, loss, correct, new_loss_sum, new_correct_sum, column_sums = outs
        args = [put(logits), put(labels), CLASSES, t(ROWS), put(loss_sum), put(correct_sum), *outs]
        checks = [
            ("grad", grad, expected[1]),
            ("batch_loss", loss, expected[0]),
            ("batch_correct", correct, expected[2]),
            ("loss_sum", new_loss_sum, expected[3]),
            ("correct_sum", new_correct_sum, expected[4]),
            ("column_sums", column_sums, expected[5]),
            ("done", done, np.zeros(1, np.uint32)),
        ]
        return args, ROWS, checks
    if name == "add_to_totals":
        loss_sum, correct_sum = memory.put(np.array(2.5)), memory.put(np.array(7, dtype=np.int64))
        loss, correct = np.array(0.75, dtype=dtype), np.array(3, dtype=np.int64)
        expected = ref.add_to_totals(np.array(2.5), np.array(7), loss, correct, 64)
        args = [put(loss), put(correct), np.float64(64), loss_sum, correct_sum]
        return args, None, [("loss_sum", loss_sum, expected[0]), ("correct_sum", correct_sum, expected[1])]
    raise KeyError(f"no executor case for kernel {name!r}")


def run(name: str, dtype: str = "float32", *, edit=None, data_seed: int = 0, **launch_options) -> list:
    """Launch kernel `name` once; [(output, got, expected)] with got read after the launch."""
    with executor.DeviceMemory() as memory:
        args, size, checks = _inputs(name, memory, np.random.default_rng(data_seed), dtype)
        elementwise.call(KERNELS[name], dtype, args, memory=memory, size=size, edit=edit, **launch_options)
        return [
            (what, np.array(got() if callable(got) else got), np.asarray(expected))
            for what, got, expected in checks
        ]


def calls(dtypes=("float32", "float64")) -> list:
    """(kernel, dtype, kernels.Call) of run()'s launch of every kernel, for each dtype."""
    described = []
    for dtype in dtypes:
        for name, kernel in KERNELS.items():
            with executor.DeviceMemory() as memory:
                args, size, _ = _inputs(name, memory, np.random.default_rng(0), dtype)
                described.append((kernel, dtype, elementwise.describe(args, memory=memory, size=size)))
    return described


def mismatches(results, dtype: str) -> list[str]:
    """The outputs that differ from the reference beyond float rounding (exp/log of glibc vs NumPy's)."""
    rtol = 2e-5 if dtype == "float32" else 1e-12
    bad = []
    for what, got, expected in results:
        if got.shape != expected.shape or not np.allclose(got, expected, rtol=rtol, atol=rtol):
            bad.append(f"{what}: got {got.ravel()[:4]}..., expected {expected.ravel()[:4]}...")
    return bad
