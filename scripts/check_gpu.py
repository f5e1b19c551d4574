#!/usr/bin/env python
"""The whole CPU-side proof of the GPU path in one command: one line per part, non-zero exit on any failure.

    python scripts/check_gpu.py [-x] [--part NAME ...] [--mutants]

Each part is a command from PARTS below, run from the repository root with gpunn on PYTHONPATH; a part
whose files are not in this checkout (one still being written) is SKIP, not PASS. The line of each part
says PASS/FAIL/SKIP, its seconds and a short reason; a failing part's output tail goes to stderr. -x stops
at the first failure; --mutants then runs the GPU mutants (scripts/gpu_mutants.py), which only mean
something when every part is green. A real GPU's checks are scripts/gpu-check, not this.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = "{python}"  # replaced by the running interpreter
STANDIN = {"GPUNN_CUDA_STANDIN": "1"}  # tests/conftest.py puts the CuPy stand-in first on the path
PYTEST = (PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider")


@dataclass(frozen=True)
class Part:
    """One piece of the proof. reads: the sources whose change it can see (a mutant of a file no part reads
    is judged by none); cost_s: its seconds on the 2-core CI VM, so the cheapest runs first; needs: a path
    that must exist for the part to run; mutant_args: added when judging a mutant (stop at the first red)."""

    name: str
    command: tuple[str, ...]
    reads: tuple[str, ...]
    cost_s: float
    env: dict = field(default_factory=dict)
    needs: str | None = None
    timeout_s: int = 300
    mutant_args: tuple[str, ...] = ()


# The proof, cheapest first: adding a part is one line. The NVRTC check compiles CuPy's own generated source
# where tests/gpu_proof/cupy_codegen.py is present (check_kernels.py uses it): that needs no line of its own.
PARTS: tuple[Part, ...] = (
    Part("budget", (PYTHON, "scripts/gpu_budget.py", "--check"), ("gpunn/*",), 3, STANDIN),
    Part("nvrtc", (PYTHON, "scripts/check_kernels.py"), ("gpunn/backend/kernels.py",), 7),
    Part("stand-in gpu suite", (*PYTEST, "-m", "gpu"), ("gpunn/*",), 30, STANDIN, mutant_args=("-x",)),
    # the CPU executor with CUDA's semantics and its ThreadSanitizer / ASan+UBSan builds (issue 24, part 1)
    Part(
        "cuda executor",
        (*PYTEST, "tests/test_gpu_exec.py"),
        ("gpunn/backend/kernels.py", "tests/gpu_proof/*"),
        120,
        STANDIN,
        needs="tests/gpu_proof/__init__.py",
        timeout_s=600,
        mutant_args=("-x",),
    ),
)


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # PASS, FAIL or SKIP
    seconds: float
    reason: str
    output: str = ""

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<20} {self.seconds:6.1f} s  {self.reason}"


def present(part: Part, root: Path = ROOT) -> bool:
    return part.needs is None or (root / part.needs).exists()


def run_part(part: Part, root: Path = ROOT, extra_args: tuple[str, ...] = (), extra_env=None) -> Outcome:
    """Run one part in `root` (bounded by its timeout); the reason is the line that says why."""
    if not present(part, root):
        return Outcome(part.name, "SKIP", 0.0, f"{part.needs} is not in this checkout")
    command = [sys.executable if word == PYTHON else word for word in (*part.command, *extra_args)]
    env = {**os.environ, **part.env, **(extra_env or {}), "PYTHONPATH": str(root)}
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=part.timeout_s
        )
    except subprocess.TimeoutExpired as exc:
        output = "\n".join(_text(s) for s in (exc.stdout, exc.stderr) if s)
        return Outcome(
            part.name, "FAIL", time.perf_counter() - started, f"timed out after {part.timeout_s} s", output
        )
    seconds = time.perf_counter() - started
    output = (done.stdout + "\n" + done.stderr).strip()
    ok = done.returncode == 0
    return Outcome(part.name, "PASS" if ok else "FAIL", seconds, reason(output, ok, done.returncode), output)


def _text(stream) -> str:
    return stream.decode(errors="replace") if isinstance(stream, bytes) else stream


def reason(output: str, ok: bool, returncode: int) -> str:
    """The last line of a part's output (pytest's summary, a script's verdict); on failure pytest's first
    FAILED/ERROR line comes first, so the line names the test."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    last = lines[-1].strip("= ") if lines else f"exit {returncode}, no output"
    if ok:
        return last
    first = next((line for line in lines if line.startswith(("FAILED ", "ERROR "))), None)
    text = f"{first}; {last}" if first and first != last else last
    return text if returncode == 1 else f"exit {returncode}: {text}"


def run_parts(parts, root: Path = ROOT, stop_at_failure: bool = False, out=None, err=None):
    """Each part's line as it finishes on `out` (a failure's output tail on `err`; stdout and stderr by
    default); stops after the first failure when asked. Returns the outcomes of the parts that ran."""
    out, err = out or sys.stdout, err or sys.stderr
    outcomes = []
    for part in parts:
        outcome = run_part(part, root)
        if outcome.status == "FAIL" and outcome.output:
            tail = "\n".join(outcome.output.splitlines()[-60:])
            print(f"--- {part.name}: last lines of its output\n{tail}\n---", file=err, flush=True)
        print(outcome.line(), file=out, flush=True)
        outcomes.append(outcome)
        if stop_at_failure and outcome.status == "FAIL":
            break
    return outcomes


def main(argv=None, parts: tuple[Part, ...] = PARTS, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failing part")
    parser.add_argument(
        "--part", action="append", choices=[p.name for p in parts], help="run only this part (repeatable)"
    )
    parser.add_argument(
        "--mutants",
        action="store_true",
        help="then plant the GPU mutants, one worker per CPU (an hour on 2 cores)",
    )
    args = parser.parse_args(argv)
    chosen = [p for p in parts if not args.part or p.name in args.part]
    started = time.perf_counter()
    outcomes = run_parts(chosen, root, args.exitfirst)
    failed = [o.name for o in outcomes if o.status == "FAIL"]
    if args.mutants:
        if failed:
            print(
                f"SKIP  {'gpu mutants':<20} {0.0:6.1f} s  the proof is red: a mutant run would mean nothing"
            )
        else:
            outcome = _mutants_part(parts, root)
            print(outcome.line(), flush=True)
            failed += [outcome.name] if outcome.status == "FAIL" else []
    skipped = [o.name for o in outcomes if o.status == "SKIP"]
    summary = f"check_gpu: {len(failed)} failed" + (f" ({', '.join(failed)})" if failed else "")
    summary += f", {len(skipped)} skipped ({', '.join(skipped)})" if skipped else ""
    not_run = len(chosen) - len(outcomes)
    summary += f", {not_run} not run (-x)" if not_run else ""
    print(f"{summary}; {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


def _mutants_part(parts, root: Path) -> Outcome:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gpu_mutants

    started = time.perf_counter()
    result, path = gpu_mutants.run_and_write(parts=parts, root=root, jobs=os.cpu_count() or 1)
    status = "FAIL" if result["survived"] else "PASS"
    why = (
        f"{result['killed']} killed, {result['survived']} survived, {result['equivalent']} equivalent; {path}"
    )
    return Outcome("gpu mutants", status, time.perf_counter() - started, why)


if __name__ == "__main__":
    sys.exit(main())
