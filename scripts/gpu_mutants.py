#!/usr/bin/env python
"""GPU mutants: realistic GPU bugs planted one at a time in a temporary copy of the repository, each judged
by the CPU proof of scripts/check_gpu.py; the score goes to benchmarks/results/gpu-mutants-DATE-HOST.json.

    python scripts/gpu_mutants.py [--list] [--jobs N] [--operator NAME ...] [--out PATH] [ID-GLOB ...]
    python scripts/gpu_mutants.py --rescore JSON     # after adding an equivalence: nothing runs again

Each operator finds its sites by pattern in gpunn's GPU code (the CUDA strings of kernels.py, cupy_backend.py,
collectives.py, the training step) and makes one mutant per site. A mutant runs only the proof's parts that
read its file (check_gpu.PARTS `reads`), cheapest first, and stops at the first one that goes red: killed by
that part. A mutant no part kills survives, and the JSON says what of the GPU today's proof cannot see there;
those in EQUIVALENT change nothing a GPU could show, each with its reason, and are not run. The worktree is
never edited. Exit 0 when every mutant is killed or equivalent, 1 when any survives, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import importlib.util
import json
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench import write_results  # noqa: E402  (one writer for every results file)
from check_gpu import PARTS, present, run_part  # noqa: E402

KERNELS_PY = "gpunn/backend/kernels.py"
CUPY_BACKEND_PY = "gpunn/backend/cupy_backend.py"
COLLECTIVES_PY = "gpunn/backend/collectives.py"
# the training step's device scalars: (file, function) -> the names that hold 0-d device arrays there
STEP_SCALARS = {
    ("gpunn/nn/step.py", "backward"): {"loss_value", "correct"},  # train_step returns what backward does
    ("gpunn/nn/losses.py", "SoftmaxCrossEntropyTotals.with_correct"): {"loss", "correct"},
}
OVERSIZED_BLOCK = 2048  # above the 1024 threads a block may have on every CUDA GPU
# what CuPy allocates (or copies to the device) when called as cp.NAME / self.xp.NAME
DEVICE_CREATORS = {
    "empty",
    "empty_like",
    "zeros",
    "zeros_like",
    "ones",
    "full",
    "arange",
    "asarray",
    "concatenate",
}


@dataclass(frozen=True)
class Operator:
    name: str
    plants: str  # the bug, in a few words
    blind_spot: str  # why today's CPU proof cannot see it, when a mutant of it survives


OPERATORS = {
    op.name: op
    for op in (
        Operator(
            "drop_fence",
            "a __threadfence() removed",
            "the CUDA executor's weak memory (stores held in a per-thread buffer until a fence) never made "
            "another thread read the unfenced store late in the launches tests/test_gpu_exec.py makes",
        ),
        Operator(
            "deatomise",
            "atomicAdd(&x, v) as a plain read-modify-write",
            "neither the CUDA executor's interleaved fibers nor its ThreadSanitizer build saw two threads "
            "race on the value in the launches tests/test_gpu_exec.py makes",
        ),
        Operator(
            "index_32bit",
            "a 64-bit index variable or cast (long long, ptrdiff_t) made int",
            "no launch of tests/test_gpu_exec.py (tests/gpu_proof/sizes.py) drives this index past 2^31 "
            "under UBSan's signed-overflow check",
        ),
        Operator(
            "skip_tail",
            "a loop bound `< n` made `< n - 1`, or a row count passed as rows - 1",
            "no test reaches the element the loop now skips",
        ),
        Operator(
            "host_array",
            "an array made with NumPy (host memory) where CuPy made it on the device",
            "the array never reaches a device operation the proof runs",
        ),
        Operator(
            "hidden_sync",
            "float() of a device scalar in the training step (a device-to-host read: a synchronisation)",
            "the proof does not count the step's reads here",
        ),
        Operator(
            "wrong_device",
            "a `with <device>:` or `device.use()` dropped, so work goes to whichever GPU is current",
            "no test runs this path on a second device while another is current",
        ),
        Operator(
            "drop_sync",
            "the synchronize() before a collective dropped",
            "no test has the MPI call read the device buffer while the kernels queued before it are still "
            "pending on the stand-in's asynchronous streams",
        ),
        Operator(
            "launch_size",
            "a kernel launched with size=n - 1",
            "no test reads the element the launch now leaves out",
        ),
        Operator(
            "block_size",
            f"a kernel launched with block_size={OVERSIZED_BLOCK} (the hardware allows 1024 threads a block)",
            "CuPy launches min(block_size, size) threads a block (cupy/cuda/function.pyx "
            "Function.linear_launch): no test launches this kernel over more than 1024 elements, where the "
            "stand-in refuses the block as cuLaunchKernel does",
        ),
    )
}

_ONE_THREAD_DEVICE = (
    "every public CupyBackend method first makes self._cuda current in the calling thread (_on_own_device at "
    "the end of cupy_backend.py), so inside it `with self._cuda:` switches to the device that is already "
    "current and restores the same one"
)
_NEP18 = (
    "NumPy hands a call whose array argument is a cupy.ndarray to CuPy (NEP 18: cupy/_core/core.pyx "
    "ndarray.__array_function__), so np.NAME(device_array) allocates on the device just as cp.NAME does"
)
_BLOCK_OF_ONE = (
    "a launch of one element: CuPy launches min(block_size, size) threads a block (cupy/cuda/function.pyx "
    "Function.linear_launch, blockx = min(block_max_size, size)), here one thread, whatever block_size says"
)
_BELOW_2_28 = (
    "the value is below a layer's width (NAME): every layer has at least one input and one output, so each "
    "of its dimensions is at most its parameter count, and Sequential refuses a model over "
    "gpunn.nn.model.MAX_PARAMETERS = 2^28 before allocating; an int holds it, and every product it enters "
    "(the row offset) has a 64-bit operand"
)
_ROWS_PAST_2_31 = (
    "only a batch of more than 2^31 rows (a narrow layer on a large GPU) passes 2^31 here, and there one "
    "thread loops over every row: 2^31 iterations a thread, more than the CPU executor runs in a test"
)
# What the proof cannot see at a site, where the operator's blind spot says less than the site's own reason.
UNSEEN: dict[str, str] = {
    f"index_32bit:{KERNELS_PY}:{site}": _ROWS_PAST_2_31
    for site in (
        "gpunn_relu_backward_bias:2",
        "gpunn_batch_totals:1",
        "gpunn_softmax_xent_totals:1",
        "gpunn_softmax_xent_totals:2",
        "gpunn_softmax_xent_totals:4",
    )
}


def why_unseen(mutant_id: str) -> str:
    return UNSEEN.get(mutant_id, OPERATORS[mutant_id.split(":")[0]].blind_spot)


# Mutants that change nothing a GPU could show, with the reason (ids are stable while the owner's source is).
EQUIVALENT: dict[str, str] = {
    **{
        f"wrong_device:{CUPY_BACKEND_PY}:CupyBackend.{method}:1": _ONE_THREAD_DEVICE
        for method in (
            "_import_device_dlpack",  # reached only through the public from_dlpack
            "sparse_from_host",
            "sparse_linear",
            "sparse_weight_grad",
            "relu_linear_backward",
            "gather_images",
            "gather_batch",
            "softmax_cross_entropy_counted",
            "softmax_cross_entropy_totals",
        )
    },
    **{
        f"host_array:{CUPY_BACKEND_PY}:CupyBackend.{site}": _NEP18.replace("NAME", name)
        for site, name in (
            ("concat:1", "concatenate"),
            ("relu_linear_backward:1", "empty_like"),
            ("softmax_cross_entropy_counted:1", "empty_like"),
            ("softmax_cross_entropy_totals:1", "empty_like"),
        )
    },
    **{
        f"index_32bit:{KERNELS_PY}:{site}": _BELOW_2_28.replace("NAME", what)
        for site, what in (
            ("_GATHER_PIXEL:2", "the column c of a pixel, below the input width"),
            ("_SOFTMAX_XENT_ROW:2", "the class k, below the output layer's width"),
            ("_SOFTMAX_XENT_ROW:3", "the class k, below the output layer's width"),
            ("_SOFTMAX_XENT_ROW:4", "the class k, below the output layer's width"),
            ("gpunn_relu_backward_bias:1", "the loop size, one thread per column of the layer"),
            ("gpunn_softmax_xent_totals:3", "the class k, below the output layer's width"),
        )
    },
    # batch_totals is launched with size=1; add_to_totals writes two 0-d accumulators (a loop of size 1)
    f"block_size:{CUPY_BACKEND_PY}:CupyBackend.softmax_cross_entropy_counted:2": _BLOCK_OF_ONE,
    f"block_size:{CUPY_BACKEND_PY}:CupyBackend.add_to_totals:1": _BLOCK_OF_ONE,
}


@dataclass(frozen=True)
class Mutant:
    operator: str
    path: str  # relative to the repository root
    owner: str  # the kernel or template, or the function, holding the site
    n: int  # which site of this operator in that owner (1-based)
    start: int
    end: int
    original: str
    replacement: str

    @property
    def id(self) -> str:
        return f"{self.operator}:{self.path}:{self.owner}:{self.n}"

    def apply(self, text: str) -> str:
        if text[self.start : self.end] != self.original:
            raise RuntimeError(f"{self.id}: the source changed since its sites were found")
        return text[: self.start] + self.replacement + text[self.end :]

    def diff(self, text: str) -> str:
        """The changed lines, before (-) and after (+)."""
        first = text.rfind("\n", 0, self.start) + 1
        last = text.find("\n", self.end)
        last = len(text) if last < 0 else last
        after = self.apply(text)[first : last + len(self.replacement) - len(self.original)]
        return "\n".join(
            [f"- {line.strip()}" for line in text[first:last].splitlines()]
            + [f"+ {line.strip()}" for line in after.splitlines()]
        )


# ---- finding sites ------------------------------------------------------------------------------------
class _Source:
    """A Python file's text, its AST, and character offsets of AST nodes (whose columns are UTF-8 bytes)."""

    def __init__(self, root: Path, path: str):
        self.path = path
        self.text = (root / path).read_text()
        self.tree = ast.parse(self.text)
        self._line_starts = [0]
        for line in self.text.splitlines(keepends=True):
            self._line_starts.append(self._line_starts[-1] + len(line))
        self._lines = self.text.splitlines(keepends=True)

    def offset(self, lineno: int, col: int) -> int:
        line = self._lines[lineno - 1]
        return self._line_starts[lineno - 1] + len(line.encode()[:col].decode())

    def span(self, node) -> tuple[int, int]:
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno, node.end_col_offset)

    def functions(self):
        """(qualified name, function node) of every function, methods as Class.method."""

        def walk(body, prefix):
            for node in body:
                if isinstance(node, ast.ClassDef):
                    yield from walk(node.body, f"{prefix}{node.name}.")
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield f"{prefix}{node.name}", node
                    yield from walk(node.body, f"{prefix}{node.name}.")

        yield from walk(self.tree.body, "")


def own_nodes(function):
    """The nodes of `function` in source order, less those of the functions and classes defined inside it
    (each its own owner), so a site is numbered once, where it is written."""
    todo, found = list(ast.iter_child_nodes(function)), []
    while todo:
        node = todo.pop()
        found.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return sorted(
        (n for n in found if hasattr(n, "lineno")),
        key=lambda n: (n.lineno, n.col_offset, -n.end_lineno, -n.end_col_offset),
    )


class _Sites:
    """Collects the mutants of one operator, numbering the sites of each owner in source order."""

    def __init__(self, operator: str, source: _Source):
        self.operator, self.source, self.found = operator, source, []

    def add(self, owner: str, start: int, end: int, replacement: str) -> None:
        n = 1 + sum(m.owner == owner for m in self.found)
        original = self.source.text[start:end]
        self.found.append(
            Mutant(self.operator, self.source.path, owner, n, start, end, original, replacement)
        )


def kernel_strings(source: _Source):
    """(owner, start, end) of every string literal that is CUDA code in kernels.py: the operation of each
    ElementwiseSource in _SOURCES (owner: the kernel's name) and the module-level templates it uses."""
    assigns = {
        node.targets[0].id: node
        for node in source.tree.body
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
    }
    registry = assigns["_SOURCES"].value
    used = {node.id for node in ast.walk(registry) if isinstance(node, ast.Name)}
    for name, node in assigns.items():
        if name in used and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            yield (name, *source.span(node.value))
    for call in registry.elts:
        operation = (
            call.args[3]
            if len(call.args) > 3
            else next(k.value for k in call.keywords if k.arg == "operation")
        )
        for node in ast.walk(operation):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                yield (call.args[0].value, *source.span(node))


def _regex_sites(operator: str, source: _Source, pattern: str, replace) -> list[Mutant]:
    sites = _Sites(operator, source)
    for owner, start, end in kernel_strings(source):
        for match in re.compile(pattern).finditer(source.text, start, end):
            sites.add(owner, *replace(match))
    return sites.found


def drop_fence(root: Path) -> list[Mutant]:
    source = _Source(root, KERNELS_PY)
    return _regex_sites("drop_fence", source, r"__threadfence\(\);", lambda m: (m.start(), m.end(), ""))


def deatomise(root: Path) -> list[Mutant]:
    """atomicAdd(&x, v) -> ((x += (v)) - (v)): the same old value returned, but read and written in two steps."""
    source = _Source(root, KERNELS_PY)
    return _regex_sites(
        "deatomise",
        source,
        r"atomicAdd\(&([^,]+),\s*([^)]+)\)",
        lambda m: (m.start(), m.end(), f"(({m[1]} += ({m[2]})) - ({m[2]}))"),
    )


_WIDE = r"(?:long long|ptrdiff_t)"
_IDENT = re.compile(r"[A-Za-z_]\w*")


def _bracket_spans(code: str) -> list[tuple[int, int]]:
    """(open, close) of every [...] in `code`, nested ones included."""
    spans, stack = [], []
    for k, char in enumerate(code):
        if char == "[":
            stack.append(k)
        elif char == "]" and stack:
            spans.append((stack.pop(), k))
    return spans


def index_sites(code: str) -> list[tuple[int, int]]:
    """(start, end) in `code` of each 64-bit type word that carries index math: the declared type of a variable
    used in a subscript (or in the initialiser or loop bound of one that is), and casts inside a subscript."""
    brackets = _bracket_spans(code)
    index = {name for a, b in brackets for name in _IDENT.findall(code[a + 1 : b])}
    declarations = [
        (m.start(1), m.end(1), m[2], m[3])
        for m in re.finditer(rf"(?:const\s+)?({_WIDE})\s+(\w+)\s*=\s*([^;]*);", code)
    ]
    loops = [
        (m[1], m[2]) for m in re.finditer(rf"for\s*\(\s*{_WIDE}\s+(\w+)\s*=[^;]*;\s*\w+\s*<\s*(\w+)", code)
    ]
    while True:
        grown = set(index)
        for *_, name, initialiser in declarations:
            if name in grown:
                grown |= set(_IDENT.findall(initialiser))
        grown |= {bound for variable, bound in loops if variable in grown}
        if grown == index:
            break
        index = grown
    sites = [(start, end) for start, end, name, _ in declarations if name in index]
    sites += [
        (m.start(1), m.end(1))
        for m in re.finditer(rf"\(({_WIDE})\)", code)
        if any(a < m.start() < b for a, b in brackets)
    ]
    return sorted(sites)


def index_32bit(root: Path) -> list[Mutant]:
    source = _Source(root, KERNELS_PY)
    sites = _Sites("index_32bit", source)
    for owner, start, end in kernel_strings(source):
        for a, b in index_sites(source.text[start:end]):
            sites.add(owner, start + a, start + b, "int")
    return sites.found


def _kernel_calls(source: _Source):
    """(owner, call, kernel short name) of each self._kernels["name"](...) launch."""
    for owner, function in source.functions():
        for node in own_nodes(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Subscript)
                and ast.unparse(node.func.value) == "self._kernels"
            ):
                yield owner, node, node.func.slice.value


def _kernel_registry(root: Path):
    """gpunn/backend/kernels.py of `root` as a module (it imports nothing of gpunn)."""
    spec = importlib.util.spec_from_file_location("_gpunn_kernels_of_the_copy", root / KERNELS_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses looks the module up while building the classes
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


def skip_tail(root: Path) -> list[Mutant]:
    """Kernel loops `k < n` -> `k < n - 1`, and host row counts passed to a kernel's `rows` -> rows - 1."""
    registry = _kernel_registry(root)
    kernels = _Source(root, KERNELS_PY)
    found = _regex_sites(
        "skip_tail",
        kernels,
        r"for\s*\([^;]*;\s*\w+\s*<\s*(\w+)\s*;",
        lambda m: (m.start(1), m.end(1), f"{m[1]} - 1"),
    )
    source = _Source(root, CUPY_BACKEND_PY)
    sites = _Sites("skip_tail", source)
    for owner, call, name in _kernel_calls(source):
        kernel = registry.KERNELS[name]
        counts = host_scalars(kernel)
        for param, arg in zip(param_names(kernel), call.args, strict=False):
            if param == "rows" and param in counts:  # a count, not the index array
                start, end = source.span(arg)
                sites.add(owner, start, end, f"{source.text[start:end]} - 1")
    return found + sites.found


def param_names(kernel) -> list[str]:
    """The names of an ElementwiseSource's parameters in call order, in then out: the last word of each
    comma-separated `[raw] type name` of CuPy's parameter lists (cupy/_core/_kernel.pyx ParameterInfo)."""
    return [
        param.split()[-1]
        for params in (kernel.in_params, kernel.out_params)
        for param in params.split(",")
        if param.strip()
    ]


def host_scalars(kernel) -> set[str]:
    """The parameters gpunn passes a host scalar in every call of `kernel.calls` (a Call names a scalar by a
    string, an array by a (dtype, shape, ...) tuple): CuPy makes those kernel arguments by value."""
    passed = [
        dict(zip(param_names(kernel), call.args, strict=False)) for call in kernel.calls
    ]  # outputs may be left out
    return {
        name
        for name in param_names(kernel)
        if passed and all(isinstance(args.get(name), str) for args in passed)
    }


def host_array(root: Path) -> list[Mutant]:
    source = _Source(root, CUPY_BACKEND_PY)
    sites = _Sites("host_array", source)
    for owner, function in source.functions():
        for node in own_nodes(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in DEVICE_CREATORS
                and ast.unparse(node.func.value) in ("cp", "self.xp")
            ):
                sites.add(owner, *source.span(node.func.value), "np")
    return sites.found


def hidden_sync(root: Path) -> list[Mutant]:
    """A returned device scalar N -> (N, N is None or float(N))[0]: the same value, read back to the host."""
    found = []
    for (path, qualname), names in STEP_SCALARS.items():
        source = _Source(root, path)
        sites = _Sites("hidden_sync", source)
        function = dict(source.functions())[qualname]
        for node in own_nodes(function):
            if isinstance(node, ast.Return) and node.value is not None:
                for name in ast.walk(node.value):
                    if isinstance(name, ast.Name) and name.id in names:
                        sites.add(
                            qualname,
                            *source.span(name),
                            f"({name.id}, {name.id} is None or float({name.id}))[0]",
                        )
        found += sites.found
    return found


def wrong_device(root: Path) -> list[Mutant]:
    """`with <device>:` -> `if True:` (the body stays), `<device>.use()` -> `pass`."""
    found = []
    for path in (CUPY_BACKEND_PY, COLLECTIVES_PY):
        source = _Source(root, path)
        sites = _Sites("wrong_device", source)
        for owner, function in source.functions():
            for node in own_nodes(function):
                if isinstance(node, ast.With) and any(
                    re.fullmatch(
                        r"(self\.)?(_cuda|(backend\.)?device_context\(\))", ast.unparse(item.context_expr)
                    )
                    for item in node.items
                ):
                    start = source.offset(node.lineno, node.col_offset)
                    sites.add(owner, start, source.span(node.items[-1].context_expr)[1], "if True")
                elif _is_call_statement(node, "use"):
                    sites.add(owner, *source.span(node), "pass")
        found += sites.found
    return found


def _is_call_statement(node, method: str) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr == method
    )


def drop_sync(root: Path) -> list[Mutant]:
    source = _Source(root, COLLECTIVES_PY)
    sites = _Sites("drop_sync", source)
    for owner, function in source.functions():
        for node in own_nodes(function):
            if _is_call_statement(node, "synchronize"):
                sites.add(owner, *source.span(node), "pass")
    return sites.found


def launch_size(root: Path) -> list[Mutant]:
    source = _Source(root, CUPY_BACKEND_PY)
    sites = _Sites("launch_size", source)
    for owner, call, _ in _kernel_calls(source):
        for keyword in call.keywords:
            if keyword.arg == "size":
                start, end = source.span(keyword.value)
                sites.add(owner, start, end, f"{source.text[start:end]} - 1")
    return sites.found


def block_size(root: Path) -> list[Mutant]:
    source = _Source(root, CUPY_BACKEND_PY)
    sites = _Sites("block_size", source)
    for owner, call, _ in _kernel_calls(source):
        last = max(
            [*call.args, *(k.value for k in call.keywords)], key=lambda n: (n.end_lineno, n.end_col_offset)
        )
        end = source.span(last)[1]
        sites.add(owner, end, end, f", block_size={OVERSIZED_BLOCK}")
    return sites.found


FINDERS = {
    "drop_fence": drop_fence,
    "deatomise": deatomise,
    "index_32bit": index_32bit,
    "skip_tail": skip_tail,
    "host_array": host_array,
    "hidden_sync": hidden_sync,
    "wrong_device": wrong_device,
    "drop_sync": drop_sync,
    "launch_size": launch_size,
    "block_size": block_size,
}
assert FINDERS.keys() == OPERATORS.keys()


def find_mutants(root: Path = ROOT, operators=None) -> list[Mutant]:
    return [m for name in operators or FINDERS for m in FINDERS[name](root)]


# ---- judging ------------------------------------------------------------------------------------------
_NOT_COPIED = ("*.git", "__pycache__", "mutants", ".venv*", "runs", "*.egg-info", ".*_cache", ".hypothesis")


def copy_repository(root: Path, into: Path) -> Path:
    """The working tree without VCS data, caches and virtual environments: what the parts need."""
    base = into / "repo"
    shutil.copytree(root, base, ignore=shutil.ignore_patterns(*_NOT_COPIED), symlinks=True)
    return base


def parts_for(mutant: Mutant, parts, base: Path):
    """The parts that read the mutant's file and are present, cheapest first."""
    seen = [
        p for p in parts if present(p, base) and any(fnmatch.fnmatchcase(mutant.path, g) for g in p.reads)
    ]
    return sorted(seen, key=lambda p: p.cost_s)


def judge(mutant: Mutant, base: Path, parts) -> dict:
    """Plant the mutant in the copy at `base`, run the parts that can see it until one goes red, restore."""
    path = base / mutant.path
    original = path.read_text()
    path.write_text(mutant.apply(original))
    started, ran = time.perf_counter(), []
    try:
        for part in parts_for(mutant, parts, base):
            outcome = run_part(part, base, part.mutant_args, {"PYTHONDONTWRITEBYTECODE": "1"})
            ran.append(part.name)
            if outcome.status == "FAIL":
                return {
                    "status": "killed",
                    "killed_by": part.name,
                    "reason": outcome.reason,
                    "parts_run": ran,
                    "seconds": round(time.perf_counter() - started, 1),
                }
        return {"status": "survived", "parts_run": ran, "seconds": round(time.perf_counter() - started, 1)}
    finally:
        path.write_text(original)


def _say(line: str) -> None:
    print(line, flush=True)


def run_mutants(
    mutants, parts=PARTS, root: Path = ROOT, progress=_say, jobs: int = 1, partial=None, earlier=None
) -> dict:
    """Judge `mutants`, `jobs` at a time (each worker in its own copy); after each verdict the score so far
    goes to `partial` (a path) when given, marked complete: false. `earlier`, a score written before, gives
    the verdicts of the mutants it judged whose change is the same today: those are not run again."""
    texts = {m.path: (root / m.path).read_text() for m in mutants}
    # an equivalence is today's list's to decide (free); a kill or a survival stands while the change is the same
    kept = {
        mutant_id: verdict
        for mutant_id, verdict in verdicts_of(earlier or {}).items()
        if verdict["status"] == "killed" or (verdict["status"] == "survived" and mutant_id not in EQUIVALENT)
    }
    verdicts = {
        m.id: kept[m.id] for m in mutants if m.id in kept and kept[m.id]["diff"] == m.diff(texts[m.path])
    }
    started = time.perf_counter() - ((earlier or {}).get("seconds", 0) if verdicts else 0)
    lock = threading.Lock()
    # the cheapest to judge first (fewest and cheapest parts), so a run cut short has judged the most
    waiting = [m for m in mutants if m.id not in verdicts]
    todo = iter(sorted(waiting, key=lambda m: sum(p.cost_s for p in parts_for(m, parts, root))))

    def record(mutant: Mutant, verdict: dict, said: str) -> None:
        with lock:
            verdicts[mutant.id] = {"diff": mutant.diff(texts[mutant.path]), **verdict}
            seconds = f" ({verdict['seconds']:.0f} s)" if "seconds" in verdict else ""
            progress(f"[{len(verdicts)}/{len(mutants)}] {said:<19} {mutant.id}{seconds}")
            if partial is not None:
                done = [m for m in mutants if m.id in verdicts]
                score = _score(done, verdicts, parts, root, started, complete=False)
                Path(partial).write_text(json.dumps(score, indent=2) + "\n")

    def worker(base: Path) -> None:
        while True:
            with lock:
                mutant = next(todo, None)
            if mutant is None:
                return
            if mutant.id in EQUIVALENT:
                record(mutant, {"status": "equivalent", "reason": EQUIVALENT[mutant.id]}, "equivalent")
                continue
            verdict = judge(mutant, base, parts)
            if verdict["status"] == "survived":
                verdict["why_unseen"] = why_unseen(mutant.id)
            record(
                mutant,
                verdict,
                "SURVIVED" if verdict["status"] == "survived" else f"killed by {verdict['killed_by']}",
            )

    with tempfile.TemporaryDirectory(prefix="gpunn-gpu-mutants-") as scratch:
        bases = [copy_repository(root, Path(scratch) / f"worker-{k}") for k in range(max(jobs, 1))]
        threads = [threading.Thread(target=worker, args=(base,)) for base in bases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()  # each part it runs is bounded by the part's timeout
    return _score(mutants, verdicts, parts, root, started, complete=True)


def verdicts_of(score: dict) -> dict[str, dict]:
    """id -> verdict (with its status) of every mutant in a written score."""
    groups = {"killed": "killed_mutants", "survived": "surviving_mutants", "equivalent": "equivalent_mutants"}
    return {
        mutant_id: {**entry, "status": status}
        for status, key in groups.items()
        for mutant_id, entry in score.get(key, {}).items()
    }


def _score(mutants, verdicts: dict, parts, root: Path, started: float, complete: bool) -> dict:
    """The JSON of the verdicts, mutants in source order."""
    groups = {"killed": {}, "survived": {}, "equivalent": {}}
    for mutant in mutants:
        verdict = dict(verdicts[mutant.id])
        groups[verdict.pop("status")][mutant.id] = verdict
    seconds = [v["seconds"] for key in ("killed", "survived") for v in groups[key].values()]
    by_operator = {
        name: {verdict: sum(m.split(":")[0] == name for m in groups[verdict]) for verdict in groups}
        for name in dict.fromkeys(m.operator for m in mutants)
    }
    return {
        "command": "python scripts/gpu_mutants.py",
        "host": socket.gethostname(),
        "date": date.today().isoformat(),
        "complete": complete,
        "proof": {p.name: "present" if present(p, root) else f"absent ({p.needs})" for p in parts},
        "operators": {name: OPERATORS[name].plants for name in by_operator},
        "mutants": len(mutants),
        **{verdict: len(group) for verdict, group in groups.items()},
        "by_operator": by_operator,
        "seconds": round(time.perf_counter() - started),
        "seconds_per_judged_mutant": {
            "mean": round(sum(seconds) / max(len(seconds), 1), 1),
            "max": max(seconds, default=0),
        },
        "surviving_mutants": groups["survived"],
        "killed_mutants": groups["killed"],
        "equivalent_mutants": groups["equivalent"],
    }


def run_and_write(
    parts=PARTS, root: Path = ROOT, operators=None, patterns=(), out=None, progress=_say, jobs=1, resume=False
):
    mutants = [m for m in find_mutants(root, operators) if _chosen(m.id, patterns)]
    partial = Path(out) if out else None
    earlier = json.loads(partial.read_text()) if resume and partial and partial.is_file() else None
    result = run_mutants(mutants, parts, root, progress, jobs, partial, earlier)
    return result, write_results(result, out, prefix="gpu-mutants-")


def rescore(path: Path) -> dict:
    """A written score with today's EQUIVALENT applied: a survivor listed since the run moves to the
    equivalent mutants with its reason (nothing is run again), the others get today's blind-spot words; the
    counts follow."""
    score = json.loads(Path(path).read_text())
    for mutant_id, entry in score["surviving_mutants"].items():  # today's words for what the proof misses
        entry["why_unseen"] = why_unseen(mutant_id)
    for mutant_id in [m for m in score["surviving_mutants"] if m in EQUIVALENT]:
        entry = score["surviving_mutants"].pop(mutant_id)
        score["equivalent_mutants"][mutant_id] = {"diff": entry["diff"], "reason": EQUIVALENT[mutant_id]}
        score["by_operator"][mutant_id.split(":")[0]]["survived"] -= 1
        score["by_operator"][mutant_id.split(":")[0]]["equivalent"] += 1
    score["survived"], score["equivalent"] = len(score["surviving_mutants"]), len(score["equivalent_mutants"])
    return score


def _chosen(mutant_id: str, patterns) -> bool:
    return not patterns or any(fnmatch.fnmatchcase(mutant_id, p) for p in patterns)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="print each mutant's id and change; run nothing")
    parser.add_argument("--operator", action="append", choices=list(OPERATORS), help="only this operator")
    parser.add_argument(
        "--out", help="default benchmarks/results/gpu-mutants-DATE-HOST.json (given: also the score so far)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="mutants judged at once, each in its own copy")
    parser.add_argument("patterns", nargs="*", help="only mutants whose id matches one of these globs")
    parser.add_argument(
        "--resume", action="store_true", help="keep the verdicts already in --out (an interrupted run)"
    )
    parser.add_argument("--rescore", metavar="JSON", help="apply today's equivalences to a written score")
    args = parser.parse_args(argv)
    if args.rescore:
        if not Path(args.rescore).is_file():
            print(f"gpu_mutants.py: error: no score at {args.rescore}", file=sys.stderr)
            return 2
        score = rescore(args.rescore)
        Path(args.rescore).write_text(json.dumps(score, indent=2) + "\n")
        print(f"{args.rescore}: {score['survived']} survived, {score['equivalent']} equivalent")
        return 1 if score["survived"] else 0
    mutants = [m for m in find_mutants(ROOT, args.operator) if _chosen(m.id, args.patterns)]
    if not mutants:
        print(f"gpu_mutants.py: error: no mutant id matches {' '.join(args.patterns)}", file=sys.stderr)
        return 2
    if args.list:
        texts = {m.path: (ROOT / m.path).read_text() for m in mutants}
        for m in mutants:
            mark = "  (equivalent)" if m.id in EQUIVALENT else ""
            print(f"{m.id}{mark}\n{m.diff(texts[m.path])}")
        print(f"{len(mutants)} mutants")
        return 0
    if args.jobs < 1:
        print("gpu_mutants.py: error: --jobs must be at least 1", file=sys.stderr)
        return 2
    if args.resume and not args.out:
        print("gpu_mutants.py: error: --resume continues the score in --out: give --out", file=sys.stderr)
        return 2
    result, path = run_and_write(
        operators=args.operator, patterns=args.patterns, out=args.out, jobs=args.jobs, resume=args.resume
    )
    print(
        f"{result['mutants']} GPU mutants: {result['killed']} killed, {result['survived']} survived, "
        f"{result['equivalent']} equivalent, in {result['seconds']} s"
    )
    return 1 if result["survived"] else 0


if __name__ == "__main__":
    sys.exit(main())
