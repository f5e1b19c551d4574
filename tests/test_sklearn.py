"""gpunn.sklearn: scikit-learn's estimator checks, pipelines, grid search, persistence, sparse input."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from scipy import sparse
from sklearn.compose import TransformedTargetRegressor
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from gpunn.data import load_dataset
from gpunn.nn.step import train_step
from gpunn.sklearn import MLPClassifier, MLPRegressor
from gpunn.training.run import train

FLOAT32_SAMPLE_WEIGHTS = {
    name: "in float32, a row of weight 2 and the same row twice round differently by more than the check's "
    "float64 tolerance (the float64 and input-dtype instances pass it)"
    for name in (
        "check_sample_weight_equivalence_on_dense_data",
        "check_sample_weight_equivalence_on_sparse_data",
    )
}


def _expected_failures(estimator):
    return FLOAT32_SAMPLE_WEIGHTS if estimator.dtype == "float32" else {}


@pytest.mark.slow  # every check of check_estimator for several dtypes and devices: minutes
@parametrize_with_checks(
    [
        *(
            make(dtype=dtype)
            for make in (MLPClassifier, MLPRegressor)
            for dtype in (None, "float32", "float64")
        ),
        MLPClassifier(device="strict"),
        MLPRegressor(device="strict"),
    ],
    expected_failed_checks=_expected_failures,
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


SPAM = [
    ("win a free prize now, click here", "spam"),
    ("cheap pills, limited offer, buy now", "spam"),
    ("you won a lottery, claim your cash prize", "spam"),
    ("free money!!! click the link to claim", "spam"),
    ("exclusive deal: buy one get one free, offer ends today", "spam"),
    ("urgent: claim your free gift card now", "spam"),
    ("are we still meeting for lunch tomorrow?", "ham"),
    ("please review the attached report before friday", "ham"),
    ("can you pick up the kids after school", "ham"),
    ("the meeting moved to 3pm, see you there", "ham"),
    ("thanks for the notes from yesterday's class", "ham"),
    ("let's go for a walk this evening", "ham"),
]
SENTIMENT = [
    ("i loved this movie, wonderful acting", 1),
    ("what a great and touching story", 1),
    ("brilliant, funny and heartfelt", 1),
    ("an excellent film, i enjoyed every minute", 1),
    ("superb direction and a great cast", 1),
    ("terrible plot and awful acting", 0),
    ("boring, i hated every minute", 0),
    ("a dull and disappointing film", 0),
    ("worst movie of the year, awful", 0),
    ("poor script and terrible pacing", 0),
]


@pytest.mark.parametrize("device", ["cpu", "strict"])
@pytest.mark.parametrize(
    "corpus, probes",
    [
        (SPAM, [("claim your free prize now", "spam"), ("see you at lunch tomorrow", "ham")]),
        (SENTIMENT, [("a wonderful and touching film", 1), ("awful and boring", 0)]),
    ],
    ids=["spam", "sentiment"],
)
def test_text_pipelines(device, corpus, probes):
    texts, labels = zip(*corpus, strict=True)
    pipeline = make_pipeline(
        TfidfVectorizer(),
        MLPClassifier(
            hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=200, random_state=0, device=device
        ),
    )
    pipeline.fit(list(texts), list(labels))
    predicted = pipeline.predict([text for text, _ in probes])
    assert isinstance(predicted, np.ndarray)
    assert predicted.tolist() == [label for _, label in probes]
    probabilities = pipeline.predict_proba([text for text, _ in probes])
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(axis=1), 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_grid_search_over_learning_rates_on_digits(device):
    X, y = load_digits(return_X_y=True)
    search = GridSearchCV(
        MLPClassifier(hidden_layer_sizes=(32,), max_iter=30, random_state=0, device=device),
        {"learning_rate_init": [1e-5, 1e-3, 1e-2]},
        cv=3,
    )
    search.fit(X / 16.0, y)
    assert search.best_params_["learning_rate_init"] in (1e-3, 1e-2)
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] < 0.6 < search.best_score_ and search.best_score_ > 0.9


@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_house_price_regression_with_scaling(device):
    rng = np.random.default_rng(0)
    size = rng.uniform(50, 250, 400)
    rooms = rng.integers(1, 7, 400)
    age = rng.uniform(0, 60, 400)
    price = 2000 * size + 15000 * rooms - 1500 * age + 50000 + rng.normal(0, 10000, 400)
    X = np.column_stack([size, rooms, age])
    model = TransformedTargetRegressor(
        regressor=make_pipeline(
            StandardScaler(),
            MLPRegressor(
                hidden_layer_sizes=(32,), learning_rate_init=0.01, max_iter=300, random_state=0, device=device
            ),
        ),
        transformer=StandardScaler(),
    )
    model.fit(X[:300], price[:300])
    assert model.score(X[300:], price[300:]) > 0.95
    predicted = model.predict(np.array([[120.0, 3, 10]]))
    assert predicted.shape == (1,) and abs(predicted[0] - (2000 * 120 + 45000 - 15000 + 50000)) < 25000


def test_sparse_input_is_never_densified_and_trains_as_dense(monkeypatch):
    X, y = load_digits(return_X_y=True)
    X_sparse = sparse.csr_matrix(X / 16.0)

    def refuse(self, *args, **kwargs):
        raise AssertionError("a sparse matrix was densified")

    monkeypatch.setattr(sparse.csr_matrix, "toarray", refuse)
    settings = dict(hidden_layer_sizes=(32,), batch_size=64, max_iter=5, random_state=0)
    with pytest.warns(ConvergenceWarning):
        from_sparse = MLPClassifier(**settings).fit(X_sparse, y)
        dense = MLPClassifier(**settings).fit(X / 16.0, y)
    for a, b in zip(from_sparse.coefs_, dense.coefs_, strict=True):  # float64: the same steps
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        from_sparse.predict_proba(X_sparse[:20]), dense.predict_proba(X[:20] / 16.0), atol=1e-12
    )


@pytest.mark.parametrize(
    "settings",
    [
        dict(solver="sgd", momentum=0.9, nesterovs_momentum=True, learning_rate="invscaling", alpha=0.01),
        dict(solver="sgd", momentum=0.5, nesterovs_momentum=False, learning_rate="adaptive", alpha=1.0),
        dict(solver="sgd", momentum=0.0, early_stopping=True, alpha=0.1),
    ],
    ids=["nesterov-invscaling", "momentum-adaptive", "sgd-early-stopping"],
)
@pytest.mark.parametrize("device", ["cpu", "strict"])
def test_float64_training_follows_scikit_learn_step_by_step(settings, device):
    """Same init, shuffling, alpha (L2 on weights / batch), schedules and stopping: the same weights."""
    from sklearn import neural_network

    X, y = load_digits(return_X_y=True)
    X, y = X[:300] / 16.0, y[:300]
    common = dict(
        hidden_layer_sizes=(16,), max_iter=8, batch_size=50, learning_rate_init=0.05, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(device=device, **common, **settings).fit(X, y)
        theirs = neural_network.MLPClassifier(**common, **settings).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_stochastic_solvers_train_through_the_one_train_step(monkeypatch, solver):
    """Every batch is one gpunn.nn.step.train_step, whose loss is the batch's part of loss_curve_."""
    import gpunn.sklearn.estimators as estimators

    losses = []

    def recording(*args, **kwargs):
        result = train_step(*args, **kwargs)
        losses.append(float(result.loss))
        return result

    monkeypatch.setattr(estimators, "train_step", recording)
    X, y = load_digits(return_X_y=True)
    X, y = X[:250] / 16.0, y[:250]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier((8,), solver=solver, batch_size=100, max_iter=2, random_state=0).fit(X, y)
    assert len(losses) == 2 * 3  # batches of 100, 100, 50 in each of the two epochs
    epoch = (100 * losses[3] + 100 * losses[4] + 50 * losses[5]) / 250
    assert model.loss_curve_[-1] == pytest.approx(epoch, rel=1e-12)


def test_regressor_loss_is_half_the_squared_error_and_keeps_float32():
    from sklearn import neural_network

    X, y = load_digits(return_X_y=True)
    X, y = (X[:200] / 16.0).astype(np.float32), (y[:200] / 9.0).astype(np.float32)
    common = dict(hidden_layer_sizes=(8,), solver="sgd", max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPRegressor(**common).fit(X, y)
        theirs = neural_network.MLPRegressor(**common).fit(X, y)
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-4)
    predicted = ours.predict(X)
    assert predicted.dtype == np.float32 and predicted.shape == (200,)
    assert ours.predict(X).shape == MLPRegressor(**common).fit(X, y.reshape(-1, 1)).predict(X).shape


def test_pickle_holds_host_arrays_only_and_predicts_after_moving():
    X, y = load_digits(return_X_y=True)
    labels = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])[y]
    fitted = MLPClassifier(hidden_layer_sizes=(32,), max_iter=10, random_state=0, device="strict").fit(
        X / 16, labels
    )
    blob = pickle.dumps(fitted)
    assert b"array_api_strict" not in blob  # nothing device-side travels
    restored = pickle.loads(blob)
    assert restored.get_params()["device"] == "strict"
    np.testing.assert_array_equal(restored.predict(X[:50] / 16), fitted.predict(X[:50] / 16))
    restored.set_params(device="cpu")  # moving to another device is the user's explicit choice
    np.testing.assert_allclose(
        restored.predict_proba(X[:50] / 16), fitted.predict_proba(X[:50] / 16), atol=1e-5
    )
    assert restored.predict(X[:1] / 16).dtype == labels.dtype


@pytest.mark.parametrize("make", [MLPClassifier, MLPRegressor])
def test_an_unpickled_model_continues_training_where_it_stopped(make):
    X, y = load_digits(return_X_y=True)
    X, y = X / 16, (y if make is MLPClassifier else y / 9.0)
    fitted = make(hidden_layer_sizes=(16,), solver="sgd", max_iter=3, random_state=0, device="strict").fit(
        X, y
    )
    restored = pickle.loads(pickle.dumps(fitted))
    fitted.partial_fit(X, y)
    restored.partial_fit(X, y)  # weights, optimizer state and the epoch count all travelled
    assert restored.t_ == fitted.t_ == 4 * len(y)  # n_iter_ counts this call's epochs, as in scikit-learn
    assert restored.loss_curve_[-1] == pytest.approx(fitted.loss_curve_[-1], rel=1e-6)
    restored.set_params(device="cpu")
    restored.partial_fit(X, y)  # the optimizer's momentum moves to the new device with the weights
    fitted.partial_fit(X, y)
    assert restored.t_ == 5 * len(y) and restored._optimizer.backend.device == "cpu"
    assert restored.loss_curve_[-1] == pytest.approx(fitted.loss_curve_[-1], rel=1e-6)


def test_partial_fit_continues_and_early_stopping_stops():
    X, y = load_digits(return_X_y=True)
    model = MLPClassifier(hidden_layer_sizes=(32,), random_state=0)
    model.partial_fit(X[:500] / 16, y[:500], classes=np.arange(10))
    first = model.loss_curve_[-1]
    for _ in range(5):
        model.partial_fit(X[:500] / 16, y[:500])
    assert len(model.loss_curve_) == 6 and model.loss_curve_[-1] < first
    stopped = MLPClassifier(
        hidden_layer_sizes=(32,), max_iter=500, early_stopping=True, n_iter_no_change=3, random_state=0
    ).fit(X / 16, y)
    assert stopped.n_iter_ < 500 and len(stopped.validation_scores_) == stopped.n_iter_


def test_estimator_matches_gpunn_train_on_mnist(data_root, tmp_path):
    train_set, test_set = load_dataset("mnist", "train", data_root), load_dataset("mnist", "test", data_root)
    settings = dict(
        epochs=2, batch_size=128, lr=0.1, optimizer="sgd", momentum=0.0, weight_decay=0.0, schedule="constant"
    )
    reference = train(out=tmp_path / "run", data_dir=data_root, verbose=False, **settings)
    estimator = MLPClassifier(
        hidden_layer_sizes=(128, 64),
        solver="sgd",
        momentum=0.0,
        learning_rate_init=0.1,
        batch_size=128,
        alpha=0.0,
        max_iter=2,
        n_iter_no_change=10,
        random_state=0,
    )
    estimator.fit(train_set.features.astype(np.float32) / 255, train_set.labels)
    accuracy = estimator.score(test_set.features.astype(np.float32) / 255, test_set.labels)
    assert abs(accuracy - reference.test_accuracy) < 0.006, (accuracy, reference.test_accuracy)
