"""Launch one `extern "C" __global__` function of a CUDA translation unit on the CPU, as the driver API would.

    with DeviceMemory() as memory:
        x = memory.put(np.arange(10, dtype=np.float32))
        launch(source, "kernel", grid=1, block=128, args=[x, np.int64(10)], memory=memory)

Device memory is files mapped by the launched executable (sparse: an 8 GiB array costs only the pages a
launch touches), each between PROT_NONE guards; the NumPy arrays `memory` hands out are those same files,
so what the kernel wrote is there when launch() returns. Arguments are packed from the kernel's own
parameter list as CuPy packs them (cupy/_core/_carray.pyx CArray.init: data pointer, size, shape[ndim],
strides[ndim] in bytes, as Py_ssize_t; CIndexer.init: size, shape[ndim], then room for index[ndim]; a
scalar by value, cupy/_core/_scalar.pyx CScalar), each in its own aligned storage like cuLaunchKernel's
kernelParams; the compiled kernel's sizeof of each parameter type is checked against that packing.
A fault of the kernel (invalid address, data race, undefined behaviour, divergent barrier, hang) raises
KernelFault naming it.
"""

from __future__ import annotations

import mmap
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gpu_proof import limits, toolchain

PAGE = mmap.PAGESIZE
# guard on each side of a buffer: a 32-bit index wrapped negative lands in it (2^31 elements of 8 bytes back)
GUARD = {"weak": 32 << 30, "asan": 32 << 30, "tsan": 1 << 16}


class KernelFault(RuntimeError):
    """The launched kernel did what a GPU reports or leaves undefined; kind names it."""

    def __init__(self, kind: str, report: str):
        super().__init__(f"{kind}: {report}")
        self.kind, self.report = kind, report


@dataclass
class _Buffer:
    name: str
    path: Path
    nbytes: int
    pad: int
    file: np.memmap
    address: int


class DeviceMemory:
    """The allocations of one or more launches; a context manager that deletes its files."""

    def __init__(self):
        self._dir = Path(tempfile.mkdtemp(prefix="gpunn-gpu-proof-mem-"))
        self.buffers: list[_Buffer] = []

    def alloc(self, shape, dtype, name: str | None = None) -> np.ndarray:
        """A zero-filled device array (a sparse file: nothing is touched until written)."""
        dtype = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        pad = (-nbytes) % PAGE or (PAGE if nbytes == 0 else 0)  # data ends on a page boundary, on the guard
        name = name or f"buffer{len(self.buffers)}"
        path = self._dir / f"{len(self.buffers)}-{name}"
        file = np.memmap(path, dtype=np.uint8, mode="w+", shape=(pad + nbytes,))
        file._mmap.madvise(mmap.MADV_RANDOM)  # no readahead into the sparse rest
        data = file[pad:].view(dtype).reshape(shape)
        self.buffers.append(_Buffer(name, path, nbytes, pad, file, data.__array_interface__["data"][0]))
        return data

    def put(self, host: np.ndarray, name: str | None = None) -> np.ndarray:
        host = np.asarray(host)
        device = self.alloc(host.shape, host.dtype, name)
        device[...] = host
        return device

    def locate(self, array: np.ndarray) -> tuple[int, int]:
        """(buffer index, byte offset) of a view of device memory."""
        address = array.__array_interface__["data"][0]
        for k, b in enumerate(self.buffers):
            if b.address <= address <= b.address + b.nbytes:
                return k, address - b.address
        raise TypeError("an array argument must live in this launch's DeviceMemory (use memory.put / alloc)")

    def close(self) -> None:
        for b in self.buffers:
            b.file._mmap.close()
        self.buffers.clear()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@dataclass(frozen=True)
class Indexer:
    """The CIndexer CuPy appends to an ElementwiseKernel's arguments (cupy/_core/_carray.pyx Indexer)."""

    shape: tuple


# ---- the kernel's parameter list -------------------------------------------------------------------------
_C_DTYPES = {
    "bool": "bool", "signed char": "int8", "char": "int8", "unsigned char": "uint8", "short": "int16",
    "unsigned short": "uint16", "int": "int32", "unsigned int": "uint32", "unsigned": "uint32",
    "long long": "int64", "long": "int64", "ptrdiff_t": "int64", "unsigned long long": "uint64",
    "size_t": "uint64", "float": "float32", "double": "float64",
}  # fmt: skip
_CARRAY = re.compile(r"^CArray<\s*(.+?)\s*,\s*(\d+)\s*,\s*(\w+)\s*,\s*(\w+)\s*>$")
_CINDEXER = re.compile(r"^CIndexer<\s*(\d+)\s*,\s*(\w+)\s*>$")


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for k, ch in enumerate(text):
        depth += ch in "<([" and 1 or (ch in ">)]" and -1 or 0)
        if ch == "," and depth == 0:
            parts.append(text[start:k])
            start = k + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def kernel_params(source: str, name: str) -> list[str]:
    """The C type of each parameter of `extern "C" __global__ void name(...)` in source."""
    found = re.search(r'extern\s+"C"\s+__global__\s+void\s+' + re.escape(name) + r"\s*\(", source)
    if not found:
        raise ValueError(f'no extern "C" __global__ function {name} in the source')
    depth, k = 1, found.end()
    while depth:
        depth += {"(": 1, ")": -1}.get(source[k], 0)
        k += 1
    params = _split_top_level(source[found.end() : k - 1])
    return [re.sub(r"\s*\b\w+$", "", p).strip() for p in params]


def _typedefs(source: str) -> dict[str, str]:
    return {m.group(2): m.group(1).strip() for m in re.finditer(r"typedef\s+([\w\s]+?)\s+(\w+)\s*;", source)}


def _scalar_dtype(ctype: str, typedefs: dict) -> np.dtype:
    seen = ctype
    while seen in typedefs:
        seen = typedefs[seen]
    if seen not in _C_DTYPES:
        raise TypeError(f"no NumPy dtype for the C type {ctype!r}")
    return np.dtype(_C_DTYPES[seen])


def _pack(ctype: str, value, typedefs, memory: DeviceMemory, index: int, relocs: list) -> bytes:
    """The bytes CuPy passes for one argument (relocs collects where a device pointer goes)."""
    bare = re.sub(r"^const\s+", "", ctype)
    carray, cindexer = _CARRAY.match(bare), _CINDEXER.match(bare)
    if carray:
        ndim = int(carray.group(2))
        if not isinstance(value, np.ndarray) or value.ndim != ndim:
            raise TypeError(f"parameter {index} ({ctype}) needs a {ndim}-d device array")
        if _scalar_dtype(carray.group(1), typedefs) != value.dtype:
            raise TypeError(f"parameter {index} ({ctype}) got a {value.dtype} array")
        buffer, offset = memory.locate(value)
        relocs.append((index, 0, buffer, offset))
        fields = [0, value.size, *value.shape, *value.strides]
        return np.array(fields, dtype=np.int64).tobytes()
    if cindexer:
        if not isinstance(value, Indexer) or len(value.shape) != int(cindexer.group(1)):
            raise TypeError(f"parameter {index} ({ctype}) needs an Indexer of ndim {cindexer.group(1)}")
        size = int(np.prod(value.shape, dtype=object))
        return np.array([size, *value.shape, *([0] * len(value.shape))], dtype=np.int64).tobytes()
    if bare.endswith(
        "*"
    ):  # a RawKernel's pointer: the first field of the CArray CuPy passes (function.pyx _pointer)
        if not isinstance(value, np.ndarray):
            raise TypeError(f"parameter {index} ({ctype}) needs a device array")
        buffer, offset = memory.locate(value)
        relocs.append((index, 0, buffer, offset))
        return bytes(8)
    dtype = _scalar_dtype(bare, typedefs)
    if isinstance(value, (np.ndarray, Indexer)):
        raise TypeError(f"parameter {index} ({ctype}) is a scalar")
    return np.array(value, dtype=dtype).tobytes()  # CScalar.apply_dtype


# ---- the translation unit g++ compiles -------------------------------------------------------------------
_SHARED = re.compile(r"(extern\s+)?__shared__\s+([\w\s:<>,*]+?)\s+(\w+)\s*((?:\[[^\]]*\])*)\s*;")


def host_translation_unit(source: str, name: str) -> str:
    """source behind native/shim.h (and CuPy's headers), its __shared__ declarations re-pointed per block, and gp_invoke."""
    end = ["0UL"]  # the static layout so far, as a C expression: declarations in order, each aligned

    def repoint(m: re.Match) -> str:
        extern, ctype, var, dims = m.group(1), m.group(2).strip(), m.group(3), m.group(4)
        if extern:
            return f"\n#define {var} (({ctype}*)gp_dynamic_shared())\n"
        offset = f"(({end[0]} + alignof({ctype}) - 1) / alignof({ctype}) * alignof({ctype}))"
        end[0] = f"({offset} + sizeof({ctype}{dims}))"
        pointer = f"{ctype}(*){dims}" if dims else f"{ctype}*"
        return f"\n#define {var} (*({pointer})gp_static_shared({offset}))\n"

    body = _SHARED.sub(repoint, source)
    params = kernel_params(body, name)
    call = ", ".join(f"*({p}*)args[{k}]" for k, p in enumerate(params))
    sizes = ", ".join(f"sizeof({p})" for p in params) or "0"
    return (
        '#include "gp_prelude.h"\n'  # native/shim.h and CuPy's headers, precompiled (toolchain.py)
        f"{body}\n"
        f'extern "C" void gp_invoke(void** args) {{ {name}({call}); }}\n'
        f'extern "C" const unsigned long gp_param_sizes[] = {{{sizes}}};\n'
        f'extern "C" const unsigned long gp_param_count = {len(params)};\n'
        f'extern "C" const unsigned long gp_static_shared_bytes = {end[0]};\n'
    )


def _fault(stdout: str, stderr: str, rc: int) -> KernelFault | None:
    text = stderr + stdout
    found = re.search(r"GP-ERROR ([\w-]+): (.*)", text)
    if found:
        return KernelFault(found.group(1), found.group(2))
    if "ThreadSanitizer: data race" in text:
        return KernelFault("data-race", _excerpt(text, "WARNING: ThreadSanitizer"))
    if "ThreadSanitizer:" in text:
        return KernelFault("thread-sanitizer", _excerpt(text, "ThreadSanitizer"))
    if "runtime error:" in text:
        return KernelFault("undefined-behavior", _excerpt(text, "runtime error:", before=True))
    if "ERROR: AddressSanitizer" in text:
        return KernelFault("invalid-address", _excerpt(text, "ERROR: AddressSanitizer"))
    if rc != 0 or "GP-OK" not in stdout:
        return KernelFault("crash", f"exit status {rc}: {text.strip()[-2000:]}")
    return None


def _excerpt(text: str, marker: str, before: bool = False) -> str:
    start = text.index(marker)
    if before:
        start = text.rfind("\n", 0, start) + 1
    return text[start : start + 1500].strip()


_SANITIZER_ENV = {
    "TSAN_OPTIONS": "halt_on_error=1 exitcode=66 report_signal_unsafe=0",
    "ASAN_OPTIONS": "detect_leaks=0 handle_segv=0 allow_user_segv_handler=1 abort_on_error=0",
    "UBSAN_OPTIONS": "print_stacktrace=1 halt_on_error=1",
}


def launch(
    source: str,
    name: str,
    grid,
    block,
    args: list,
    *,
    memory: DeviceMemory,
    mode: str = "weak",
    shared_mem: int = 0,
    opt_in_shared: int = 0,
    seed: int = 0,
    blocks: list[int] | None = None,
    resident: int | None = None,
    weak: tuple[float, float, float, float] = (0.9, 0.1, 0.05, 0.5),
    timeout: float = 120,
) -> None:
    """Run kernel `name` of `source` over grid x block, the hardware's launch limits first.

    blocks: the linear ids of the blocks to run (default all; the rest of the grid is skipped, so a launch
    past 2^31 elements can run its last threads only); resident: blocks running at once; weak: (p_stale,
    p_switch, p_drain, p_delay) of the weak memory model (mode "weak", native/runtime_fibers.cpp); seed: the schedule, reproducible."""
    grid, block = limits.dims(grid), limits.dims(block)
    unit = host_translation_unit(source, name)
    exe = toolchain.build(unit, mode)
    facts = toolchain.query(exe)
    limits.check_launch(grid, block, facts["static_shared"], shared_mem, opt_in_shared)
    params = kernel_params(source, name)
    if len(args) != len(params):
        raise TypeError(f"{name} takes {len(params)} arguments, {len(args)} given")
    typedefs, relocs, lines = _typedefs(source), [], []
    lines += [
        f"grid {' '.join(map(str, grid))}",
        f"block {' '.join(map(str, block))}",
        f"dynamic_shared {shared_mem}",
    ]
    lines += [
        f"seed {seed}",
        f"resident {resident or (4 if mode == 'weak' else 2)}",
        f"weak {' '.join(map(str, weak))}",
    ]
    lines.append(f"guard {GUARD[mode]}")
    for b in memory.buffers:
        b.file.flush()
        heap = int(mode == "asan" and b.nbytes < (1 << 28))  # ASan's redzones around ordinary sizes
        lines.append(f"buffer {b.name} {b.path} {b.nbytes} {heap} {b.pad}")
    for k, (ctype, value) in enumerate(zip(params, args, strict=True)):
        blob = _pack(ctype, value, typedefs, memory, k, relocs)
        if len(blob) != facts["param_sizes"][k]:  # CuPy's packing and the compiled type must agree
            raise TypeError(
                f"parameter {k} ({ctype}): {len(blob)} bytes packed, sizeof is {facts['param_sizes'][k]}"
            )
        lines.append(f"arg {len(blob)} {blob.hex() or '00'}")
    lines += [f"reloc {a} {off} {b} {boff}" for a, off, b, boff in relocs]
    if blocks is not None:
        lines.append(f"blocks {len(blocks)} {' '.join(map(str, blocks))}")
    launch_file = memory._dir / "launch.txt"
    launch_file.write_text("\n".join(lines) + "\n")
    try:
        done = subprocess.run(
            [str(exe), str(launch_file)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **_SANITIZER_ENV},
        )
    except subprocess.TimeoutExpired:
        raise KernelFault("hang", f"the launch did not finish within {timeout} s") from None
    fault = _fault(done.stdout, done.stderr, done.returncode)
    if fault:
        raise fault
