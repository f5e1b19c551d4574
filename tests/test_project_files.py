"""What people look for before adopting a library: the licence pyproject names, a changelog with the tag
convention, type information shipped, and an API reference that builds from the docstrings."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

import gpunn

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_file_is_the_mit_licence_pyproject_names():
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 gpunn developers\n")
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_the_changelog_names_the_tag_convention_and_has_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "the git tag `vX.Y.Z`" in text and "## [Unreleased]" in text
    assert f"## [{gpunn.__version__}] - " in text


def test_type_information_ships_with_the_package():
    assert (ROOT / "gpunn" / "py.typed").is_file()
    assert re.search(r'^"gpunn" = \["py.typed"\]', (ROOT / "pyproject.toml").read_text(), re.M)


@pytest.mark.slow
def test_the_api_reference_builds_from_the_docstrings(tmp_path):
    pytest.importorskip("pdoc", reason='pdoc (the docs extra) is not installed: pip install -e ".[docs]"')
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from build_docs import build
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    build(tmp_path / "api")
    loop = (tmp_path / "api" / "gpunn" / "training" / "loop.html").read_text()
    assert (
        "Advances a TrainingState epoch by epoch" in loop
    )  # a docstring, from a package whose __all__ hides it
    assert (tmp_path / "api" / "gpunn" / "nn" / "layers.html").is_file()
