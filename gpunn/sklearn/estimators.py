"""MLPClassifier and MLPRegressor: scikit-learn's parameters, attributes and training loop, run by gpunn.

The control flow (initialisation, batches, early stopping, n_iter_no_change, warm_start, partial_fit,
L-BFGS) follows sklearn.neural_network so the same settings give the same models; the arithmetic runs on
`device` through gpunn's backend. `coefs_` and `intercepts_` are host NumPy arrays (what pickles carry);
the device copy of them lives only for a fit or as a prediction cache.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import scipy.optimize
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d, gen_batches, shuffle
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from gpunn.backend import get_backend
from gpunn.nn.flat import split
from gpunn.nn.losses import WeightedTargets
from gpunn.nn.model import Sequential
from gpunn.nn.penalty import L2Penalty
from gpunn.nn.step import backward, train_step
from gpunn.sklearn.array_api import in_input_namespace, numpy_inside
from gpunn.sklearn.model import HIDDEN_ACTIVATIONS, build_model, output_loss
from gpunn.sklearn.optimizers import StochasticSolver
from gpunn.sklearn.persist import load_estimator, save_estimator

SOLVERS = ("lbfgs", "sgd", "adam")
STOCHASTIC_SOLVERS = ("sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
PREDICT_BLOCK = 512  # rows per forward pass at predict time; the last block is padded (see _output)


class _GpunnMLP(BaseEstimator):
    """What the classifier and the regressor share; parameters are scikit-learn's plus device and dtype."""

    def __init__(
        self,
        hidden_layer_sizes,
        activation,
        solver,
        alpha,
        batch_size,
        learning_rate,
        learning_rate_init,
        power_t,
        max_iter,
        loss,
        shuffle,
        random_state,
        tol,
        verbose,
        warm_start,
        momentum,
        nesterovs_momentum,
        early_stopping,
        validation_fraction,
        beta_1,
        beta_2,
        epsilon,
        n_iter_no_change,
        max_fun,
        device,
        dtype,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.loss = loss
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.device = device
        self.dtype = dtype

    # ---- parameters ------------------------------------------------------------------------------------------
    def _check_params(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = list(sizes) if hasattr(sizes, "__iter__") else [sizes]
        if not sizes or any(not isinstance(s, (int, np.integer)) or s <= 0 for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {sizes}.")
        _choose("activation", self.activation, tuple(HIDDEN_ACTIVATIONS))
        _choose("solver", self.solver, SOLVERS)
        _choose("learning_rate", self.learning_rate, LEARNING_RATES)
        if self.batch_size != "auto" and not (
            isinstance(self.batch_size, (int, np.integer)) and self.batch_size >= 1
        ):
            raise ValueError(f"batch_size must be 'auto' or an integer >= 1, got {self.batch_size!r}")
        for name in ("max_iter", "max_fun"):
            value = getattr(self, name)
            if not (isinstance(value, (int, np.integer)) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (
            self.n_iter_no_change == np.inf
            or (isinstance(self.n_iter_no_change, (int, np.integer)) and self.n_iter_no_change >= 1)
        ):
            raise ValueError(
                f"n_iter_no_change must be an integer >= 1 or numpy.inf, got {self.n_iter_no_change!r}"
            )
        for name, low, high in (
            ("alpha", 0.0, np.inf),
            ("tol", 0.0, np.inf),
            ("power_t", 0.0, np.inf),
            ("momentum", 0.0, 1.0),
            ("validation_fraction", 0.0, 1.0 - 1e-12),
            ("beta_1", 0.0, 1.0 - 1e-12),
            ("beta_2", 0.0, 1.0 - 1e-12),
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.number)) and low <= value <= high):
                raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
        for name in ("learning_rate_init", "epsilon"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.number)) and 0 < value < np.inf):
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if self.dtype not in (None, "float32", "float64"):
            raise ValueError(
                f"dtype must be None (the input's; float32 on a GPU), 'float32' or 'float64', got {self.dtype!r}"
            )
        return [int(s) for s in sizes]

    # ---- fitting ---------------------------------------------------------------------------------------------
    @numpy_inside
    def fit(self, X, y, sample_weight=None):
        """Train (from scratch, or from the current weights with warm_start=True) for up to max_iter epochs."""
        return self._fit(X, y, sample_weight, incremental=False)

    def _check_solver(self) -> bool:
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    def _fit(self, X, y, sample_weight, incremental: bool):
        hidden_sizes = self._check_params()
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if not first_pass:
            self._check_fitted_layers(hidden_sizes)
        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            sample_weight = _sample_weights(sample_weight, X.shape[0])
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1], *hidden_sizes, self.n_outputs_]
        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, self.dtype or self._default_dtype(X))
        model = self._model(for_training=True)
        if self.solver in STOCHASTIC_SOLVERS:
            self._fit_stochastic(model, X, y, sample_weight, incremental)
        else:
            self._fit_lbfgs(model, X, y, sample_weight)
        if not all(np.isfinite(w).all() for w in (*self.coefs_, *self.intercepts_)):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large values and "
                "need to be preprocessed."
            )
        return self

    def _check_fitted_layers(self, hidden_sizes: list[int]) -> None:
        """warm_start and partial_fit continue the fitted network: hidden_layer_sizes may not change under
        them (scikit-learn's own MLP would go on with the old layers, or fail deep inside with another
        depth). Worded like scikit-learn's warm_start check of the classes."""
        fitted = [int(coef.shape[1]) for coef in self.coefs_[:-1]]
        if fitted != hidden_sizes:
            raise ValueError(
                "warm_start and partial_fit can only be used where `hidden_layer_sizes` is the same as in the "
                f"previous call to fit. Previously got {fitted}, now {hidden_sizes}: set warm_start=False (or "
                "use a new estimator) to fit a network of other layers."
            )

    def _initialize(self, y, layer_units, dtype_name: str) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        # scikit-learn's Glorot uniform weights, drawn by gpunn's initialiser from random_state in its order
        backend = get_backend(self.device, dtype_name)
        self._set_weights(
            build_model(layer_units, self.activation, backend, self._random_state).get_weights()
        )
        self.__dict__.pop("_optimizer", None)
        if self.solver in STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _default_dtype(self, X) -> str:
        """dtype=None: the input's precision, as scikit-learn trains, on the host; float32 on a GPU, where
        float64 runs at a fraction of float32's speed (dtype="float64" asks for it)."""
        return "float32" if get_backend(self.device, "float32").device.startswith("cuda") else X.dtype.name

    # ---- the gpunn model -------------------------------------------------------------------------------------
    def _set_weights(self, weights: list[np.ndarray]) -> None:
        """coefs_/intercepts_ from host weights in the model's order (each layer's weight, then its bias)."""
        self.coefs_, self.intercepts_ = list(weights[0::2]), list(weights[1::2])

    def _host_weights(self) -> list[np.ndarray]:
        """coefs_/intercepts_ in the model's order."""
        return [array for pair in zip(self.coefs_, self.intercepts_, strict=True) for array in pair]

    def _backend(self):
        return get_backend(self.device, np.dtype(self.coefs_[0].dtype).name)

    def _model(self, for_training: bool = False) -> Sequential:
        """The gpunn model holding coefs_/intercepts_ on the device: the prediction model (cached while
        coefs_, intercepts_, activation and device stay the same), or for training a fresh one, whose updates
        reach coefs_ only through _store."""
        backend = self._backend()
        host = [np.asarray(array) for array in self._host_weights()]
        cached = self.__dict__.get("_device_cache")
        if (
            not for_training
            and cached is not None
            and cached[:2] == (backend, self.activation)
            and len(cached[2]) == len(host)
            and all(a is b for a, b in zip(cached[2], self._host_weights(), strict=True))
        ):
            return cached[3]
        units = [host[0].shape[0], *(weight.shape[1] for weight in host[0::2])]
        model = build_model(units, self.activation, backend)
        model.set_weights(host)
        if not for_training:
            self._device_cache = (backend, self.activation, self._host_weights(), model)
        return model

    def _store(self, model: Sequential) -> None:
        """The trained model's weights -> host coefs_/intercepts_; the model stays as the prediction model."""
        self._set_weights(model.get_weights())
        self._device_cache = (model.backend, self.activation, self._host_weights(), model)

    def _loss(self, model: Sequential) -> L2Penalty:
        """scikit-learn's loss for out_activation_ (whose link it is) with alpha's L2 term on model's weights."""
        return L2Penalty(output_loss(self.out_activation_), model, self.alpha)

    def _upload(self, backend, X):
        """(device X, whether it is sparse): dense data moves once, sparse stays sparse where it can."""
        if sparse.issparse(X):
            return backend.sparse_from_host(X), True
        return backend.from_host(np.ascontiguousarray(X)), False

    def _targets(self, backend, y, sample_weight) -> WeightedTargets:
        weights = (
            None
            if sample_weight is None
            else backend.from_host(np.asarray(sample_weight), backend.dtype_name)
        )
        return WeightedTargets(backend.from_host(np.asarray(y, dtype=backend.dtype_name)), weights)

    def _fit_stochastic(self, model: Sequential, X, y, sample_weight, incremental: bool) -> None:
        backend = model.backend
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = StochasticSolver(self)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            stratify = y if is_classifier(self) and self.n_outputs_ == 1 else None
            arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
            split = train_test_split(
                *arrays,
                random_state=self._random_state,
                test_size=self.validation_fraction,
                stratify=stratify,
            )
            X_train, X_val, y_train, y_val = split[:4]
            sw_train, sw_val = (split[4], split[5]) if sample_weight is not None else (None, None)
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
                )
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
            x_val, val_sparse = self._upload(backend, X_val)
        else:
            X_train, y_train, sw_train = X, y, sample_weight
            sw_val = None
        n_samples = X_train.shape[0]
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn(
                    "Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                    stacklevel=3,
                )
            batch_size = int(np.clip(self.batch_size, 1, n_samples))
        if sparse.issparse(X_train):
            x_train, train_sparse = X_train.tocsr(), True
        else:
            x_train, train_sparse = self._upload(backend, X_train)
        t_train, w_train = self._targets(backend, y_train, sw_train)
        sample_idx = np.arange(n_samples, dtype=int)
        loss = self._loss(model)
        best = None
        self.n_iter_ = 0
        for _ in range(self.max_iter):
            if self.shuffle:
                sample_idx = shuffle(sample_idx, random_state=self._random_state)
            accumulated = None
            for batch_slice in gen_batches(n_samples, batch_size):
                rows = sample_idx[batch_slice]
                if train_sparse:
                    x_batch = backend.sparse_from_host(x_train[rows])
                else:
                    x_batch = backend.take_rows(x_train, backend.from_host(rows))
                device_rows = backend.from_host(rows)
                y_batch = backend.take_rows(t_train, device_rows)
                w_batch = None if w_train is None else backend.take_rows(w_train, device_rows)
                result = train_step(
                    model,
                    self._optimizer,
                    x_batch,
                    WeightedTargets(y_batch, w_batch),
                    loss=loss,
                    gradient_hook=loss.gradient_hook,
                )
                batch_loss = result.loss * (batch_slice.stop - batch_slice.start)
                accumulated = batch_loss if accumulated is None else accumulated + batch_loss
            self.n_iter_ += 1
            self.loss_ = backend.to_scalar(accumulated) / n_samples  # one synchronisation per epoch
            self.t_ += n_samples
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if early_stopping:
                out = backend.to_host(self._output(model, x_val, val_sparse, X_val.shape[0]))
                score = self._score_outputs(out, y_val, sw_val)
                self.validation_scores_.append(score)
                if self.verbose:
                    print(f"Validation score: {score:f}")
                if score < self.best_validation_score_ + self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                if score > self.best_validation_score_:
                    self.best_validation_score_ = score
                    best = model.buffer.values * 1  # a copy: the optimizer updates the buffer in place
            else:
                if self.loss_ > self.best_loss_ - self.tol:
                    self._no_improvement_count += 1
                else:
                    self._no_improvement_count = 0
                self.best_loss_ = min(self.best_loss_, self.loss_)
            self._optimizer.iteration_ends(self.t_)
            if self._no_improvement_count > self.n_iter_no_change:
                what = "Validation score" if early_stopping else "Training loss"
                msg = (
                    f"{what} did not improve more than tol={self.tol:f} for {self.n_iter_no_change} "
                    "consecutive epochs."
                )
                if self._optimizer.trigger_stopping(msg, self.verbose):
                    break
                self._no_improvement_count = 0
            if incremental:
                break
            if self.n_iter_ == self.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the optimization "
                    "hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        if early_stopping and best is not None:
            model.buffer.set_values(best)
        self._store(model)

    def _lbfgs_objective(self, model: Sequential, X, y, sample_weight):
        """f(packed) -> (loss, packed gradient) on the host, packed as scikit-learn packs (every layer's
        weight, then every bias): train_step short of the update (gpunn.nn.step.backward), for SciPy."""
        backend = model.backend
        x, _ = self._upload(backend, X)  # the first Dense knows a sparse x
        targets = self._targets(backend, y, sample_weight)
        loss, shapes = self._loss(model), model.shapes()

        def loss_and_grad(packed):
            model.set_weights(_unpack(packed, shapes))
            result = backward(model, x, targets, loss=loss)
            loss.gradient_hook(model.buffer)
            gradient = model.buffer.split_host(backend.to_host(model.buffer.gradient))
            return backend.to_scalar(result.loss), _pack(gradient).astype(np.float64)

        return loss_and_grad

    def _fit_lbfgs(self, model: Sequential, X, y, sample_weight) -> None:
        result = scipy.optimize.minimize(
            self._lbfgs_objective(model, X, y, sample_weight),
            _pack(self._host_weights()).astype(np.float64),
            method="L-BFGS-B",
            jac=True,
            options={"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol},
        )
        if result.status != 0:
            warnings.warn(
                f"lbfgs failed to converge after {result.nit} iteration(s) (status={result.status}): "
                f"{result.message}. Increase max_iter (or max_fun) or scale the data.",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.n_iter_ = min(int(result.nit), int(self.max_iter))
        self.loss_ = float(result.fun)
        model.set_weights(_unpack(result.x, model.shapes()))
        self._store(model)

    def _loss_grad_lbfgs(self, packed, X, y, sample_weight=None, *unused):
        """Loss and packed gradient at `packed` (coefs then intercepts), as scikit-learn's method of this name."""
        return self._lbfgs_objective(self._model(for_training=True), X, y, sample_weight)(np.asarray(packed))

    # ---- prediction ------------------------------------------------------------------------------------------
    def _output(self, model: Sequential, x, is_sparse: bool, n_rows: int, head=None):
        """Output activations in fixed blocks of PREDICT_BLOCK rows (the last one zero-padded), so a row's
        prediction never depends on which other rows share the call (the GEMM shape is always the same).
        head(backend, z): what to make of the output layer's pre-activation z (default: the link)."""
        backend = model.backend
        head = head or output_loss(self.out_activation_).outputs
        if is_sparse:  # a sparse product treats each row on its own
            return head(backend, model.forward(x))
        blocks = []
        for start in range(0, n_rows, PREDICT_BLOCK):
            stop = min(start + PREDICT_BLOCK, n_rows)
            block = x[start:stop, ...]
            if stop - start < PREDICT_BLOCK:
                padding = backend.zeros((PREDICT_BLOCK - (stop - start), x.shape[1]))
                block = backend.concat([block, padding])
            blocks.append(head(backend, model.forward(block))[: stop - start, ...])
        if not blocks:
            return backend.zeros((0, self.n_outputs_))
        return blocks[0] if len(blocks) == 1 else backend.concat(blocks)

    def _forward_pass_fast(self, X, check_input: bool = True, head=None) -> np.ndarray:
        """Output activations (or head's, see _output) for X as a host array of X's dtype (scikit-learn keeps
        the input's precision)."""
        if check_input:
            X = validate_data(
                self, X, accept_sparse=["csr", "csc"], reset=False, dtype=(np.float64, np.float32)
            )
        model = self._model()
        x, is_sparse = self._upload(model.backend, X)
        out = model.backend.to_host(self._output(model, x, is_sparse, X.shape[0], head))
        return out.astype(X.dtype, copy=False)

    def _score_outputs(self, out, y, sample_weight) -> float:
        if not np.isfinite(out).all():
            return np.nan
        return float(self._score_function(y, self._outputs_to_predictions(out), sample_weight=sample_weight))

    # ---- the same model as every other face -----------------------------------------------------------------
    @property
    def model_(self) -> Sequential:
        """The fitted gpunn.nn.Sequential on `device` (Dense layers and the hidden activation; its output is
        the output layer's pre-activation, which out_activation_ turns into predictions)."""
        check_is_fitted(self)
        return self._model()

    def save(self, path) -> Path:
        """Write this fitted estimator as a gpunn checkpoint (.npz) that `gpunn evaluate / predict / export /
        serve` take (a classifier's) and `load` restores; atomic."""
        check_is_fitted(self)
        return save_estimator(self, path)

    @classmethod
    def load(cls, path, device: str | None = None):
        """The fitted estimator saved in `path` by `save`; device: where it predicts (default: as saved)."""
        return load_estimator(cls, path, device)

    def __getstate__(self):
        """Host arrays only: the device cache stays behind (it is rebuilt on first use)."""
        state = self.__dict__.copy()
        state.pop("_device_cache", None)
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _pack(weights: list[np.ndarray]) -> np.ndarray:
    """Host weights in the model's order (weight, bias per layer) -> scikit-learn's flat layout: every
    layer's weight, then every bias."""
    return np.concatenate([array.ravel() for array in (*weights[0::2], *weights[1::2])])


def _unpack(packed: np.ndarray, shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Inverse of _pack for a model whose parameters have `shapes` (its order)."""
    coefs, intercepts = shapes[0::2], shapes[1::2]
    arrays = split(np.asarray(packed), [*coefs, *intercepts])
    return [array for pair in zip(arrays[: len(coefs)], arrays[len(coefs) :], strict=True) for array in pair]


def _sample_weights(sample_weight, n_samples: int) -> np.ndarray:
    weights = np.asarray(sample_weight, dtype=np.float64)
    weights = np.full(n_samples, float(weights)) if weights.ndim == 0 else weights
    if weights.shape != (n_samples,):
        raise ValueError(f"sample_weight.shape == {weights.shape}, expected {(n_samples,)}!")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("sample_weight must be finite and non-negative")
    if not weights.any():
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return weights


def _choose(name: str, value, options) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")


class MLPClassifier(ClassifierMixin, _GpunnMLP):
    """scikit-learn's MLPClassifier (softmax, or logistic outputs for binary and multilabel) on gpunn.

    Its parameters are scikit-learn's plus `device` (cpu, cuda, cuda:N, auto, strict) and `dtype`: None
    trains in the input's precision on the host (scikit-learn's behaviour) and in float32 on a GPU unless
    dtype="float64" is asked for; "float32" or "float64" force one everywhere.
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device="cpu",
        dtype=None,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            loss="log_loss",
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            device=device,
            dtype=dtype,
        )

    _score_function = staticmethod(accuracy_score)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous call to "
                        f"fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. 'y' has {classes}."
                )
        return X, self._label_binarizer.transform(y).astype(bool)

    @available_if(lambda est: est._check_solver())
    @numpy_inside
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y) from the current weights; `classes` is required on the first call."""
        if _first_partial_fit(self, classes):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def _outputs_to_predictions(self, out):
        return self._label_binarizer.inverse_transform(out.ravel() if self.n_outputs_ == 1 else out)

    @in_input_namespace
    def predict(self, X):
        check_is_fitted(self)
        return self._outputs_to_predictions(self._forward_pass_fast(X))

    @in_input_namespace
    def predict_proba(self, X):
        check_is_fitted(self)
        out = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            out = out.ravel()
            return np.vstack([1 - out, out]).T
        return out

    @in_input_namespace
    def predict_log_proba(self, X):
        """log(predict_proba(X)), computed in log space by the loss's link (log softmax, log sigmoid): finite
        where a probability rounds to 0 or 1."""
        check_is_fitted(self)
        log_outputs = output_loss(self.out_activation_).log_outputs
        if self.n_outputs_ != 1:
            return self._forward_pass_fast(X, head=log_outputs)
        signs = np.array([[-1.0, 1.0]])  # one logistic output z: (log sigmoid(-z), log sigmoid(z))
        return self._forward_pass_fast(
            X, head=lambda backend, z: log_outputs(backend, z * backend.from_host(signs))
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


def _first_partial_fit(estimator, classes) -> bool:
    """scikit-learn's rule: classes are required on the first partial_fit and may not change later."""
    if getattr(estimator, "classes_", None) is None and classes is None:
        raise ValueError("classes must be passed on the first call to partial_fit.")
    if classes is not None:
        if getattr(estimator, "classes_", None) is not None:
            if not np.array_equal(estimator.classes_, unique_labels(classes)):
                raise ValueError(
                    f"`classes={classes!r}` is not the same as on last call to partial_fit, "
                    f"was: {estimator.classes_!r}"
                )
        else:
            estimator.classes_ = unique_labels(classes)
            return True
    return False


class MLPRegressor(RegressorMixin, _GpunnMLP):
    """scikit-learn's MLPRegressor (identity output with half squared error, or exp output with Poisson).

    `device` and `dtype` as MLPClassifier's: dtype=None is the input's precision on the host, float32 on a
    GPU unless dtype="float64" is asked for.
    """

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        device="cpu",
        dtype=None,
    ):
        super().__init__(
            hidden_layer_sizes=hidden_layer_sizes,
            activation=activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            loss=loss,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            device=device,
            dtype=dtype,
        )

    _score_function = staticmethod(r2_score)

    def _check_params(self) -> list[int]:
        _choose("loss", self.loss, ("squared_error", "poisson"))
        return super()._check_params()

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
            reset=reset,
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    @available_if(lambda est: est._check_solver())
    @numpy_inside
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y) from the current weights."""
        return self._fit(X, y, sample_weight, incremental=True)

    def _outputs_to_predictions(self, out):
        return out.ravel() if out.shape[1] == 1 else out

    @in_input_namespace
    def predict(self, X):
        check_is_fitted(self)
        return self._outputs_to_predictions(self._forward_pass_fast(X))
