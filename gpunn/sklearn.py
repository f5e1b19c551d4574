"""scikit-learn estimators backed by gpunn: MLPClassifier and MLPRegressor.

They follow scikit-learn's conventions (parameters stored by __init__ only, fitted attributes end in `_`),
so they work in Pipelines, GridSearchCV and with joblib/pickle. Training runs on `device` (cpu, cuda,
cuda:N, auto, strict); inputs may be NumPy arrays, lists or scipy sparse matrices (densified one batch at a
time, never whole); predictions always come back as NumPy arrays. A pickled estimator holds host arrays
only, so one fitted on cuda unpickles anywhere; to predict on another device, set_params(device=...):
gpunn never moves work from a GPU to the CPU on its own.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from gpunn.backend import get_backend
from gpunn.nn import MSE, SoftmaxCrossEntropy, make_optimizer
from gpunn.nn.model import Sequential, mlp
from gpunn.rng import host_rng

SOLVERS = ("sgd", "adam")
_PICKLED_STATE = ("_weights", "_saved_architecture", "_optimizer_state")


class _GpunnMLP(BaseEstimator):
    """What the classifier and the regressor share: validation, the mini-batch loop, persistence."""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate_init=0.001,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        device="cpu",
        dtype="float32",
        verbose=False,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.dtype = dtype
        self.verbose = verbose

    # ---- subclass hooks ------------------------------------------------------------------------------------
    def _targets(self, y):  # -> (host targets for the loss, number of outputs)
        raise NotImplementedError

    def _loss(self):
        raise NotImplementedError

    def _validation_score(self, x, y) -> float:
        return self.score(x, y)

    # ---- fitting ---------------------------------------------------------------------------------------------
    def fit(self, X, y):
        """Train from scratch for up to max_iter epochs (early stopping optional)."""
        for attribute in ("model_", "_optimizer", *_PICKLED_STATE):
            self.__dict__.pop(attribute, None)
        return self._fit(X, y, epochs=self.max_iter, reset=True)

    def partial_fit(self, X, y, **kwargs):
        """One epoch over (X, y), continuing from the current weights."""
        return self._fit(X, y, epochs=1, reset=not self._started(), **kwargs)

    def _started(self) -> bool:
        """Whether there are weights to continue from: a live model, or host arrays from a pickle."""
        return "model_" in self.__dict__ or "_weights" in self.__dict__

    def _check_params(self) -> None:
        sizes = self._hidden_sizes()
        if not sizes or any(s < 1 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got {self.hidden_layer_sizes!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if self.batch_size != "auto" and not (
            isinstance(self.batch_size, (int, np.integer)) and self.batch_size >= 1
        ):
            raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got {self.batch_size!r}")

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        return [int(sizes)] if np.isscalar(sizes) else [int(s) for s in sizes]

    def _fit(self, X, y, epochs: int, reset: bool, classes=None):
        self._check_params()
        X, y = validate_data(
            self,
            X,
            y,
            reset=reset,
            accept_sparse="csr",
            dtype=(np.float64, np.float32),
            multi_output=True,
            y_numeric=not isinstance(self, ClassifierMixin),
        )
        if reset:
            self._rng = host_rng(self._seed())
        targets, outputs = self._targets(y, classes=classes, reset=reset)
        backend = get_backend(self.device, self.dtype)
        if reset:
            self.model_ = mlp(
                [X.shape[1], *self._hidden_sizes(), outputs],
                activation=self.activation,
                backend=backend,
                seed=int(self._rng.integers(2**31)),
            )
            self._optimizer = self._new_optimizer()
            self.loss_curve_ = []
            self.n_iter_ = 0
            self.best_loss_ = np.inf
            self._no_improvement = 0
        else:
            self._ensure_model()
        x_train, t_train, x_val, y_val = self._split(X, targets, y)
        self.validation_scores_ = getattr(self, "validation_scores_", [])
        best_score, best_weights = -np.inf, None
        for _ in range(epochs):
            loss = self._epoch(x_train, t_train)
            self.loss_curve_.append(loss)
            self.n_iter_ += 1
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            if not np.isfinite(loss):
                raise ValueError(f"the loss became {loss}: lower learning_rate_init")
            if x_val is not None:
                score = self._validation_score(x_val, y_val)
                self.validation_scores_.append(score)
                improved = score > best_score + self.tol
                if score > best_score:
                    best_score, best_weights = score, self.model_.get_weights()
            else:
                improved = loss < self.best_loss_ - self.tol
            self.best_loss_ = min(self.best_loss_, loss)
            self._no_improvement = 0 if improved else self._no_improvement + 1
            if epochs > 1 and self._no_improvement >= self.n_iter_no_change:
                break
        if best_weights is not None:
            self.model_.set_weights(best_weights)
        return self

    def _seed(self) -> int | None:
        state = self.random_state
        if isinstance(state, np.random.RandomState):
            return int(state.randint(2**31))
        return state

    def _new_optimizer(self):
        return make_optimizer(self._optimizer_name(), self.learning_rate_init, self.momentum, self.alpha)

    def _optimizer_name(self) -> str:
        if self.solver == "adam":
            return "adam"
        if self.momentum == 0:
            return "sgd"
        return "nesterov" if self.nesterovs_momentum else "momentum"

    def _split(self, X, targets, y):
        if not self.early_stopping:
            return X, targets, None, None
        n_val = max(1, int(round(len(y) * self.validation_fraction)))
        if n_val >= len(y):
            raise ValueError("early_stopping needs more samples than the validation fraction takes")
        order = self._rng.permutation(len(y))
        val, train = order[:n_val], order[n_val:]
        return X[train], targets[train], X[val], y[val]

    def _batches(self, n: int):
        size = min(200, n) if self.batch_size == "auto" else min(int(self.batch_size), n)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        return [order[start : start + size] for start in range(0, n, size)]

    def _epoch(self, X, targets) -> float:
        backend, model, loss_fn = self.model_.backend, self.model_, self._loss()
        total = None
        for rows in self._batches(X.shape[0]):
            x = _dense_rows(X, rows)
            loss, grad = loss_fn(
                backend, model.forward(backend.from_host(x)), backend.from_host(targets[rows])
            )
            model.backward(grad)
            self._optimizer.step(model.parameters(), backend)
            total = loss * len(rows) if total is None else total + loss * len(rows)
        return backend.to_scalar(total) / X.shape[0]  # one synchronisation per epoch

    # ---- prediction ------------------------------------------------------------------------------------------
    def _ensure_model(self) -> None:
        """After unpickling (or set_params(device=...)), rebuild the model and optimizer on the device."""
        backend = get_backend(self.device, self.dtype)
        if "model_" in self.__dict__ and self.model_.backend is backend:
            return
        saved = self._host_state() if "model_" in self.__dict__ else self.__dict__
        self.model_ = Sequential.from_description(saved["_saved_architecture"], backend)
        self.model_.set_weights(saved["_weights"])
        self._optimizer = self._new_optimizer()
        self._optimizer.load_state_dict(saved["_optimizer_state"], backend)
        for attribute in _PICKLED_STATE:
            self.__dict__.pop(attribute, None)

    def _host_state(self) -> dict:
        """The live model and optimizer as host arrays (what a pickle carries)."""
        return {
            "_weights": self.model_.get_weights(),
            "_saved_architecture": self.model_.describe(),
            "_optimizer_state": self._optimizer.state_dict(self.model_.backend),
        }

    def _forward(self, X) -> np.ndarray:
        check_is_fitted(self, "n_iter_")
        self._ensure_model()
        X = validate_data(self, X, reset=False, accept_sparse="csr", dtype=(np.float64, np.float32))
        backend = self.model_.backend
        outputs = []
        for start in range(0, X.shape[0], 4096):
            rows = np.arange(start, min(start + 4096, X.shape[0]))
            logits = self.model_.forward(backend.from_host(_dense_rows(X, rows)))
            outputs.append(backend.to_host(logits).astype(np.float64))  # scikit-learn returns float64
        return np.concatenate(outputs) if outputs else np.zeros((0, self.model_.describe()[-1]["out"]))

    def __getstate__(self):
        """Host arrays only: no device objects travel in a pickle (_ensure_model rebuilds them)."""
        state = self.__dict__.copy()
        if "model_" in state:
            state.update(self._host_state())
            del state["model_"], state["_optimizer"]
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _dense_rows(X, rows) -> np.ndarray:
    batch = X[rows]
    return batch.toarray() if sparse.issparse(batch) else batch


class MLPClassifier(ClassifierMixin, _GpunnMLP):
    """A gpunn MLP with a softmax output; scikit-learn's classifier API (see the module docstring)."""

    def _loss(self):
        return SoftmaxCrossEntropy()

    def _targets(self, y, classes=None, reset=True):
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if reset:
            self._encoder = LabelEncoder().fit(classes if classes is not None else y)
            self.classes_ = self._encoder.classes_
            if len(self.classes_) < 2:
                raise ValueError(
                    f"MLPClassifier needs samples of at least 2 classes; got 1 class ({self.classes_[0]!r})"
                )
        unseen = np.setdiff1d(y, self.classes_)
        if unseen.size:
            raise ValueError(f"labels {unseen.tolist()} were not among the classes {self.classes_.tolist()}")
        return np.eye(len(self.classes_))[self._encoder.transform(y)], len(self.classes_)

    def partial_fit(self, X, y, classes=None):
        if not self._started() and classes is None:
            classes = np.unique(y)
        return self._fit(X, y, epochs=1, reset=not self._started(), classes=classes)

    def predict_proba(self, X) -> np.ndarray:
        logits = self._forward(X)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
        return probabilities

    def predict(self, X) -> np.ndarray:
        logits = self._forward(X)
        return self.classes_[np.argmax(logits, axis=1)]


class MLPRegressor(RegressorMixin, _GpunnMLP):
    """A gpunn MLP with a linear output and squared error; scikit-learn's regressor API."""

    def _loss(self):
        return MSE()

    def _targets(self, y, classes=None, reset=True):
        y = np.asarray(y, dtype=np.float64)
        self._y_1d = y.ndim == 1 if reset else self._y_1d
        targets = y.reshape(len(y), -1)
        return targets, targets.shape[1]

    def predict(self, X) -> np.ndarray:
        out = self._forward(X)
        return out.ravel() if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
