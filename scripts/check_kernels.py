"""Compile with NVRTC the source CuPy 14.2 itself generates for every call gpunn makes to its CUDA kernels:
each kernel of gpunn/backend/kernels.py, each call in its table, for float32 and float64, for sm_80 (A100)
and sm_90 (H100), with the options CuPy passes NVRTC. No GPU needed.

    python scripts/check_kernels.py

The sources and options come from CuPy's own code generation (tests/gpu_proof/cupy_codegen.py, on the
cupy-cuda12x wheel unpacked in .cupy-real). NVRTC comes from the nvidia-cuda-nvrtc-cu12 wheel (the `test`
extra), loaded through ctypes; a system libnvrtc is used when the wheel is absent. Exit 0 when all compile;
1 with each compiler log (or CuPy's refusal of a call) otherwise; 2 when NVRTC or the unpacked CuPy is
missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from gpu_proof import cupy_codegen  # noqa: E402
from gpu_proof.cupy_codegen import ARCHITECTURES, DTYPES, CupyCodegenMissing, CupyRefused  # noqa: E402

from gpunn.backend.kernels import KERNELS  # noqa: E402


class NvrtcMissing(Exception):
    pass


def load_nvrtc() -> ctypes.CDLL:
    """libnvrtc from the pip wheel (nvidia/cuda_nvrtc/lib), else from the system."""
    candidates = []
    try:
        import nvidia.cuda_nvrtc as wheel

        for folder in wheel.__path__:
            candidates += sorted(glob.glob(os.path.join(folder, "lib", "libnvrtc.so*")))
    except ImportError:
        pass
    system = ctypes.util.find_library("nvrtc")
    if system:
        candidates.append(system)
    for path in candidates:
        if ".alt." in path or "builtins" in path:
            continue
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    raise NvrtcMissing(
        'NVRTC not found: pip install nvidia-cuda-nvrtc-cu12 (it comes with pip install -e ".[test]")'
    )


def nvrtc_version(nvrtc) -> str:
    major, minor = ctypes.c_int(), ctypes.c_int()
    nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return f"{major.value}.{minor.value}"


def compile_cuda(nvrtc, source: str, name: str, options) -> tuple[bool, str]:
    """(compiled, compiler log) for one translation unit with these NVRTC options."""
    program = ctypes.c_void_p()
    status = nvrtc.nvrtcCreateProgram(
        ctypes.byref(program), source.encode(), f"{name}.cu".encode(), 0, None, None
    )
    if status != 0:
        return False, f"nvrtcCreateProgram failed with status {status}"
    try:
        encoded = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        status = nvrtc.nvrtcCompileProgram(program, len(options), encoded)
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(program, log)
        return status == 0, log.value.decode(errors="replace").strip()
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(program))


def shipped_calls(kernels=KERNELS) -> list:
    """(kernel, dtype, call, arch) for every call in the kernels' tables, dtype and architecture."""
    return [
        (*job, arch) for job in cupy_codegen.every_shipped_call(kernels, DTYPES) for arch in ARCHITECTURES
    ]


def check(kernels=KERNELS, nvrtc=None) -> list[str]:
    """One line per kernel/dtype/call/arch that CuPy refused or NVRTC failed, with its log; empty when all
    compiled."""
    nvrtc = nvrtc or load_nvrtc()
    jobs = shipped_calls(kernels)
    failures = []
    for (kernel, dtype, call, arch), answer in zip(jobs, cupy_codegen.generate(jobs), strict=True):
        where = f"{kernel.name} ({dtype}, {arch}, call {kernel.calls.index(call) + 1} of {len(kernel.calls)})"
        if isinstance(answer, CupyRefused):
            failures.append(f"{where}: {answer}")
            continue
        ok, log = compile_cuda(nvrtc, answer.source, kernel.name, answer.options)
        if not ok:
            failures.append(f"{where} does not compile:\n{log}")
    return failures


def main() -> int:
    try:
        nvrtc = load_nvrtc()
    except NvrtcMissing as exc:
        print(f"check_kernels.py: error: {exc}", file=sys.stderr)
        return 2
    try:
        failures = check(nvrtc=nvrtc)
    except CupyCodegenMissing as exc:
        print(f"check_kernels.py: error: {exc}", file=sys.stderr)
        return 2
    for failure in failures:
        print(failure, file=sys.stderr)
    total = len(shipped_calls())
    calls = sum(len(k.calls) for k in KERNELS.values())
    print(
        f"NVRTC {nvrtc_version(nvrtc)}: {total - len(failures)}/{total} of CuPy {cupy_codegen.CUPY_VERSION}'s "
        f"sources compiled ({len(KERNELS)} kernels, {calls} calls x {', '.join(DTYPES)} x "
        f"{', '.join(ARCHITECTURES)})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
