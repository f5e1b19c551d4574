"""Builds a CUDA translation unit into a host executable, in one of three modes, cached on disk by content.

- "weak": the kernel instrumented by GCC's -fsanitize=thread pass *without* ThreadSanitizer's runtime;
  native/runtime_fibers.cpp answers its hooks with a weak memory model and runs CUDA threads as fibers;
- "tsan": kernel and runtime under ThreadSanitizer, CUDA threads as OS threads (native/runtime_threads.cpp);
- "asan": the same under AddressSanitizer and UndefinedBehaviorSanitizer (every finding fatal).

CuPy's own headers (cupy/_core/include of the pinned cupy-cuda12x wheel, unpacked with
`pip install --no-deps --target .cupy-real cupy-cuda12x==14.2.0` at the repository root, or where
GPUNN_CUPY_REAL points) compile under g++ with native/shim.h in front of them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

NATIVE = Path(__file__).parent / "native"
REPO = Path(__file__).resolve().parents[2]
MODES = ("weak", "tsan", "asan")
_COMMON = ["-std=c++17", "-g", "-fno-omit-frame-pointer", "-fno-tree-loop-distribute-patterns", "-w"]
_FLAGS = {
    # kernel flags, runtime flags, link flags
    "weak": (["-O1", "-fsanitize=thread"], ["-O2"], []),
    "tsan": (["-O1", "-fsanitize=thread"], ["-O1", "-fsanitize=thread"], ["-fsanitize=thread"]),
    "asan": (
        ["-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
        ["-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"],
        ["-fsanitize=address,undefined"],
    ),
}
_RUNTIME = {"weak": "runtime_fibers.cpp", "tsan": "runtime_threads.cpp", "asan": "runtime_threads.cpp"}
# The headers CuPy prepends to every kernel (cupy/_core/core.pyx cupy_header_list, each as '#include <%s>'),
# precompiled behind native/shim.h only to build faster: each translation unit still includes what CuPy wrote.
PRECOMPILED_HEADERS = ("cupy/complex.cuh", "cupy/carray.cuh", "cupy/atomics.cuh", "cupy/math_constants.h")


class ToolchainError(RuntimeError):
    """No compiler, no CuPy headers, or a translation unit g++ refuses (its log is the message)."""


def cupy_include() -> Path:
    """cupy/_core/include of the pinned CuPy wheel: GPUNN_CUPY_REAL, else .cupy-real at the repository root."""
    root = Path(os.environ.get("GPUNN_CUPY_REAL") or REPO / ".cupy-real")
    include = root / "cupy" / "_core" / "include"
    if not (include / "cupy" / "carray.cuh").is_file():
        raise ToolchainError(
            f"CuPy 14.2's headers are not at {include}: run "
            "`pip install --no-deps --target .cupy-real cupy-cuda12x==14.2.0` at the repository root "
            "or set GPUNN_CUPY_REAL"
        )
    return include


def include_flags() -> list[str]:
    """CuPy's header directory and its CCCL folders (cupy/_core/core.pyx _get_cccl_include_options)."""
    include = cupy_include()
    cccl = include / "cupy" / "_cccl"
    return [
        f"-I{NATIVE}",
        f"-I{include}",
        f"-I{cccl / 'cub'}",
        f"-I{cccl / 'thrust'}",
        f"-I{cccl / 'libcudacxx'}",
    ]


def cache_dir() -> Path:
    root = os.environ.get("GPUNN_GPU_PROOF_CACHE") or os.path.join(
        tempfile.gettempdir(), f"gpunn-gpu-proof-{os.getuid()}"
    )
    Path(root).mkdir(parents=True, exist_ok=True)
    return Path(root)


def _compiler() -> str:
    return os.environ.get("CXX", "g++")


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise ToolchainError(
            f"no C++ compiler {command[0]!r}: install g++ (apt-get install g++) or set CXX"
        ) from None
    if done.returncode != 0:
        raise ToolchainError(f"{what} does not compile:\n{done.stderr}")


def _native_key() -> str:
    digest = hashlib.sha256()
    for path in sorted(NATIVE.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def _object(source: Path, flags: list[str], key: str) -> Path:
    """An object file of one native source, built once per flags and native-source version."""
    name = hashlib.sha256(f"{key}{source.name}{flags}".encode()).hexdigest()[:24]
    out = cache_dir() / f"{source.stem}-{name}.o"
    if not out.exists():
        partial = out.with_suffix(f".{os.getpid()}.o")
        _run(
            [_compiler(), *_COMMON, *flags, *include_flags(), "-c", str(source), "-o", str(partial)],
            source.name,
        )
        os.replace(partial, out)
    return out


def _prelude(mode: str, key: str) -> Path:
    """A folder holding gp_prelude.h (native/shim.h, then the headers CuPy prepends to every kernel) and its
    precompiled form for `mode`'s flags: a kernel compiles in a fraction of a second instead of two."""
    folder = cache_dir() / f"prelude-{mode}-{hashlib.sha256((key + mode).encode()).hexdigest()[:24]}"
    if not (folder / "gp_prelude.h.gch").exists():
        partial = Path(tempfile.mkdtemp(prefix=f"{folder.name}.", dir=cache_dir()))
        header = partial / "gp_prelude.h"
        header.write_text(
            '#pragma once\n#include "shim.h"\n' + "".join(f"#include <{h}>\n" for h in PRECOMPILED_HEADERS)
        )
        _run(
            [
                _compiler(),
                *_COMMON,
                *_FLAGS[mode][0],
                *include_flags(),
                "-x",
                "c++-header",
                str(header),
                "-o",
                str(header) + ".gch",
            ],
            "the CuPy headers",
        )
        try:
            os.replace(partial, folder)
        except OSError:  # another process made it first
            shutil.rmtree(partial, ignore_errors=True)
    return folder


def build(translation_unit: str, mode: str) -> Path:
    """The executable that launches the kernel of `translation_unit` (kernel wrapper included) in `mode`."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    kernel_flags, runtime_flags, link_flags = _FLAGS[mode]
    key = _native_key()
    name = hashlib.sha256(f"{key}{mode}{translation_unit}".encode()).hexdigest()[:24]
    exe = cache_dir() / f"kernel-{mode}-{name}"
    if exe.exists():
        return exe
    cpp = exe.with_suffix(f".{os.getpid()}.cpp")
    cpp.write_text(translation_unit)
    try:
        kernel = exe.with_suffix(f".{os.getpid()}.o")
        prelude = _prelude(mode, key)
        _run(
            [
                _compiler(),
                *_COMMON,
                *kernel_flags,
                f"-I{prelude}",
                *include_flags(),
                "-c",
                str(cpp),
                "-o",
                str(kernel),
            ],
            "the kernel",
        )
        objects = [
            _object(NATIVE / "driver.cpp", runtime_flags, key),
            _object(NATIVE / _RUNTIME[mode], runtime_flags, key),
        ]
        partial = exe.with_suffix(f".{os.getpid()}.exe")
        _run(
            [_compiler(), *link_flags, str(kernel), *map(str, objects), "-pthread", "-o", str(partial)],
            "the link",
        )
        os.replace(partial, exe)
    finally:
        cpp.unlink(missing_ok=True)
        exe.with_suffix(f".{os.getpid()}.o").unlink(missing_ok=True)
    return exe


def query(exe: Path) -> dict:
    """What the compiled kernel says of itself: its static __shared__ bytes and sizeof of each parameter."""
    done = subprocess.run([str(exe), "--query"], capture_output=True, text=True, timeout=60)
    shared = re.search(r"static_shared (\d+)", done.stdout)
    sizes = re.search(r"param_sizes ?([\d ]*)", done.stdout)
    if done.returncode != 0 or not shared or not sizes:
        raise ToolchainError(f"{exe.name} --query failed: {done.stderr.strip()}")
    return {"static_shared": int(shared.group(1)), "param_sizes": [int(v) for v in sizes.group(1).split()]}
