"""scripts/NAME as a module for the tests (scripts/ is not a package, and gpu-check has no .py)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def script_path(file_name: str) -> Path:
    path = SCRIPTS / file_name
    return path if path.exists() else SCRIPTS / f"{file_name}.py"


def run_script(file_name: str, *args, cwd=None) -> subprocess.CompletedProcess:
    """scripts/`file_name` run in a process of its own with this Python, its output captured as text."""
    command = [sys.executable, str(script_path(file_name)), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd)


def load_script(file_name: str):
    """scripts/`file_name` ('gpu-check', 'check_workflows.py', or 'check_gpu' for check_gpu.py), registered in
    sys.modules under its module name first: dataclasses looks its module up while building the classes,
    and a script that imports another (gpu_mutants -> check_gpu) then shares the test's copy."""
    path = script_path(file_name)
    name = file_name.replace("-", "_").removesuffix(".py")
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    sys.modules.setdefault(name, module)
    loader.exec_module(module)
    return sys.modules[name]
