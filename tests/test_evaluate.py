"""Evaluation: accuracy, per-class accuracy over the TRUE class (rows), the confusion matrix and its report.

The model is a Dense identity layer, so each sample is predicted as the position of its brightest pixel and
every expected number below follows by counting.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpunn.nn import Dense, Sequential
from gpunn.training.evaluate import Evaluation, count_correct, device_predictions, evaluate, loss_and_correct

LABELS = np.array([0, 0, 0, 1, 1, 2])
PREDICTED = np.array([0, 0, 1, 1, 2, 2])


def argmax_model(backend, classes: int) -> Sequential:
    model = Sequential([Dense(classes, classes)], backend)
    model.set_weights([np.eye(classes), np.zeros(classes)])
    return model


def images_predicted_as(predicted, classes: int) -> np.ndarray:
    images = np.zeros((len(predicted), classes), dtype=np.uint8)
    images[np.arange(len(predicted)), predicted] = 255
    return images


def test_confusion_is_true_by_predicted_and_per_class_divides_by_the_true_count(backend):
    result = evaluate(argmax_model(backend, 4), images_predicted_as(PREDICTED, 4), LABELS, classes=4)
    np.testing.assert_array_equal(result.confusion, [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    # class 0: 2 of its 3 samples right; class 1: 1 of 2; class 2: 1 of 1; class 3 has no samples
    np.testing.assert_allclose(result.per_class, [2 / 3, 1 / 2, 1.0, 0.0])
    assert result.accuracy == pytest.approx(4 / 6)


def test_ten_classes_by_default_and_a_single_sample():
    result = evaluate(argmax_model("cpu", 10), images_predicted_as([7], 10), np.array([7]))
    assert result.confusion.shape == (10, 10) and result.confusion[7, 7] == 1
    assert result.accuracy == 1.0


def test_report_needs_one_name_per_class():
    result = evaluate(argmax_model("cpu", 3), images_predicted_as(PREDICTED, 3), LABELS, classes=3)
    with pytest.raises(ValueError):
        result.lines(["zero", "one"])


def test_batches_give_the_same_predictions_as_one_pass(backend):
    rng = np.random.default_rng(0)
    predicted = rng.integers(0, 5, 23)
    images = backend.from_host(images_predicted_as(predicted, 5))
    model = argmax_model(backend, 5)
    for batch_size in (1, 4, 23, 100):
        got = backend.to_host(device_predictions(model, images, batch_size=batch_size))
        assert got.tolist() == predicted.tolist(), batch_size


def test_count_correct_counts_matching_labels(backend):
    model = argmax_model(backend, 4)
    images = backend.from_host(images_predicted_as(PREDICTED, 4))
    labels = backend.from_host(LABELS)
    assert backend.to_scalar(count_correct(model, images, labels, batch_size=4)) == 4


def test_report_lines():
    result = evaluate(argmax_model("cpu", 3), images_predicted_as(PREDICTED, 3), LABELS, classes=3)
    assert result.lines(["zero", "one", "two"]) == [
        "accuracy 66.67% on 6 samples",
        "per-class accuracy:",
        "  zero  66.67%",
        "   one  50.00%",
        "   two  100.00%",
        "confusion matrix (rows: true class, columns: predicted):",
        "          0    1    2",
        "  zero    2    1    0",
        "   one    0    1    1",
        "   two    0    0    1",
    ]


def test_report_cells_widen_for_large_counts():
    result = evaluate(argmax_model("cpu", 2), images_predicted_as([0] * 123456, 2), np.zeros(123456, int), 2)
    lines = result.lines(["a", "b"])
    assert lines[-2] == "  a" + "123456".rjust(7) + "0".rjust(7)


@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_evaluating_no_samples_gives_zero_counts_not_a_crash(device):
    from gpunn.nn import mlp

    model = mlp([4, 3], backend=device, seed=0)
    result = evaluate(model, np.zeros((0, 4), dtype=np.uint8), np.zeros(0, dtype=np.int64))
    assert result.accuracy == 0.0 and result.confusion.shape == (3, 3) and result.confusion.sum() == 0


# loss_and_correct: five samples of three classes, logits = pixels / 255 (the identity model); the expected
# numbers are the cross-entropy formula -log softmax(logits)[label] worked out in NumPy.
PIXELS = np.array([[255, 0, 0], [0, 51, 255], [102, 204, 0], [0, 0, 153], [255, 255, 0]], dtype=np.uint8)
VAL_LABELS = np.array([0, 1, 1, 2, 2])  # argmax rows: 0, 2, 1, 2, 0 (the tie goes to the first) -> 3 right


def summed_cross_entropy(pixels: np.ndarray, labels: np.ndarray) -> float:
    logits = pixels / 255.0
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_softmax[np.arange(len(labels)), labels].sum())


@pytest.mark.parametrize("batch_size", [2, 5, 64])
def test_loss_and_correct_sum_every_sample_once_over_uneven_batches(backend, batch_size):
    model = argmax_model(backend, 3)
    images, labels = backend.from_host(PIXELS), backend.from_host(VAL_LABELS)
    total, correct = loss_and_correct(model, images, labels, batch_size=batch_size)
    # batches of 2, 2 and 1: each batch's mean loss is weighted by its own row count
    assert backend.to_scalar(total) == pytest.approx(summed_cross_entropy(PIXELS, VAL_LABELS), rel=1e-6)
    assert backend.to_scalar(correct) == 3
    assert total.shape == () and correct.shape == ()
    assert (total.dtype, correct.dtype) == (backend.xp.float64, backend.xp.int64)


def test_loss_and_correct_one_hot_over_the_given_number_of_classes(backend):
    model = argmax_model(backend, 3)
    images, labels = backend.from_host(PIXELS), backend.from_host(VAL_LABELS)
    total, correct = loss_and_correct(model, images, labels, classes=3, batch_size=4)
    assert backend.to_scalar(total) == pytest.approx(summed_cross_entropy(PIXELS, VAL_LABELS), rel=1e-6)
    assert backend.to_scalar(correct) == 3


def test_loss_and_correct_of_no_samples_are_zeros_of_the_promised_dtypes(backend):
    model = argmax_model(backend, 3)  # a float32 model: the zeros must still be float64 and int64
    images = backend.from_host(np.zeros((0, 3), dtype=np.uint8))
    total, correct = loss_and_correct(model, images, backend.from_host(np.zeros(0, dtype=np.int64)))
    assert (total.dtype, correct.dtype) == (backend.xp.float64, backend.xp.int64)
    assert backend.to_scalar(total) == 0.0 and backend.to_scalar(correct) == 0


def test_no_images_predict_an_empty_row_of_integer_classes(backend):
    images = backend.from_host(np.zeros((0, 3), dtype=np.uint8))
    predicted = device_predictions(argmax_model(backend, 3), images)
    assert predicted.shape == (0,) and predicted.dtype == backend.xp.int64


def test_report_refuses_names_that_fit_only_one_of_its_tables():
    # an Evaluation built by hand: each table must have exactly one row per name
    two_rows = Evaluation(0.5, np.array([1.0, 0.0]), np.array([[1, 0], [1, 0]]))
    assert two_rows.lines(["a", "b"])[-1] == "  b    1    0"
    with pytest.raises(ValueError, match="zip"):
        Evaluation(0.5, np.array([1.0, 0.0, 0.0]), two_rows.confusion).lines(["a", "b"])
    with pytest.raises(ValueError, match="zip"):
        Evaluation(0.5, two_rows.per_class, np.eye(3, dtype=int)).lines(["a", "b"])


def test_count_correct_uses_the_batch_size_it_is_given():
    model = Sequential([Dense(4, 3)], backend="cpu")
    seen = []
    forward = model.forward
    model.forward = lambda x: seen.append(x.shape[0]) or forward(x)
    images = np.zeros((5, 4), dtype=np.uint8)
    assert int(count_correct(model, images, np.zeros(5, dtype=np.int64), batch_size=2)) in range(6)
    assert seen == [2, 2, 1]
