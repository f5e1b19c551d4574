"""Accuracy, per-class accuracy and the confusion matrix of a model on a dataset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Rows per evaluation batch: their scaled float copy and activations are the run's largest temporaries
# (8192 rows put `gpunn train`'s peak memory at 169 MB, 2048 at 124 MB; scripts/bench.py measures it).
EVAL_BATCH = 2048


def model_inputs(backend, batch):
    """A batch as the model takes it: uint8 pixels scaled, float features (your own arrays') as they are."""
    return backend.scale_images(batch) if batch.dtype == backend.xp.uint8 else batch


def device_predictions(model, images_u8, batch_size: int = EVAL_BATCH):
    """Argmax predictions for device-resident uint8 features, batch by batch, staying on the device."""
    backend = model.backend
    out = []
    n = images_u8.shape[0]
    for start in range(0, n, batch_size):
        logits = model.forward(model_inputs(backend, images_u8[start : min(start + batch_size, n), ...]))
        out.append(backend.xp.argmax(logits, axis=1))
    return backend.concat(out) if out else backend.zeros((0,), dtype=backend.xp.int64)


def count_correct(model, images_u8, labels, batch_size: int = EVAL_BATCH):
    """Number of correct predictions as a 0-d device array (no host synchronisation)."""
    backend = model.backend
    hits = device_predictions(model, images_u8, batch_size) == backend.astype(labels, backend.xp.int64)
    return backend.xp.sum(backend.astype(hits, backend.xp.int64))


@dataclass
class Evaluation:
    accuracy: float
    per_class: np.ndarray  # accuracy of each true class
    confusion: np.ndarray  # confusion[true, predicted]

    def lines(self, class_names) -> list[str]:
        width = max(len(name) for name in class_names)
        out = [f"accuracy {self.accuracy:.2%} on {int(self.confusion.sum())} samples", "per-class accuracy:"]
        out += [
            f"  {name:>{width}}  {acc:.2%}" for name, acc in zip(class_names, self.per_class, strict=True)
        ]
        out.append("confusion matrix (rows: true class, columns: predicted):")
        cell = max(5, len(str(int(self.confusion.max()))) + 1)
        out.append(" " * (width + 2) + "".join(f"{i:>{cell}}" for i in range(len(class_names))))
        for name, row in zip(class_names, self.confusion, strict=True):
            out.append(f"  {name:>{width}}" + "".join(f"{int(v):>{cell}}" for v in row))
        return out


def evaluate(model, features_u8: np.ndarray, labels: np.ndarray, classes: int | None = None) -> Evaluation:
    """Evaluate host data (uint8 features, integer labels) on the model's device; `classes` defaults to
    the model's number of outputs."""
    backend = model.backend
    classes = classes or model.out_features
    predicted = backend.to_host(device_predictions(model, backend.from_host(features_u8))).astype(np.int64)
    confusion = np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(
        classes, classes
    )
    per_class = np.diag(confusion) / np.maximum(confusion.sum(axis=1), 1)
    return Evaluation(float(np.trace(confusion) / max(len(labels), 1)), per_class, confusion)


def loss_and_correct(model, images_u8, labels, classes: int | None = None, batch_size: int = EVAL_BATCH):
    """Summed cross-entropy (float64) and number correct over device-resident data, as 0-d device arrays;
    `classes` defaults to the model's number of outputs.

    The validation metrics of an epoch: one pass, no host synchronisation until the caller reads them.
    """
    backend, xp = model.backend, model.backend.xp
    classes = classes or model.out_features
    total, correct = backend.zeros((), dtype=xp.float64), backend.zeros((), dtype=xp.int64)
    n = images_u8.shape[0]
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        logits = model.forward(model_inputs(backend, images_u8[start:stop, ...]))
        batch_labels = labels[start:stop]
        loss, _ = backend.softmax_cross_entropy(logits, backend.one_hot(batch_labels, classes))
        total = total + backend.astype(loss, xp.float64) * (stop - start)
        correct = correct + backend.count_correct(logits, batch_labels)
    return total, correct
