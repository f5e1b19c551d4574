"""Checks of training settings shared by the CLI and the Python API.

Every mistake is one ConfigError whose message names the option the way the caller spelled it:
`epochs=` for Python code, `--epochs` on the command line (see gpunn.errors.Options). NumPy scalars are
accepted and turned into plain Python numbers, so config.json stays plain JSON.
"""

from __future__ import annotations

import math
import numbers
import os

from gpunn.errors import ConfigError, Options

INTEGERS = {"epochs": 1, "batch_size": 1, "seed": 0, "val_size": 0, "early_stopping": 0}  # name -> smallest
CHOICE_SETTINGS = ("optimizer", "schedule", "activation", "init", "dataset", "recipe")
PATH_SETTINGS = ("out", "resume", "data_dir")


def fail(render) -> ConfigError:
    """A ConfigError whose message is `render(name)`, name() spelling options for the caller."""
    return ConfigError(Options(render))


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(key: str, value, minimum: int) -> int:
    if not _is_integer(value) or value < minimum:
        raise fail(lambda n: f"{n(key)} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def number(key: str, value, low: float = 0.0, high: float = math.inf, low_open: bool = False) -> float:
    """A finite real number in [low, high) (or (low, high) when low_open)."""
    ok = _is_number(value) and math.isfinite(value) and (value > low if low_open else value >= low)
    if not ok or value >= high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g})" if high != math.inf else None
        what = f"in {interval}" if interval else f"{'>' if low_open else '>='} {low:g}"
        raise fail(lambda n: f"{n(key)} must be a finite number {what}, got {value!r}")
    return float(value)


def choice(key: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise fail(lambda n: f"{n(key)} must be one of {', '.join(choices)}, got {value!r}")
    return value


def hidden_sizes(value) -> tuple[int, ...]:
    """A non-empty sequence of positive integers: (128, 64); a string or a lone number is refused."""
    example = "(128, 64)"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise fail(
            lambda n: (
                f"{n('hidden')} takes a sequence of layer sizes such as {example} "
                f"(or (128,) for one layer), got {value!r}"
            )
        )
    sizes = tuple(value)
    if not sizes or not all(_is_integer(s) and s >= 1 for s in sizes):
        raise fail(lambda n: f"{n('hidden')} needs positive integer sizes such as {example}, got {value!r}")
    sizes = tuple(int(s) for s in sizes)
    model_size(
        sizes, 1, 2
    )  # the smallest data there is (1 input, 2 classes): refused before any data is read
    return sizes


def model_size(hidden: tuple[int, ...], in_features: int, classes: int) -> None:
    """Refuse hidden sizes whose MLP would pass gpunn's parameter limit, before anything is allocated."""
    from gpunn.nn.model import MAX_PARAMETERS, mlp_parameters

    count = mlp_parameters([in_features, *hidden, classes])
    if count > MAX_PARAMETERS:
        shown = ",".join(map(str, hidden))
        data = f"with {in_features} inputs and {classes} classes" if in_features > 1 else "with any data"
        raise fail(
            lambda n: (
                f"{n('hidden')} {shown} makes a model of {'at least ' if in_features == 1 else ''}{count:,} "
                f"parameters {data} ({count * 4 / 2**30:.1f} GiB as float32); a gpunn model holds at most "
                f"{MAX_PARAMETERS:,}: choose smaller layers"
            )
        )


def path(key: str, value):
    """None, a str or an os.PathLike: anything else (a number, say) is a mistake, not a folder name."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise fail(lambda n: f"{n(key)} must be a path (str or pathlib.Path), got {value!r}")
    if isinstance(value, str) and not value.strip():
        raise fail(lambda n: f"{n(key)} must be a path, got an empty string")
    return value


def check_settings(values: dict, choices: dict[str, tuple]) -> dict:
    """Plain, validated copies of the training settings in `values` (every key a TrainConfig field)."""
    out = dict(values)
    for key, minimum in INTEGERS.items():
        if key in out:
            out[key] = integer(key, out[key], minimum)
    if "lr" in out:
        out["lr"] = number("lr", out["lr"], low_open=True)
    if "momentum" in out:
        out["momentum"] = number("momentum", out["momentum"], high=1.0)
    if "weight_decay" in out:
        out["weight_decay"] = number("weight_decay", out["weight_decay"])
    for key in CHOICE_SETTINGS:
        if key in out and key in choices:
            out[key] = choice(key, out[key], choices[key])
    if "dropout" in out:
        p = out["dropout"]
        if not (_is_number(p) and 0.0 <= p < 1.0):
            raise fail(lambda n: f"{n('dropout')} must be a probability in [0, 1), got {p!r}")
        out["dropout"] = float(p)
    if "hidden" in out:
        out["hidden"] = hidden_sizes(out["hidden"])
    if out.get("early_stopping", 0) > 0 and out.get("val_size", 0) == 0:
        raise fail(
            lambda n: f"{n('early_stopping')} watches the validation loss: add {n('val_size')} N (e.g. 5000)"
        )
    from gpunn.nn.optim import USES_MOMENTUM

    if out.get("optimizer") in USES_MOMENTUM and out.get("momentum", 1.0) <= 0:
        optimizer = out["optimizer"]
        raise fail(lambda n: f"{n('optimizer', optimizer)} needs {n('momentum')} > 0")
    return out
