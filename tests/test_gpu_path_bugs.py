"""Issue #12's GPU-path bugs 1, 2, 3, 6, 7, 9 and 10, each checked on a machine without a GPU.

The CuPy fakes below behave as CuPy's source says (files cited where used); they stand in for a host with a
driver but without NVRTC, cuBLAS, the runtime headers or NCCL, which CI machines never have.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from script_modules import load_script

from gpunn.backend import cuda_probe, selection
from gpunn.backend.collectives import NcclAllreduce, nccl_available
from gpunn.errors import DeviceUnavailableError, InvalidDeviceError

ROOT = Path(__file__).resolve().parents[1]


class FakeCupy(types.ModuleType):
    """Just the public CuPy API the probe uses, on NumPy, with a hook to fail like CuPy does."""

    def __init__(self, devices: int = 1, kernel_error: Exception | None = None, matmul_error=None):
        super().__init__("cupy")
        self.launches: list[tuple[str, int]] = []
        self._kernel_error, self._matmul_error, self._current = kernel_error, matmul_error, 0
        device = self._device
        runtime = types.SimpleNamespace(getDeviceCount=lambda: devices, runtimeGetVersion=lambda: 12080)
        self.cuda = types.SimpleNamespace(runtime=runtime, Device=device)

    def _device(self, index):
        fake = self

        class Device:
            def __enter__(self):
                fake._current = index

            def __exit__(self, *exc):
                fake._current = 0

        return Device()

    def ElementwiseKernel(self, in_params, out_params, body, name):  # noqa: N802 (CuPy's name)
        def launch(x):  # CuPy compiles on the first launch (cupy/_core/_kernel.pyx), not at construction
            if self._kernel_error is not None:
                raise self._kernel_error
            self.launches.append((name, self._current))
            return x + 1

        return launch

    def ones(self, shape, dtype):
        return np.ones(shape, dtype=dtype)

    def matmul(self, a, b):
        if self._matmul_error is not None:
            raise self._matmul_error
        self.launches.append(("matmul", self._current))
        return a @ b

    def asnumpy(self, a):
        return np.asarray(a)


@pytest.fixture
def fake_cupy(monkeypatch):
    """Install a FakeCupy as `cupy` (fresh probe cache); call it with FakeCupy's arguments."""

    def install(**kwargs):
        fake = FakeCupy(**kwargs)
        monkeypatch.setitem(sys.modules, "cupy", fake)
        monkeypatch.setattr(cuda_probe, "_smoke_tested", {})
        return fake

    return install


# ---- bug 9: the probe compiles and runs a kernel and a matmul, and names what is missing -------------------
def test_probe_runs_a_kernel_and_a_matmul_once_per_device(fake_cupy):
    fake = fake_cupy(devices=2)
    assert cuda_probe.cuda_status(0)[0] and cuda_probe.cuda_status(0)[0]
    assert cuda_probe.cuda_status(1)[0]
    assert fake.launches == [
        ("gpunn_probe_add_one", 0),
        ("matmul", 0),
        ("gpunn_probe_add_one", 1),
        ("matmul", 1),
    ]


class CompileException(Exception):
    """Named as CuPy's (cupy/cuda/compiler.py); NVRTC's log is its message."""


@pytest.mark.parametrize(
    ("failure", "names"),
    [
        # CuPy 14 (cupy/_core/core.pyx, assemble_cupy_compiler_options) when no header directory is found
        (
            {
                "kernel_error": RuntimeError(
                    "Failed to find CUDA headers. Please install CUDA toolkit headers "
                    "(e.g., pip install cupy-cuda12x[ctk]) or specify CUDA_PATH"
                )
            },
            "headers",
        ),
        # CuPy 13 with NVRTC >= 12.2 and no headers (CuPy's install guide, "NVRTC_ERROR_COMPILATION")
        (
            {
                "kernel_error": CompileException(
                    'catastrophic error: cannot open source file "vector_types.h"'
                )
            },
            "headers",
        ),
        # cupy_backends/cuda/_softlink.pyx when the library is not there
        (
            {
                "kernel_error": RuntimeError(
                    "CuPy failed to load libnvrtc.so.12: OSError: libnvrtc.so.12: cannot "
                    "open shared object file"
                )
            },
            "NVRTC",
        ),
        (
            {"matmul_error": RuntimeError("CuPy failed to load libcublas.so.12: OSError: libcublas.so.12")},
            "cuBLAS",
        ),
    ],
)
def test_probe_turns_a_missing_toolkit_part_into_the_fix(fake_cupy, failure, names):
    fake_cupy(**failure)
    with pytest.raises(DeviceUnavailableError) as err:
        cuda_probe.require_cuda(0)
    message = str(err.value)
    assert names in message and "cupy-cuda12x[ctk]" in message and "gpunn[cuda12]" in message
    assert "\n" not in message
    usable, why = cuda_probe.cuda_status(0)
    assert not usable and names in why
    assert selection.select("auto").backend.device == "cpu"  # auto falls back and says why


def test_a_failed_probe_is_not_repeated(fake_cupy):
    fake = fake_cupy(matmul_error=RuntimeError("CUBLAS_STATUS_NOT_INITIALIZED"))
    for _ in range(3):
        assert not cuda_probe.cuda_status(0)[0]
    assert fake.launches == [("gpunn_probe_add_one", 0)]  # the kernel ran once, the matmul failed once


def test_cuda_extras_bring_the_toolkit_from_pip():
    """CuPy 14's setup.py: the `ctk` extra is cuda-toolkit[cudart,nvrtc,cublas,...] (headers in cudart)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    for extra, package in (("cuda12", "cupy-cuda12x[ctk]"), ("cuda13", "cupy-cuda13x[ctk]")):
        (line,) = [line for line in pyproject.splitlines() if line.startswith(f"{extra} = ")]
        assert f'"{package}>=14' in line, line


def test_cuda_extras_bring_nccl_too():
    """CuPy's `ctk` extra has no NCCL (CuPy 14's setup.py), so without the nvidia-nccl wheel distributed CUDA
    training reports NCCL unavailable; the wheel is the one the NCCL check names (nvidia-nccl-cuXX)."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    for extra, wheel in (("cuda12", "nvidia-nccl-cu12"), ("cuda13", "nvidia-nccl-cu13")):
        (line,) = [line for line in pyproject.splitlines() if line.startswith(f"{extra} = ")]
        assert f'"{wheel}>=' in line, line


# ---- bug 2: NCCL through CuPy is reported as it is --------------------------------------------------------
@pytest.fixture
def cupy_without_nccl(fake_cupy, monkeypatch):
    """cupy/cuda/nccl.py catches the library's ImportError and sets `available = False`, defining nothing."""
    fake = fake_cupy()
    nccl = types.ModuleType("cupy.cuda.nccl")
    nccl.available = False
    fake.cuda.nccl = nccl
    monkeypatch.setitem(sys.modules, "cupy.cuda", fake.cuda)
    monkeypatch.setitem(sys.modules, "cupy.cuda.nccl", nccl)
    return fake


def test_nccl_that_did_not_load_is_reported_unavailable_with_the_package(cupy_without_nccl):
    usable, why = nccl_available()
    assert not usable and 'pip install "nvidia-nccl-cu12"' in why


def test_gpunn_info_does_not_claim_nccl(cupy_without_nccl, monkeypatch):
    from gpunn.backend import availability
    from gpunn.cli import info

    monkeypatch.setattr(availability, "cuda_status", lambda index=0: (True, "1 CUDA device(s) visible"))
    monkeypatch.setattr(availability, "cuda_details", lambda: [])
    (line,) = [line for line in info.info_lines() if line.startswith("distributed:")]
    assert "NCCL unavailable" in line and "nvidia-nccl-cu12" in line


def test_distributed_cuda_without_nccl_is_one_clear_error(cupy_without_nccl):
    with pytest.raises(DeviceUnavailableError, match="needs NCCL.*nvidia-nccl-cu12") as err:
        NcclAllreduce(types.SimpleNamespace(name="cupy"))  # before: AttributeError (no get_unique_id)
    assert "\n" not in str(err.value)


# ---- bug 3: one GPU per local rank, auto resolved first, an explicit cuda:N never silently moved ---------
@pytest.fixture
def two_gpus(monkeypatch):
    """A probe that passes with two visible devices; backends are not built, their spec is returned."""
    monkeypatch.setattr(cuda_probe, "cuda_status", lambda index=0: (True, "2 CUDA device(s) visible"))
    monkeypatch.setattr(cuda_probe, "visible_devices", lambda: 2)
    monkeypatch.setattr(
        selection, "_backend_for", lambda spec, dtype: types.SimpleNamespace(device=str(spec))
    )
    monkeypatch.delenv("GPUNN_DEVICE", raising=False)


@pytest.mark.parametrize(
    ("device", "local_rank", "local_size", "expected"),
    [
        ("auto", 1, 2, "cuda:1"),
        ("cuda", 1, 2, "cuda:1"),
        ("cuda", 3, 4, "cuda:1"),  # more ranks than GPUs: local rank modulo the visible devices
        ("cuda:1", 0, 1, "cuda:1"),  # one rank on this host: the pinned GPU is kept
        ("cpu", 1, 2, "cpu"),
    ],
)
def test_local_rank_picks_the_gpu(two_gpus, device, local_rank, local_size, expected):
    chosen = selection.select_for_local_rank(device, None, local_rank, local_size)
    assert chosen.backend.device == expected
    if device == "cuda:1":
        assert "kept as asked" in chosen.describe()


def test_one_visible_gpu_per_rank_is_each_ranks_cuda0(two_gpus, monkeypatch):
    monkeypatch.setattr(cuda_probe, "visible_devices", lambda: 1)  # CUDA_VISIBLE_DEVICES set per rank
    assert selection.select_for_local_rank("auto", None, 1, 2).backend.device == "cuda:0"


def test_a_pinned_gpu_shared_by_local_ranks_is_refused(two_gpus):
    with pytest.raises(InvalidDeviceError, match=r"cuda:1 .*all 2 ranks on this host on one GPU"):
        selection.select_for_local_rank("cuda:1", None, 0, 2)


def test_auto_without_cuda_stays_on_cpu_for_every_rank(fake_cupy):
    fake_cupy(devices=0)
    assert selection.select_for_local_rank("auto", None, 1, 2).backend.device == "cpu"


def test_local_rank_choice_says_how_each_rank_got_its_gpu(two_gpus, monkeypatch):
    rank = selection.select_for_local_rank("cuda", None, 3, 4)
    assert rank.describe() == "cuda:1 (from argument; local rank 3 of 4 -> cuda:1 (2 visible))"
    rank = selection.select_for_local_rank("auto", None, 1, 2)
    assert rank.describe() == (
        "cuda:1 (from argument; auto: chose cuda (2 CUDA device(s) visible); "
        "local rank 1 of 2 -> cuda:1 (2 visible))"
    )
    monkeypatch.setenv("GPUNN_DEVICE", "cuda:1")
    rank = selection.select_for_local_rank(None, None, 0, 1)
    assert rank.describe() == "cuda:1 (from GPUNN_DEVICE; cuda:1 kept as asked (one rank on this host))"


def test_a_refused_pinned_gpu_says_what_to_ask_for_instead(two_gpus, monkeypatch):
    monkeypatch.setenv("GPUNN_DEVICE", "cuda:1")
    with pytest.raises(InvalidDeviceError) as err:
        selection.select_for_local_rank(None, None, 0, 2)
    assert str(err.value) == (
        "device cuda:1 (from GPUNN_DEVICE) would put all 2 ranks on this host on one GPU, which NCCL refuses; "
        "ask for `cuda` or `auto` to give each local rank its own GPU (local rank modulo the visible devices), "
        "or run one rank per host"
    )


def test_each_rank_gets_the_asked_dtype(two_gpus, monkeypatch):
    def backend_of(spec, dtype):
        return types.SimpleNamespace(dtype_name=dtype)

    monkeypatch.setattr(selection, "_backend_for", backend_of)
    assert selection.select_for_local_rank("cuda", "float64", 1, 2).backend.dtype_name == "float64"
    monkeypatch.setenv("GPUNN_DTYPE", "float64")
    assert selection.select_for_local_rank("cpu", None, 1, 2).backend.dtype_name == "float64"


def test_bare_cuda_with_no_visible_gpu_is_cuda0_which_then_says_why_it_cannot_work(two_gpus, monkeypatch):
    monkeypatch.setattr(cuda_probe, "visible_devices", lambda: 0)
    rank = selection.select_for_local_rank("cuda", None, 1, 2)
    assert rank.describe() == "cuda:0 (from argument; local rank 1 of 2 -> cuda:0 (0 visible))"


def test_bare_cuda_on_a_host_without_gpus_is_a_clear_error_for_every_rank(fake_cupy, monkeypatch):
    fake_cupy(devices=0)
    # a stand-in CupyBackend cached by an earlier test must not answer for this GPU-less host
    monkeypatch.setattr(selection, "_backends", {})
    with pytest.raises(DeviceUnavailableError, match="^CUDA unavailable: the driver reports no CUDA device$"):
        selection.select_for_local_rank("cuda", None, 1, 2)


MPIEXEC = shutil.which("mpiexec")
RECORD_DEVICE = """
import sys
from gpunn.backend import cuda_probe, selection
from gpunn.backend.numpy_backend import NumpyBackend
cuda_probe.cuda_status = lambda index=0: (True, "2 fake devices")
cuda_probe.visible_devices = lambda: 2
def record(spec, dtype):
    # one write per line: mpiexec merges the ranks' stdout at write granularity, and print() writes its
    # pieces separately ("rank devicerank device cuda:1" was seen)
    sys.stdout.write(f"rank device {spec}\\n")
    sys.stdout.flush()
    return NumpyBackend(dtype)
selection._backend_for = record
from gpunn.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found (the mpich wheel of gpunn[mpi] brings it)")
def test_training_under_mpiexec_gives_each_rank_its_gpu(tmp_path):
    pytest.importorskip("mpi4py")
    args = ["train", "--distributed", "--device", "auto", "--dataset", "digits", "--epochs", "1", "--quiet"]
    done = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-c", RECORD_DEVICE, *args, "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr
    chosen = sorted(line.split()[-1] for line in done.stdout.splitlines() if line.startswith("rank device"))
    assert chosen == ["cuda:0", "cuda:1"]


# ---- bug 6: gpu-check writes its report whatever a part raises -----------------------------------------------
def test_gpu_check_reports_whatever_raises(tmp_path, monkeypatch, capsys):
    gpu_check = load_script("gpu-check")

    def fake_run(command, env=None, timeout=1800):
        if "pytest" in command:
            raise subprocess.TimeoutExpired(command, timeout, output="12 passed so far")
        return True, "fine"

    def parity_raises():
        raise RuntimeError("cudaErrorIllegalAddress: an illegal memory access was encountered")

    def facts_raise():
        raise ValueError("getDeviceProperties failed")

    monkeypatch.setattr(gpu_check, "run", fake_run)
    monkeypatch.setattr(gpu_check, "parity_part", parity_raises)
    monkeypatch.setattr(gpu_check, "gpu_facts", facts_raise)
    monkeypatch.setattr(sys, "argv", ["gpu-check", "--quick", "--out-dir", str(tmp_path)])

    assert gpu_check.main() == 1
    report = json.loads(next(tmp_path.glob("gpu-check-*.json")).read_text())
    parts = report["parts"]
    assert parts["gpunn info"]["ok"] and parts["bench"]["ok"]
    pytest_part, parity = parts["pytest -m gpu"], parts["cpu-vs-gpu parity"]
    assert not pytest_part["ok"] and "TimeoutExpired" in pytest_part["output"]
    assert "12 passed so far" in pytest_part["output"]  # what it printed before the timeout
    assert (
        not parity["ok"] and "Traceback" in parity["output"] and "cudaErrorIllegalAddress" in parity["output"]
    )
    assert "getDeviceProperties failed" in parts["gpu usable"]["output"]
    text = next(tmp_path.glob("gpu-check-*.txt")).read_text()
    assert "cudaErrorIllegalAddress" in text and text.splitlines()[-1].startswith("2 passed, 7 failed")
    progress = capsys.readouterr().out
    for name in ("gpunn info", "pytest -m gpu", "cpu-vs-gpu parity", "bench"):
        assert f"[gpu-check] {name}: started" in progress
    assert "[gpu-check] cpu-vs-gpu parity: FAILED after" in progress


# ---- bugs 1 and 10: the images (Docker Hub is out of reach here, so these read the Dockerfiles) ------------
def dockerfile(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/`name`, continuation lines joined, comments dropped."""
    lines = [
        line
        for line in (ROOT / "docker" / name).read_text().splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in joined.splitlines()
        if line.strip()
    ]


def final(steps, instruction: str) -> str:
    return [args for name, args in steps if name == instruction][-1]


def volumes(steps) -> list[str]:
    return [v for name, args in steps if name == "VOLUME" for v in json.loads(args)]


def test_cuda_image_has_the_headers_and_compiles_a_kernel_at_build():
    steps = dockerfile("Dockerfile.cuda")
    runs = [args for name, args in steps if name == "RUN"]
    extra = next(
        args.split("=")[1] for name, args in steps if name == "ARG" and args.startswith("CUPY_EXTRA=")
    )
    pyproject = (ROOT / "pyproject.toml").read_text()
    headers_from_pip = any("${CUPY_EXTRA}" in run and "pip install" in run for run in runs) and any(
        line.startswith(f"{extra} = ") and "[ctk]" in line for line in pyproject.splitlines()
    )
    headers_from_base = "-devel-" in final(steps, "FROM") or any("cuda-cudart-dev" in run for run in runs)
    assert headers_from_pip or headers_from_base
    install = next(i for i, run in enumerate(runs) if "pip install" in run)
    assert any("nvrtc_smoke.py" in run for run in runs[install:])  # compiles once everything is installed
    assert any("nvrtc_smoke.py" in args for name, args in steps if name == "COPY")
    assert (ROOT / "docker" / "nvrtc_smoke.py").exists()
    cache = re.search(r"CUPY_CACHE_DIR=(\S+)", final(steps, "ENV"))
    assert cache and any(cache.group(1).startswith(v) for v in volumes(steps))


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_runs_land_in_the_volume(name):
    """`gpunn train` writes runs/ under the working directory: it must be on the volume, not in the layer."""
    steps = dockerfile(name)
    workdir = final(steps, "WORKDIR")
    assert any(workdir == v or workdir.startswith(v.rstrip("/") + "/") for v in volumes(steps)), workdir


def test_cpu_image_has_the_plot_and_image_extras():
    (install,) = [args for name, args in dockerfile("Dockerfile") if name == "RUN" and "pip install" in args]
    extras = re.search(r"\.\[([a-z0-9,]+)\]", install)
    assert extras and {"plot", "image"} <= set(extras.group(1).split(","))


# ---- bug 7: the GPU workflow and compose keep data and reports where uid 10001 can write ------------------
def test_gpu_workflow_keeps_data_downloads_it_and_writes_no_bind_mount():
    problems = load_script("check_workflows.py").problems

    assert problems(str(ROOT / ".github" / "workflows" / "gpu.yml")) == []


def test_workflow_checker_catches_the_old_mistakes(tmp_path):
    problems = load_script("check_workflows.py").problems

    old = tmp_path / "gpu.yml"
    old.write_text(
        "on: push\njobs:\n  g:\n    runs-on: [self-hosted]\n    steps:\n      - run: |\n"
        '          docker run --rm -v "${{ runner.temp }}/d:/data" -v "$PWD/out:/src/out" img \\\n'
        "            gpu-check --data-dir /data/gpunn\n"
    )
    found = "\n".join(problems(str(old)))
    assert "runner.temp is emptied" in found and "$PWD/out:/src/out: a writable bind mount" in found
    assert "--data-dir never downloads" in found


def test_compose_mounts_only_named_volumes():
    import yaml

    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    for service in compose["services"].values():
        for mount in service.get("volumes", []):
            assert mount.split(":")[0] in compose["volumes"], mount


def test_gpu_check_runs_each_compute_sanitizer_tool_over_the_gpu_tests_or_says_it_is_missing(monkeypatch):
    gpu_check = load_script("gpu-check")
    ran = []
    monkeypatch.setattr(
        gpu_check, "run", lambda command, env=None, timeout=1800: (ran.append(command), (True, ""))[1]
    )
    monkeypatch.setattr(gpu_check.shutil, "which", lambda name: "/opt/cuda/bin/compute-sanitizer")
    for tool in ("memcheck", "racecheck", "synccheck"):
        assert gpu_check.sanitizer_part(tool)() == (True, "")
        command = ran[-1]
        assert command[:5] == ["/opt/cuda/bin/compute-sanitizer", "--tool", tool, "--error-exitcode", "1"]
        assert ["-m", "gpu"] == command[command.index("pytest") + 1 : command.index("pytest") + 3]
        assert set(gpu_check.SANITIZED_TESTS) <= set(command)
    monkeypatch.setattr(gpu_check.shutil, "which", lambda name: None)
    monkeypatch.setattr(gpu_check.Path, "glob", lambda self, pattern: iter(()))
    ok, text = gpu_check.sanitizer_part("memcheck")()
    assert not ok and text.startswith("compute-sanitizer not found") and len(ran) == 3
