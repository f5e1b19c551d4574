"""`gpunn tune`'s search space: each training flag holds one value, a list (categorical) or a range LOW:HIGH.

A range is sampled (on a log scale for the lr and the batch size, whose good values span decades; uniformly
for the others); a list is a categorical choice; one value is fixed for every trial. Every value a trial can
get is checked by gpunn's own TrainConfig before the study starts: each list item and both ends of each
range, the other dimensions at their first value.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpunn.errors import ConfigError, flag_name
from gpunn.training.config import TrainConfig, parse_hidden

# what a trial may vary; the type of its values (hidden: comma-separated sizes, a list item each)
SEARCHABLE = {
    "lr": float,
    "batch_size": int,
    "momentum": float,
    "weight_decay": float,
    "dropout": float,
    "hidden": str,
    "optimizer": str,
    "schedule": str,
    "activation": str,
    "init": str,
}
LOG_SCALE = ("lr", "batch_size")  # their ranges are sampled on a log scale
# searched when no flag names a search: the example space
DEFAULT_SPACE = {
    "lr": "1e-4:1",
    "hidden": "64,128/128,64/256,128",
    "batch_size": "64,128,256",
    "dropout": "0:0.5",
    "weight_decay": "0:1e-3",
}


@dataclass(frozen=True)
class Dimension:
    """One searched setting: a range (low, high) or a list of choices."""

    key: str
    choices: tuple = ()
    low: float | int | None = None
    high: float | int | None = None

    @property
    def is_range(self) -> bool:
        return self.low is not None

    @property
    def log(self) -> bool:
        return self.is_range and self.key in LOG_SCALE

    def suggest(self, trial):
        """This dimension's value for an Optuna trial (hidden sizes as their '128,64' text)."""
        if not self.is_range:
            return trial.suggest_categorical(self.key, list(self.choices))
        if isinstance(self.low, int):
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def first(self):
        return self.low if self.is_range else self.choices[0]

    def ends(self) -> tuple:
        """The values validated for the whole dimension: both ends of a range, every choice."""
        return (self.low, self.high) if self.is_range else self.choices

    def text(self) -> str:
        if self.is_range:
            return f"{self.key} {self.low:g}:{self.high:g}{' (log)' if self.log else ''}"
        return f"{self.key} {' | '.join(map(str, self.choices))}"

    def to_dict(self) -> dict:
        if self.is_range:
            return {"low": self.low, "high": self.high, "log": self.log}
        return {"choices": list(self.choices)}


def train_value(key: str, value):
    """A sampled value as gpunn.train takes it (hidden '128,64' -> (128, 64))."""
    return parse_hidden(value) if key == "hidden" else value


def _value(key: str, kind, text: str):
    if kind is str:
        return text
    try:
        return kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(
            f"{flag_name(key)} takes {what}, a comma-separated list or a range LOW:HIGH, got {text!r}"
        ) from None


def parse_dimension(key: str, text: str) -> Dimension | None:
    """A Dimension for a searched flag, or None when `text` is one value (fixed for every trial)."""
    kind = SEARCHABLE[key]
    if ":" in text:
        if kind is str:
            raise ConfigError(f"{flag_name(key)} takes a value or a list, not a range: got {text!r}")
        parts = text.split(":")
        if len(parts) != 2:
            raise ConfigError(f"{flag_name(key)} takes one range LOW:HIGH, got {text!r}")
        low, high = (_value(key, kind, part) for part in parts)
        if not low < high:
            raise ConfigError(f"{flag_name(key)} {text}: the range's low end must be below its high end")
        return Dimension(key, low=low, high=high)
    separator = "/" if key == "hidden" else ","
    items = text.split(separator)
    if len(items) == 1:
        return None
    values = tuple(_value(key, kind, item) for item in items)
    if key == "hidden":  # one spelling per choice: '128, 64' and '128,64' are the same network
        values = tuple(",".join(map(str, parse_hidden(v))) for v in values)
    if len(set(values)) != len(values):
        raise ConfigError(f"{flag_name(key)} {text}: a value is listed twice")
    return Dimension(key, choices=values)


@dataclass(frozen=True)
class SearchSpace:
    """The searched dimensions and the settings every trial shares (already typed for gpunn.train)."""

    dimensions: tuple[Dimension, ...]
    fixed: dict

    def sample(self, trial) -> dict:
        """The trial's settings for gpunn.train: the fixed ones plus one value of each dimension."""
        sampled = {d.key: train_value(d.key, d.suggest(trial)) for d in self.dimensions}
        return {**self.fixed, **sampled}

    def text(self) -> str:
        return "; ".join(d.text() for d in self.dimensions)

    def to_dict(self) -> dict:
        return {d.key: d.to_dict() for d in self.dimensions}


def search_space(given: dict[str, str | None], fixed: dict, recipe: str | None) -> SearchSpace:
    """The space from the searchable flags as typed (None: not given), checked with TrainConfig.

    `fixed`: the settings that are never searched (epochs, seed, dataset, val_size, ...), already typed.
    No searchable flag given: DEFAULT_SPACE."""
    raw = {k: v for k, v in given.items() if v is not None}
    if not raw:
        raw = dict(DEFAULT_SPACE)
    dimensions, fixed = [], dict(fixed)
    for key, text in raw.items():
        dimension = parse_dimension(key, str(text))
        if dimension is None:
            fixed[key] = train_value(key, _value(key, SEARCHABLE[key], str(text)))
        else:
            dimensions.append(dimension)
    if not dimensions:
        raise ConfigError(
            "nothing to search: give at least one flag a list (--batch-size 64,128) or a range (--lr 1e-3:1)"
        )
    space = SearchSpace(tuple(dimensions), fixed)
    check_space(space, recipe)
    return space


def check_space(space: SearchSpace, recipe: str | None) -> list[TrainConfig]:
    """Every value of every dimension through TrainConfig (the others at their first value); the configs."""
    firsts = {d.key: train_value(d.key, d.first()) for d in space.dimensions}
    configs = []
    for dimension in space.dimensions:
        for value in dimension.ends():
            settings = {**space.fixed, **firsts, dimension.key: train_value(dimension.key, value)}
            configs.append(TrainConfig.from_recipe(recipe or "default", **settings))
    return configs
