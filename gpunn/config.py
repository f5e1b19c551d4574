"""Training configuration: named recipes, validation with one clear message per mistake."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from gpunn.data.sources import DATASET_NAMES
from gpunn.errors import GpunnError
from gpunn.nn.layers import ACTIVATIONS
from gpunn.schedules import SCHEDULES

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam")
INITS = ("he", "xavier")


class ConfigError(GpunnError, ValueError):
    exit_code = 2


# "default" is our best recipe for 784-128-64-10 (see README for its measured accuracy);
# "seed" is the classic from-scratch recipe, reproduced exactly.
RECIPES: dict[str, dict] = {
    "default": dict(
        epochs=10,
        batch_size=128,
        lr=0.2,
        optimizer="nesterov",
        momentum=0.9,
        weight_decay=1e-4,
        schedule="onecycle",
        hidden=(128, 64),
        activation="relu",
        init="he",
    ),
    "seed": dict(
        epochs=20,
        batch_size=128,
        lr=0.1,
        optimizer="sgd",
        momentum=0.0,
        weight_decay=0.0,
        schedule="constant",
        hidden=(128, 64),
        activation="relu",
        init="he",
    ),
}


@dataclass
class TrainConfig:
    epochs: int
    batch_size: int
    lr: float
    optimizer: str
    momentum: float
    weight_decay: float
    schedule: str
    hidden: tuple[int, ...]
    activation: str
    init: str
    dataset: str = "mnist"
    seed: int = 0
    recipe: str = "default"
    val_size: int = 0  # 0: no validation split (the whole training set trains, as before)
    early_stopping: int = 0  # patience in epochs on validation loss; 0: off
    dropout: float = 0.0  # inverted dropout after each hidden activation; 0: none

    @classmethod
    def from_recipe(cls, recipe: str = "default", **overrides) -> TrainConfig:
        """The recipe's settings with every non-None override applied, validated."""
        if recipe not in RECIPES:
            raise ConfigError(f"unknown recipe {recipe!r}: choose from {', '.join(RECIPES)}")
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values = {
            **RECIPES[recipe],
            "recipe": recipe,
            **{k: v for k, v in overrides.items() if v is not None},
        }
        config = cls(**values)
        config.hidden = tuple(int(h) for h in config.hidden)
        config.validate()
        return config

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        config = cls(**{k: v for k, v in values.items() if k in known})
        config.hidden = tuple(int(h) for h in config.hidden)
        config.validate()
        return config

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    def validate(self) -> None:
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ConfigError(message)

        need(
            isinstance(self.epochs, int) and self.epochs >= 1,
            f"--epochs must be an integer >= 1, got {self.epochs!r}",
        )
        need(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            f"--batch-size must be an integer >= 1, got {self.batch_size!r}",
        )
        need(
            isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0,
            f"--lr must be a finite number > 0, got {self.lr!r}",
        )
        need(0.0 <= self.momentum < 1.0, f"--momentum must lie in [0, 1), got {self.momentum!r}")
        need(
            self.weight_decay >= 0 and math.isfinite(self.weight_decay),
            f"--weight-decay must be >= 0, got {self.weight_decay!r}",
        )
        need(
            self.optimizer in OPTIMIZERS,
            f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}",
        )
        need(
            self.optimizer in ("sgd", "adam") or self.momentum > 0,
            f"--optimizer {self.optimizer} needs --momentum > 0",
        )
        need(
            self.schedule in SCHEDULES,
            f"--schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}",
        )
        need(
            self.activation in ACTIVATIONS and self.activation != "softmax",
            f"--activation must be one of relu, leaky_relu, sigmoid, tanh, gelu, got {self.activation!r}",
        )
        need(self.init in INITS, f"--init must be one of {', '.join(INITS)}, got {self.init!r}")
        need(
            self.dataset in DATASET_NAMES,
            f"--dataset must be one of {', '.join(DATASET_NAMES)}, got {self.dataset!r}",
        )
        need(
            len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
            f"--hidden needs at least one positive size, got {','.join(map(str, self.hidden))!r}",
        )
        need(
            isinstance(self.seed, int) and self.seed >= 0,
            f"--seed must be an integer >= 0, got {self.seed!r}",
        )
        need(
            isinstance(self.val_size, int) and self.val_size >= 0,
            f"--val-size must be an integer >= 0 (images held out of the training set), got {self.val_size!r}",
        )
        need(
            isinstance(self.early_stopping, int) and self.early_stopping >= 0,
            f"--early-stopping must be an integer >= 0 (epochs of patience), got {self.early_stopping!r}",
        )
        need(
            self.early_stopping == 0 or self.val_size > 0,
            "--early-stopping watches the validation loss: add --val-size N (e.g. --val-size 5000)",
        )
        need(
            isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0,
            f"--dropout must be a probability in [0, 1), got {self.dropout!r}",
        )


def parse_hidden(text: str) -> tuple[int, ...]:
    """'128,64' -> (128, 64), with a clear error for anything else."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(
            f"--hidden takes comma-separated positive integers like 128,64, got {text!r}"
        ) from None
    if not sizes or any(s < 1 for s in sizes):
        raise ConfigError(f"--hidden takes comma-separated positive integers like 128,64, got {text!r}")
    return sizes
