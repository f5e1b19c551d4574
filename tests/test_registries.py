"""One registry per family of names: the CLI offers, validation accepts and the factories build the same names."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpunn.cli import main as cli
from gpunn.data.sources import SOURCES
from gpunn.nn import Param
from gpunn.nn.init import get_initializer
from gpunn.nn.layers import Layer, activation
from gpunn.nn.optim import make_optimizer
from gpunn.training.config import setting_choices
from gpunn.training.schedules import lr_at

CHOICES = setting_choices()


def subparser(name: str):
    (commands,) = [a for a in cli.build_parser()._actions if a.dest == "command"]
    return commands.choices[name]


def offered(command: str, key: str) -> list[str]:
    """The names `gpunn COMMAND --help` lists for a setting (after the colon, ' | '-separated; a sweep's
    help goes on after a semicolon)."""
    (action,) = [a for a in subparser(command)._actions if a.dest == key]
    return action.help.rsplit(": ", 1)[1].split("; ")[0].split(" | ")


@pytest.mark.parametrize("command", ["train", "sweep"])
@pytest.mark.parametrize("key", [k for k in CHOICES if k != "recipe"])
def test_the_cli_offers_exactly_the_registry(command, key):
    assert offered(command, key) == list(CHOICES[key])


def test_recipe_help_names_every_recipe():
    (action,) = [a for a in subparser("train")._actions if a.dest == "recipe"]
    assert [part.split(" (")[0] for part in action.help.split("; ")] == list(CHOICES["recipe"])


def test_data_commands_offer_the_downloadable_datasets():
    (data,) = [a for a in subparser("data")._actions if a.dest == "data_command"]
    for action_name in ("download", "verify"):
        (flag,) = [a for a in data.choices[action_name]._actions if a.dest == "dataset"]
        assert list(flag.choices) == list(SOURCES)


FLAGS = {key: "--" + key.replace("_", "-") for key in CHOICES}


@pytest.mark.parametrize("key", list(CHOICES))
def test_an_unknown_name_is_one_line_listing_the_registry(key, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    dataset = [] if key == "dataset" else ["--dataset", "digits"]
    code = cli.main(["train", FLAGS[key], "bogus", *dataset, "--epochs", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "'bogus'" in err and ", ".join(CHOICES[key]) in err
    assert not any(tmp_path.iterdir())  # nothing was created


def one_step(name: str) -> float:
    """The weight after one step of the named optimizer from w = 1 with gradient 1 (lr 0.1, momentum 0.9)."""
    from gpunn.backend import get_backend

    backend = get_backend("cpu", "float64")
    param = Param("w", backend.from_host(np.array([1.0])))
    param.grad = backend.from_host(np.array([1.0]))
    make_optimizer(name, 0.1, momentum=0.9).step([param], backend)
    return float(backend.to_host(param.value)[0])


def test_every_optimizer_name_builds_its_rule():
    steps = {name: one_step(name) for name in CHOICES["optimizer"]}
    expected = {  # v = 0.9 * 0 + 1 after one step; Adam's first step is lr * sign(g) (bias-corrected)
        "sgd": 0.9,
        "momentum": 0.9,
        "nesterov": 1 - 0.1 * (1 + 0.9 * 1),
        "adam": 1 - 0.1 / (1 + 1e-8),
    }
    assert steps == pytest.approx(expected, rel=1e-12)


def test_every_other_family_name_builds():
    for name in CHOICES["schedule"]:
        assert math.isfinite(lr_at(name, 0.1, 5, 10))
    for name in CHOICES["init"]:
        assert get_initializer(name)(np.random.default_rng(0), 3, 2).shape == (3, 2)
    for name in CHOICES["activation"]:
        assert isinstance(activation(name), Layer)
