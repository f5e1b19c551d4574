"""Every error gpunn raises on purpose is declared in gpunn/errors.py, and the CLI's one-line rule for them."""

from __future__ import annotations

import ast
from pathlib import Path

import gpunn
from gpunn import errors
from gpunn.cli import main as cli
from gpunn.errors import ConfigError, GpunnError

PACKAGE = Path(gpunn.__file__).parent


def test_every_gpunn_error_class_lives_in_errors_py():
    error_names = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, GpunnError)
    }
    elsewhere = [
        f"{path.relative_to(PACKAGE)}: {node.name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "errors.py" or path.parent != PACKAGE
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and any(getattr(base, "id", getattr(base, "attr", None)) in error_names for base in node.bases)
    ]
    assert elsewhere == []


def fail_info_with(exc, monkeypatch, capsys) -> tuple[int, str]:
    import gpunn.cli.info

    def raise_it():
        raise exc

    monkeypatch.setattr(gpunn.cli.info, "info_lines", raise_it)
    code = cli.main(["info"])
    return code, capsys.readouterr().err


def test_an_error_told_on_another_rank_exits_with_its_code_and_prints_nothing(monkeypatch, capsys):
    exc = ConfigError("epochs must be an integer >= 1, got 0")
    exc.told_elsewhere = True
    assert fail_info_with(exc, monkeypatch, capsys) == (2, "")


def test_an_error_of_this_rank_is_one_line(monkeypatch, capsys):
    exc = ConfigError("epochs must be an integer >= 1, got 0")
    assert fail_info_with(exc, monkeypatch, capsys) == (
        2,
        "gpunn: error: epochs must be an integer >= 1, got 0\n",
    )
