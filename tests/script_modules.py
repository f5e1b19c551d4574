"""scripts/NAME as a module for the tests (scripts/ is not a package, and gpu-check has no .py)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load_script(file_name: str):
    """scripts/`file_name` ('gpu-check', 'check_workflows.py', or 'check_gpu' for check_gpu.py), registered in
    sys.modules under its module name first: dataclasses looks its module up while building the classes,
    and a script that imports another (gpu_mutants -> check_gpu) then shares the test's copy."""
    path = SCRIPTS / file_name
    if not path.exists():
        path = SCRIPTS / f"{file_name}.py"
    name = file_name.replace("-", "_").removesuffix(".py")
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(name, loader))
    sys.modules.setdefault(name, module)
    loader.exec_module(module)
    return sys.modules[name]
