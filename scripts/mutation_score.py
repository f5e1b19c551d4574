#!/usr/bin/env python
"""Mutation score of the NN core (issue #17): run mutmut, count what the fast unit tests kill, write JSON.

    pip install mutmut==3.8.1        # not in any extra: CI does not run mutation testing
    python scripts/mutation_score.py [--jobs 2] [--no-run]

What is mutated, and which tests judge the mutants, is [tool.mutmut] in pyproject.toml. A mutant that no
test runs counts as surviving. Mutants listed in EQUIVALENT change nothing a caller can observe; they leave
the denominator, and the JSON says why for each. mutmut keeps its results in mutants/ (git-ignored), so a
second run only re-checks what changed; `rm -rf mutants` starts afresh.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from bench import write_results  # noqa: E402  (one writer for every results file)

# Function-wide reasons: every mutant of these functions is unobservable from outside.
EQUIVALENT_FUNCTIONS = {
    "gpunn.backend.numpy_backend.x_tune_host_allocator": (
        "performance only: glibc malloc thresholds change speed, never a result; the function reports "
        "whether tuning applied and nothing reads that"
    ),
}

# Single mutants that cannot change behaviour, with the reason (names are mutmut's, stable for this source).
EQUIVALENT: dict[str, str] = {}

KILLED = {"killed", "timeout", "caught by type check", "segfault"}


def run_mutmut(jobs: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        sys.exit(f"mutation_score: mutmut run failed (exit {done.returncode}); see its output above")


def results() -> dict[str, tuple[str, Path]]:
    """mutant name -> (status, mutated file), read from mutmut's .meta files."""
    from mutmut.stats import status_by_exit_code

    out = {}
    for meta in sorted((ROOT / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        source = meta.with_suffix("")  # foo.py.meta -> foo.py
        for name, code in data["exit_code_by_key"].items():
            out[name] = (status_by_exit_code[code], source)
    return out


def equivalence_reason(name: str) -> str | None:
    function = name.rsplit("__mutmut_", 1)[0]
    return EQUIVALENT.get(name) or EQUIVALENT_FUNCTIONS.get(function)


def diff_of(name: str, path: Path) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    lines = get_diff_for_mutant(name, path=path.relative_to(ROOT / "mutants")).splitlines()
    return "\n".join(line for line in lines if line[:1] in "+-" and line[:3] not in ("---", "+++"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants checked at once")
    parser.add_argument("--no-run", action="store_true", help="only summarise the last run's mutants/")
    parser.add_argument("--out", help="default benchmarks/results/mutation-DATE-HOST.json")
    args = parser.parse_args()
    try:
        import mutmut  # noqa: F401
    except ImportError:
        sys.exit("mutation_score: mutmut is not installed: pip install mutmut==3.8.1")
    if not args.no_run:
        run_mutmut(args.jobs)
    os.chdir(ROOT)  # mutmut's diff helpers read pyproject.toml and mutants/ from the working directory
    found = results()
    if not found:
        sys.exit("mutation_score: no mutants/ results: run without --no-run first")
    if any(status == "not checked" for status, _ in found.values()):
        print("mutation_score: some mutants are not checked yet (counted as surviving): run without --no-run")

    counts = Counter(status for status, _ in found.values())
    equivalent, surviving = {}, {}
    for name, (status, path) in sorted(found.items()):
        if status in KILLED:
            continue
        reason = equivalence_reason(name)
        entry = {"status": status, "diff": diff_of(name, path)}
        if reason:
            equivalent[name] = {**entry, "reason": reason}
        else:
            surviving[name] = entry
    considered = len(found) - len(equivalent)
    killed = sum(counts[s] for s in KILLED)
    result = {
        "command": "python scripts/mutation_score.py",
        "tool": f"mutmut {mutmut_version()}",
        "host": socket.gethostname(),
        "date": date.today().isoformat(),
        "mutants": len(found),
        "by_status": dict(counts),
        "equivalent": len(equivalent),
        "killed": killed,
        "surviving": len(surviving),
        "surviving_fraction": round(len(surviving) / max(considered, 1), 4),
        "not_mutated": {"gpunn/backend/cupy_backend.py": "runs only on an NVIDIA GPU; no test here executes it"},
        "surviving_mutants": surviving,
        "equivalent_mutants": equivalent,
    }
    write_results(result, args.out, prefix="mutation-")
    per_file = Counter(name.split(".x")[0] for name in surviving)
    for module, n in per_file.most_common():
        print(f"  {module}: {n} surviving")
    print(
        f"{len(found)} mutants: {killed} killed, {len(surviving)} surviving "
        f"({result['surviving_fraction']:.1%} of {considered}), {len(equivalent)} equivalent"
    )


def mutmut_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("mutmut")


if __name__ == "__main__":
    main()
