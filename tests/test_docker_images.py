"""The images hold what running needs: the CUDA image no test extra, no CUDA-12 wheel in a CUDA-13 build and
no source tree; the CPU image can export ONNX. (No Docker here: these read the Dockerfiles and pyproject.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_gpu_path_bugs import dockerfile

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
ROOT = Path(__file__).resolve().parents[1]
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]


def stages(name: str) -> dict[str, list[tuple[str, str]]]:
    """Each stage's steps, by its name (`AS name`; the last stage, the default target, is also 'default')."""
    found, current = {}, None
    for instruction, args in dockerfile(name):
        if instruction == "FROM":
            current = args.split(" AS ")[-1].strip() if " AS " in args else f"stage{len(found)}"
            found[current] = []
        if current is not None:  # an ARG before the first FROM belongs to no stage
            found[current].append((instruction, args))
    found["default"] = found[current]
    return found


def requirements(extras: list[str]) -> list[str]:
    """Every requirement the extras bring, gpunn[...] references followed."""
    out, todo, seen = [], list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in EXTRAS[extra]:
            nested = re.fullmatch(r"gpunn\[([\w,-]+)\]", requirement)
            todo.extend(nested.group(1).split(",")) if nested else out.append(requirement)
    return out


def installed_extras(steps, cupy_extra: str) -> list[str]:
    (install,) = [args for name, args in steps if name == "RUN" and "pip install" in args]
    return re.search(r"\[([^\]]+)\]", install).group(1).replace("${CUPY_EXTRA}", cupy_extra).split(",")


def test_the_default_cuda_image_is_the_runtime_without_tests_or_source():
    found = stages("Dockerfile.cuda")
    default = found["default"]
    assert default[0] == ("FROM", "runtime")  # the last stage adds nothing to the runtime stage
    runtime = found["runtime"]
    extras = installed_extras(runtime, "cuda12")
    assert (
        "test" not in extras
        and "test-base" not in extras
        and {"cuda12", "plot", "image", "onnx"} <= set(extras)
    )
    assert not any(name == "WORKDIR" and args.startswith("/src") for name, args in runtime)
    copied = [args.split()[-1] for name, args in runtime if name == "COPY"]
    (install,) = [args for name, args in runtime if name == "RUN" and "pip install" in args]
    assert copied and all(target.startswith("/tmp/gpunn-src") for target in copied)
    assert install.rstrip().endswith("rm -rf /tmp/gpunn-src")  # the source goes in the layer that used it


@pytest.mark.parametrize("stage", ["runtime", "gpu-check"])
def test_a_cuda13_image_gets_no_cuda12_wheel(stage):
    brought = requirements(installed_extras(stages("Dockerfile.cuda")[stage], "cuda13"))
    assert [r for r in brought if "cu12" in r or "cuda12" in r] == []
    assert any(r.startswith("cupy-cuda13x[ctk]") for r in brought)


def test_the_test_extra_is_test_base_plus_nvrtc_for_cpu_ci():
    assert set(requirements(["test"])) - set(requirements(["test-base"])) == {
        "nvidia-cuda-nvrtc-cu12>=12.0; sys_platform == 'linux' and platform_machine == 'x86_64'"
    }


def test_the_cpu_image_has_what_gpunn_export_imports():
    extras = installed_extras(dockerfile("Dockerfile"), "")
    export = (ROOT / "gpunn" / "cli" / "export_onnx.py").read_text()
    assert "import onnx\n" in export and "onnxruntime" not in re.sub(r"#.*", "", export)
    assert "onnx" in extras and any(r.startswith("onnx") for r in requirements(["onnx"]))
