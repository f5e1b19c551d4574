"""Compile every CUDA kernel gpunn ships with NVRTC, as CuPy would on a GPU: each kernel of
gpunn/backend/kernels.py, for float32 and float64, for sm_80 (A100) and sm_90 (H100). No GPU needed.

    python scripts/check_kernels.py

NVRTC comes from the nvidia-cuda-nvrtc-cu12 wheel (the `test` extra), loaded through ctypes; a system
libnvrtc is used when the wheel is absent. Exit 0 when all compile; 1 with each compiler log otherwise;
2 when no NVRTC can be found.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpunn.backend.kernels import KERNELS, cuda_source  # noqa: E402

ARCHITECTURES = ("sm_80", "sm_90")
DTYPES = ("float32", "float64")


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


def compile_cuda(nvrtc, source: str, name: str, arch: str) -> tuple[bool, str]:
    """(compiled, compiler log) for one translation unit and one GPU architecture."""
    program = ctypes.c_void_p()
    status = nvrtc.nvrtcCreateProgram(
        ctypes.byref(program), source.encode(), f"{name}.cu".encode(), 0, None, None
    )
    if status != 0:
        return False, f"nvrtcCreateProgram failed with status {status}"
    try:
        options = (ctypes.c_char_p * 2)(f"--gpu-architecture={arch}".encode(), b"--std=c++17")
        status = nvrtc.nvrtcCompileProgram(program, len(options), options)
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        log = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(program, log)
        return status == 0, log.value.decode(errors="replace").strip()
    finally:
        nvrtc.nvrtcDestroyProgram(ctypes.byref(program))


def check(kernels=KERNELS, nvrtc=None) -> list[str]:
    """One line per kernel/dtype/arch that failed, with its log; empty when all compiled."""
    nvrtc = nvrtc or load_nvrtc()
    failures = []
    for kernel in kernels.values():
        for dtype in DTYPES:
            source = cuda_source(kernel, dtype)
            for arch in ARCHITECTURES:
                ok, log = compile_cuda(nvrtc, source, kernel.name, arch)
                if not ok:
                    failures.append(f"{kernel.name} ({dtype}, {arch}) does not compile:\n{log}")
    return failures


def main() -> int:
    try:
        nvrtc = load_nvrtc()
    except NvrtcMissing as exc:
        print(f"check_kernels.py: error: {exc}", file=sys.stderr)
        return 2
    failures = check(nvrtc=nvrtc)
    for failure in failures:
        print(failure, file=sys.stderr)
    total = len(KERNELS) * len(DTYPES) * len(ARCHITECTURES)
    print(
        f"NVRTC {nvrtc_version(nvrtc)}: {total - len(failures)}/{total} compiled "
        f"({len(KERNELS)} kernels x {', '.join(DTYPES)} x {', '.join(ARCHITECTURES)})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
