"""Training configuration: named recipes, validation with one clear message per mistake."""

from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from gpunn.data.sources import DATASET_NAMES
from gpunn.errors import ConfigError, Options
from gpunn.nn.init import INITIALIZERS
from gpunn.nn.layers import ACTIVATIONS
from gpunn.nn.optim import OPTIMIZERS
from gpunn.training.schedules import SCHEDULES, WITHOUT_BUDGET

# Chosen on a validation split, never on the test set (scripts/tune_recipe.py; README "Results on MNIST"):
# "default" has the lowest validation loss among the candidates that train within 3 PyTorch-epoch times;
# "long" has the lowest validation loss of all candidates, with no time limit. "classic" is the from-scratch
# textbook recipe, reproduced exactly: He init, SGD lr 0.1, batch 128, 20 epochs, constant lr.
_DEFAULT = dict(
    epochs=4,
    batch_size=128,
    lr=0.2,
    optimizer="nesterov",
    momentum=0.9,
    weight_decay=5e-4,
    schedule="onecycle",
    hidden=(128, 64),
    activation="relu",
    init="he",
)
RECIPES: dict[str, dict] = {
    "default": _DEFAULT,
    "long": {**_DEFAULT, "epochs": 10},
    "classic": dict(
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

# Recipe names that were renamed: a checkpoint or config.json saved under the old name still loads.
RENAMED_RECIPES = {"seed": "classic"}

# The default recipe's lr was tuned for batch 128; a smaller batch given without an lr gets the lr scaled
# down in proportion (the linear scaling rule): lr 0.2 at batch 16 kills the ReLUs in the first steps and
# the run sits at chance level (see gpunn/training/stall.py). Larger batches keep the tuned lr (scaling up diverges).
LR_TUNED_FOR_BATCH = {"default": 128, "long": 128}


def scaled_lr(recipe: str, batch_size) -> float | None:
    """The recipe's lr for `batch_size` (None: keep the recipe's lr)."""
    reference = LR_TUNED_FOR_BATCH.get(recipe)
    if reference is None or not isinstance(batch_size, numbers.Integral) or batch_size >= reference:
        return None
    return RECIPES[recipe]["lr"] * batch_size / reference


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

    chosen = ()  # not a setting: what from_recipe chose for the caller (a scaled lr, a schedule), as text

    @classmethod
    def from_recipe(cls, recipe: str = "default", **overrides) -> TrainConfig:
        """The recipe's settings with every non-None override applied, validated."""
        if recipe in RENAMED_RECIPES:
            new = RENAMED_RECIPES[recipe]
            raise ConfigError(
                Options(lambda n: f"recipe {recipe!r} is now called {new!r}: use {n('recipe', new)}")
            )
        if recipe not in RECIPES:
            raise ConfigError(
                Options(
                    lambda n: f"unknown recipe {recipe!r} ({n('recipe')}): choose from {', '.join(RECIPES)}"
                )
            )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values = {
            **RECIPES[recipe],
            "recipe": recipe,
            **{k: v for k, v in overrides.items() if v is not None},
        }
        chosen = []  # what gpunn chose for the caller, said in the run's first line
        if overrides.get("lr") is None and scaled_lr(recipe, overrides.get("batch_size")) is not None:
            values["lr"] = scaled_lr(recipe, overrides["batch_size"])
            chosen.append(
                f"lr {values['lr']:g}: the recipe's {RECIPES[recipe]['lr']:g} scaled to batch {overrides['batch_size']}"
            )
        if (
            overrides.get("schedule") is None
            and values.get("early_stopping")
            and values["schedule"] in WITHOUT_BUDGET
        ):
            budget_free = WITHOUT_BUDGET[values["schedule"]]
            chosen.append(
                f"schedule {budget_free}, not {values['schedule']}, which is stretched over all the epochs "
                "that early stopping may cut short"
            )
            values["schedule"] = budget_free
        config = cls(**values)
        config.validate()
        config.chosen = tuple(chosen)
        return config

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Settings as saved in a checkpoint or config.json (a recipe's old name becomes its new one)."""
        known = {f.name for f in fields(cls)}
        values = {
            **values,
            "recipe": RENAMED_RECIPES.get(values.get("recipe"), values.get("recipe", "default")),
        }
        config = cls(**{k: v for k, v in values.items() if k in known})
        config.validate(saved=True)
        return config

    def to_dict(self) -> dict:
        out = asdict(self)
        out["hidden"] = list(self.hidden)
        return out

    def validate(self, saved: bool = False) -> None:
        """Check every field; numbers become plain Python numbers (NumPy scalars are welcome).

        saved: settings a run recorded, whose dataset folder may have moved since (the data loader says so
        and names --data-dir; the settings themselves are not damaged)."""
        from gpunn.training.validate import check_settings

        # the dataset may also be a folder of IDX files: checked by _dataset below, not as a name
        choices = {k: v for k, v in setting_choices().items() if k != "dataset"}
        checked = check_settings(asdict(self), choices)
        for key, value in checked.items():
            setattr(self, key, value)
        self.dataset = _dataset(self.dataset, saved)


def _dataset(value, saved: bool = False) -> str:
    """A dataset name, or a folder of IDX files (kept absolute, so a resume from elsewhere finds it)."""
    from gpunn.data.arrays import ARRAYS
    from gpunn.data.datasets import is_folder_dataset
    from gpunn.training.validate import fail

    if value in DATASET_NAMES or value == ARRAYS:  # ARRAYS: gpunn.train(data=(X, y), ...)
        return value
    if isinstance(value, (str, Path)) and is_folder_dataset(value):
        return str(Path(value).resolve())
    if saved and isinstance(value, str) and Path(value).is_absolute():
        return value  # the folder the run recorded, moved or gone since: gpunn.data.provenance says so
    raise fail(
        lambda n: (
            f"{n('dataset')} must be one of {', '.join(DATASET_NAMES)} or a folder holding the four IDX files, "
            f"got {value!r}"
        )
    )


def setting_choices() -> dict[str, tuple[str, ...]]:
    """The names each choice setting accepts, read from each family's one registry.

    Validation, the CLI's help and the factories (make_optimizer, lr_at, get_initializer, activation,
    load_dataset, from_recipe) all use these registries, so they cannot disagree.
    """
    return {
        "optimizer": tuple(OPTIMIZERS),
        "schedule": tuple(SCHEDULES),
        "activation": tuple(a for a in ACTIVATIONS if a != "softmax"),  # softmax ends a model, not a layer
        "init": tuple(INITIALIZERS),
        "dataset": DATASET_NAMES,
        "recipe": tuple(RECIPES),
    }


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
