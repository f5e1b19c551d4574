"""Device decisions live in gpunn/backend/: no other module names CuPy, NCCL or a backend by name in code.

Comments and docstrings may say CuPy; code may not import it, reach into it, or compare with "cupy",
"numpy", "strict" or "nccl" (a decision that belongs to a backend capability instead).
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import gpunn

PACKAGE = Path(gpunn.__file__).parent
FORBIDDEN_NAMES = re.compile(r"cupy|nccl", re.IGNORECASE)
BACKEND_NAMES = {"cupy", "numpy", "strict", "nccl"}


def device_words_in_code(source: str) -> list[str]:
    """'line: token' for each identifier naming CuPy/NCCL and each string literal that is a backend name."""
    docstrings = {
        node.body[0].value.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
        and isinstance(node.body[0].value.value, str)
    }
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and FORBIDDEN_NAMES.search(token.string):
            found.append(f"{token.start[0]}: {token.string}")
        elif token.type == tokenize.STRING and token.start[0] not in docstrings:
            try:
                value = ast.literal_eval(token.string)
            except (ValueError, SyntaxError):  # an f-string: its parts are not a bare backend name
                continue
            if isinstance(value, str) and value.lower() in BACKEND_NAMES:
                found.append(f"{token.start[0]}: {token.string}")
    return found


def test_no_module_outside_the_backend_decides_by_device_name():
    offenders = {
        str(path.relative_to(PACKAGE)): words
        for path in sorted(PACKAGE.rglob("*.py"))
        if "backend" not in path.relative_to(PACKAGE).parts
        and (words := device_words_in_code(path.read_text(encoding="utf-8")))
    }
    assert offenders == {}


def test_the_check_sees_code_and_ignores_words():
    code = '"""Runs on CuPy."""\n# cupy here is a comment\nimport cupy\nif backend.name == "strict":\n    pass\n'
    assert device_words_in_code(code) == ["3: cupy", '4: "strict"']
