"""The end-of-epoch measurements: test accuracy, and validation loss and accuracy with --val-size.

The test and validation images are uploaded once (uint8) and sharded over ranks; the totals are summed over
ranks on the host, one small sum per measurement.
"""

from __future__ import annotations

from gpunn.training.evaluate import count_correct, loss_and_correct
from gpunn.training.ranks import Ranks


class Evaluator:
    def __init__(self, model, ranks: Ranks, test_set, val_set=None):
        backend = model.backend
        self.model, self.backend, self.ranks = model, backend, ranks
        rows = ranks.rows(len(test_set))  # shared, not copied, on the host backend: they are only read
        self.x_test = backend.from_host(test_set.features[rows], copy=False)
        self.y_test = backend.from_host(test_set.labels[rows], copy=False)
        self.n_test = len(test_set)
        self.n_val = len(val_set) if val_set is not None else 0
        if val_set is not None:
            self.classes = len(val_set.class_names)  # the training set's classes (it was split from it)
            rows = ranks.rows(len(val_set))
            self.x_val = backend.from_host(val_set.features[rows], copy=False)
            self.y_val = backend.from_host(val_set.labels[rows], copy=False)

    def test_accuracy(self) -> float:
        (correct,) = self.ranks.total(
            int(self.backend.to_host(count_correct(self.model, self.x_test, self.y_test)))
        )
        return correct / self.n_test

    def validation(self) -> tuple[float, float] | None:
        """(loss, accuracy) on the validation set; None without one."""
        if not self.n_val:
            return None
        loss_sum, correct = loss_and_correct(self.model, self.x_val, self.y_val, self.classes)
        loss_total, val_correct = self.ranks.total(
            float(self.backend.to_host(loss_sum)), int(self.backend.to_host(correct))
        )
        return loss_total / self.n_val, val_correct / self.n_val
