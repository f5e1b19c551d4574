"""gpunn's kernels whose index mixes a row and a width, launched past 2^31 elements.

Each case sizes its arrays so that the elements of the launch's last blocks sit past 2^31 (the arrays are
sparse files: 8 GiB of float32 costs only the pages those blocks touch), launches the full grid CuPy would
(limits.elementwise_geometry) but runs only its last blocks (executor.launch blocks=), and compares what
they wrote with the generic primitive of gpunn/backend/base.py on the same rows. A 32-bit index lands
outside the buffer, in its guard (an invalid-address fault), or overflows (UBSan, in the "asan" mode).

run(name) -> mismatch lines (empty when right); a fault raises executor.KernelFault. calls() describes
each case's launch (for generating the CuPy sources in one subprocess).
PLANTED[name]: the 32-bit version of that kernel's index line, as a text edit.
"""

from __future__ import annotations

import numpy as np

from gpu_proof import elementwise, executor
from gpu_proof.gpunn_kernels import mismatches, reference
from gpunn.backend.kernels import KERNELS

BIG = 2**31
KERNEL_NAMES = (
    "gather_images", "gather_batch", "bias_relu", "softmax_xent_rows", "softmax_xent_totals", "relu_backward_bias",
)  # fmt: skip

# The gathers of one-pixel images: a batch of more than 2^31 rows from more than 2^31 stored images, the
# only shapes where the row (i / width) and the image number (rows[r]) themselves pass 2^31 (a layer's
# width and the classes cannot: gpunn.nn.model.MAX_PARAMETERS is 2^28).
ONE_PIXEL = "[1 pixel]"
ROW_CASES = ("gather_images" + ONE_PIXEL, "gather_batch" + ONE_PIXEL)

PLANTED = {
    "gather_images": ("(long long)rows[r] * width", "(int)rows[r] * (int)width"),
    "gather_batch": ("(long long)rows[r] * width", "(int)rows[r] * (int)width"),
    "bias_relu": ("bias[i % width]", "bias[(int)i % width]"),
    "softmax_xent_rows": ("const long long base = i * classes;", "const int base = i * classes;"),
    "softmax_xent_totals": ("const long long base = i * classes;", "const int base = i * classes;"),
    "relu_backward_bias": ("const ptrdiff_t k = r * width + i;", "const int k = r * width + i;"),
}


def planted(name: str):
    old, new = PLANTED[name]
    return lambda text: text.replace(old, new)


def _last_blocks(n: int, count: int) -> list[int]:
    grid = (n + 127) // 128
    return list(range(grid - count, grid))


def _case(name: str, memory, rng, dtype: str):
    """(args, size, blocks, checks): checks read the touched elements after the launch."""
    ref, t, kernel = reference(dtype), np.dtype(dtype).type, name.removesuffix(ONE_PIXEL)
    if kernel in ("gather_images", "gather_batch"):
        # 784 pixels: past 2^31 elements; 1 pixel: past 2^31 batch rows and stored images as well
        width, tail = (1, 128) if name.endswith(ONE_PIXEL) else (784, 2)
        count = BIG // width + 8  # images and batch rows: both past 2^31 elements
        images = memory.alloc((count, width), np.uint8)
        rows, labels = memory.alloc(count, np.int64), memory.alloc(count, np.int64)
        x = memory.alloc((count, width), dtype)
        # the last blocks cover the last `tail` rows (or part of them); each reads the image before its own
        # (the first of them the last image), so rows past 2^31 read images past 2^31
        order = np.roll(np.arange(tail), 1)
        rows[count - tail :] = count - tail + order
        images[count - tail :] = rng.integers(0, 256, (tail, width), dtype=np.uint8)
        labels[count - tail :] = rng.integers(0, 10, tail)
        n = count * width
        blocks = _last_blocks(n, 7 if width > 1 else 1)
        first = blocks[0] * 128
        expected_x = ref.gather_images(np.array(images[count - tail :]), order)
        got_x = lambda: x.reshape(-1)[first:].reshape(-1)  # noqa: E731
        checks = [("x (last elements)", got_x, expected_x.reshape(-1)[first - (count - tail) * width :])]
        if kernel == "gather_images":
            return [images, rows, width, x], None, blocks, checks
        batch_labels = memory.alloc(count, np.int64)
        last_label = np.array(labels[count - 2 : count - 1])  # the last row reads the image before it
        checks.append(("batch_labels (last row)", lambda: batch_labels[count - 1 :], last_label))
        return [images, rows, labels, width, x, batch_labels], None, blocks, checks
    if name == "bias_relu":
        width, rows = 1024, BIG // 1024 + 1
        bias, z = memory.put(rng.standard_normal(width).astype(dtype)), memory.alloc((rows, width), dtype)
        z[-1] = rng.standard_normal(width).astype(dtype)
        z[-2] = rng.standard_normal(width).astype(dtype)
        expected = ref.relu(np.array(z[-2:]) + np.array(bias))
        blocks = _last_blocks(rows * width, 16)
        return [bias, width, z], None, blocks, [("z (last 2 rows)", lambda: z[-2:], expected)]
    if name in ("softmax_xent_rows", "softmax_xent_totals"):
        classes, rows = 1024, BIG // 1024 + 128  # the last block's 128 rows start past 2^31 elements
        logits, labels = memory.alloc((rows, classes), dtype), memory.alloc(rows, np.int64)
        sub_logits = rng.standard_normal((128, classes)).astype(dtype)
        sub_labels = rng.integers(0, classes, 128)
        logits[-128:], labels[-128:] = sub_logits, sub_labels
        targets = ref.one_hot(sub_labels, classes)
        loss, grad128, correct = ref.softmax_cross_entropy_counted(sub_logits, targets, sub_labels)
        expected_grad = grad128 * t(128) / t(rows)  # the kernel divides by the whole batch's m
        grad, loss_rows, hits = (
            memory.alloc((rows, classes), dtype),
            memory.alloc(rows, dtype),
            memory.alloc(rows, np.int64),
        )
        checks = [
            ("grad (last 128 rows)", lambda: grad[-128:], expected_grad),
            ("sum(loss_row) of them * m / 128", lambda: loss_rows[-128:].sum() * t(rows) / t(128), loss),
            ("sum(hit) of them", lambda: hits[-128:].sum(), correct),
        ]
        blocks = _last_blocks(rows, 1)
        if name == "softmax_xent_rows":
            targets_all = memory.alloc((rows, classes), dtype)
            targets_all[-128:] = targets
            args = [logits, targets_all, labels, classes, t(rows), grad, loss_rows, hits]
            return args, None, blocks, checks
        done = memory.alloc(1, np.uint32)  # 128 tickets of `rows`: the last-thread part is not reached
        outs = [grad, loss_rows, hits, done, memory.alloc((), dtype), memory.alloc((), np.int64)]
        outs += [memory.alloc((), np.float64), memory.alloc((), np.int64), memory.alloc(classes, dtype)]
        checks.append(("done (tickets taken)", lambda: done, np.array([128], np.uint32)))
        sums = [memory.put(np.array(0.0)), memory.put(np.array(0, np.int64))]
        return [logits, labels, classes, t(rows), *sums, *outs], rows, blocks, checks
    if name == "relu_backward_bias":
        width, rows = 2**20, BIG // 2**20 + 1  # one thread per column, each summing 2049 rows
        grad, y = memory.alloc((rows, width), dtype), memory.alloc((rows, width), dtype)
        masked, bias_grad = memory.alloc((rows, width), dtype), memory.alloc(width, dtype)
        sub_grad = rng.standard_normal((rows, 128)).astype(dtype)
        sub_y = ref.relu(rng.standard_normal((rows, 128)).astype(dtype))
        grad[:, -128:], y[:, -128:] = sub_grad, sub_y
        expected = ref.relu_backward(sub_grad, sub_y)
        checks = [
            ("masked (last 128 columns)", lambda: masked[:, -128:], expected),
            ("bias_grad (last 128 columns)", lambda: bias_grad[-128:], ref.column_sums(expected)),
        ]
        return [grad, y, rows, masked, bias_grad], None, _last_blocks(width, 1), checks
    raise KeyError(f"no size case for {name!r}")


def calls(dtype: str = "float32") -> list:
    """(kernel, dtype, kernels.Call) of run()'s launch of each case of KERNEL_NAMES and ROW_CASES."""
    described = []
    for name in KERNEL_NAMES + ROW_CASES:
        with executor.DeviceMemory() as memory:
            args, size, _, _ = _case(name, memory, np.random.default_rng(0), dtype)
            kernel = KERNELS[name.removesuffix(ONE_PIXEL)]
            described.append((kernel, dtype, elementwise.describe(args, memory=memory, size=size)))
    return described


def run(name: str, dtype: str = "float32", *, edit=None, mode: str = "weak", seed: int = 0) -> list[str]:
    with executor.DeviceMemory() as memory:
        args, size, blocks, checks = _case(name, memory, np.random.default_rng(seed), dtype)
        try:
            elementwise.call(
                KERNELS[name.removesuffix(ONE_PIXEL)],
                dtype,
                args,
                memory=memory,
                size=size,
                edit=edit,
                mode=mode,
                blocks=blocks,
                seed=seed,
            )
        except executor.KernelFault as exc:
            # without the frames below, whose arguments are these mapped arrays: a report formatted after
            # DeviceMemory unmapped them (pytest's traceback) would read unmapped memory
            raise exc.with_traceback(None) from None
        results = [(what, np.array(got()), np.asarray(expected)) for what, got, expected in checks]
    return mismatches(results, dtype)
