#!/usr/bin/env python
"""Mutation score of the NN core (issue #17): run mutmut, count what the fast unit tests kill, write JSON.

    pip install mutmut==3.8.1        # not in any extra: CI does not run mutation testing
    python scripts/mutation_score.py [--jobs 2] [--recheck | --no-run]

What is mutated, and which tests judge the mutants, is [tool.mutmut] in pyproject.toml. A mutant that no
test runs counts as surviving. Mutants listed in EQUIVALENT / EQUIVALENT_FUNCTIONS change nothing a caller
can observe here (or run only on a GPU); they leave the denominator, and the JSON says why for each. mutmut keeps its results in mutants/ (git-ignored), so a
second run keeps earlier verdicts (--recheck tries the unkilled mutants again); `rm -rf mutants` starts
afresh.
"""

from __future__ import annotations

import argparse
import fnmatch
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

# Function-wide reasons: every mutant of these functions is unobservable here.
EQUIVALENT_FUNCTIONS: dict[str, str] = {}

_UNSET_DEFAULT = (
    "GPUNN_MALLOC_TUNING unset reads as None or 'XX1XX' instead of '1': none is '0', the same branch"
)
_MALLOPT_ARGS = (
    "performance only: glibc mallopt takes the mangled setting and still answers 1, so the function's "
    "answer (True) is the same; only malloc's thresholds, i.e. speed, differ"
)
_ZIP_CHECKED = "the lengths are compared (or equal by construction) before this zip"

# Single mutants that cannot change behaviour, with the reason (names are mutmut's, stable while the
# function's source is unchanged), one dict per area of the code.
# gpunn/nn
_SAME_PARAMS = (
    "shapes, sizes and every list of views are built from self.params: equal lengths by construction"
)
_NO_RANDOMNESS = "this layer draws no randomness: first_row is read only by Dropout"
_NN: dict[str, str] = {
    "gpunn.nn.model.xǁSequentialǁpredict_proba__mutmut_7": (
        "_is_mine adds only NumPy scalars to the arrays with __dlpack_device__ (CuPy's, array-api-strict's, "
        "torch's); a scalar is 0-d, which the host and device paths refuse with the same ShapeError"
    ),
    "gpunn.nn.layers.xǁLayerǁbegin_update__mutmut_1": "the base method only raises NotImplementedError",
    **{
        f"gpunn.nn.layers.xǁ{cls}ǁbegin_update__mutmut_1": _NO_RANDOMNESS
        for cls in ("Dense", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax")
    },
    "gpunn.nn.model.xǁSequentialǁbegin_update__mutmut_21": "grad is None at the break: returning returns the same None",
    "gpunn.nn.model.xǁSequentialǁset_weights__mutmut_10": _ZIP_CHECKED,
    "gpunn.nn.model.xǁSequentialǁset_weights__mutmut_13": _ZIP_CHECKED,
    "gpunn.nn.model.xǁSequentialǁset_weights__mutmut_14": _ZIP_CHECKED,
    "gpunn.nn.model.x_mlp__mutmut_29": _ZIP_CHECKED,
    "gpunn.nn.model.x_mlp__mutmut_32": _ZIP_CHECKED,
    "gpunn.nn.model.x_mlp__mutmut_36": _ZIP_CHECKED,
    "gpunn.nn.model.xǁSequentialǁfrom_description__mutmut_7": "Sequential's default seed is 0 as well",
    **{
        f"gpunn.nn.flat.xǁParameterBufferǁ{function}__mutmut_{n}": _SAME_PARAMS
        for function, numbers in (
            ("views", (5, 8, 9)),
            ("_bind_values", (3, 6, 8)),
            ("_bind_gradient", (6, 9, 10)),
            ("collect_gradient", (5, 8, 9)),
        )
        for n in numbers
    },
    "gpunn.nn.optim.xǁOptimizerǁstate_dict__mutmut_5": "np.array of a Python int is int64 on 64-bit Linux",
    "gpunn.nn.optim.xǁOptimizerǁstate_dict__mutmut_7": "np.array of a Python int is int64 on 64-bit Linux",
}
# gpunn/backend: the backends, collectives, RNG, DLPack, specs
_NEGATIVE_SIZE = "NumPy and array-api-strict read any negative size as -1"
_BACKEND: dict[str, str] = {
    **{f"gpunn.backend.numpy_backend.x_tune_host_allocator__mutmut_{n}": _UNSET_DEFAULT for n in (4, 6, 9)},
    **{
        f"gpunn.backend.numpy_backend.x_tune_host_allocator__mutmut_{n}": _MALLOPT_ARGS
        for n in (23, 24, 25, 26, 28, 29, 30, 31, 33)
    },
    "gpunn.backend.numpy_backend.x_tune_host_allocator__mutmut_17": (
        "ctypes.CDLL(None) is the running program, whose mallopt is glibc's: the same calls and answer"
    ),
    "gpunn.backend.base.xǁBackendǁone_hot__mutmut_8": _NEGATIVE_SIZE,
    "gpunn.backend.base.xǁBackendǁone_hot__mutmut_18": _NEGATIVE_SIZE,
    "gpunn.backend.base.xǁBackendǁflatten__mutmut_7": _NEGATIVE_SIZE,
    "gpunn.backend.base.xǁBackendǁfrom_host__mutmut_19": "ndarray.astype reads copy=None as copy=False",
    "gpunn.backend.base.xǁBackendǁfrom_host__mutmut_25": "ndarray.copy reads order=None as 'C'",
    "gpunn.backend.base.xǁBackendǁfrom_host__mutmut_27": "ndarray.copy reads order='c' as 'C'",
    "gpunn.backend.numpy_backend.xǁNumpyBackendǁ_download__mutmut_4": "np.array copies by default",
    "gpunn.backend.numpy_backend.xǁNumpyBackendǁastype__mutmut_2": "ndarray.astype reads copy=None as copy=False",
    "gpunn.backend.strict_backend.xǁStrictBackendǁ__init____mutmut_18": "asarray(1.0) has the same type",
    "gpunn.backend.counter_rng.x__mul__mutmut_2": (
        "on a uint32 array, & 0xFFFFFFFF keeps every bit and the dtype (the Python int fits uint32)"
    ),
    "gpunn.backend.spec.x_parse_device__mutmut_21": "DeviceSpec's index defaults to 0",
    "gpunn.backend.spec.x_parse_device__mutmut_28": "'XXXX' no more matches cuda:N than '' does",
    "gpunn.backend.collectives.x__nccl_module__mutmut_5": "a default of None is as falsy as False",
    "gpunn.backend.collectives.xǁNcclAllreduceǁsum___mutmut_6": "np.dtype(None) is float64",
}
# gpunn/checkpoint.py, gpunn/training/evaluate.py and schedules.py
_MNIST_NAMES = "SOURCES['mnist'].class_names are the digits 0-9: the same as the numbered fallback"
_ONE_LETTER = "dtype.kind is one letter of 'biufcmMOSUV'; adding X's to the set changes no verdict"
_NEVER_MATCHES = "the else branch compares the shape to a tuple of letters: never equal, the same refusal"
_READ_STOPS = (
    "zipfile returns no byte past the member's declared size, which the size check just above put at the "
    "end of the data: the data read itself completes the CRC check, and nothing is left to read"
)
_CHECKPOINT_EVALUATE: dict[str, str] = {
    "gpunn.checkpoint.x_class_names__mutmut_13": _MNIST_NAMES,
    "gpunn.checkpoint.x_class_names__mutmut_15": _MNIST_NAMES,
    "gpunn.checkpoint.x_class_names__mutmut_24": _MNIST_NAMES,
    "gpunn.checkpoint.x_class_names__mutmut_25": _MNIST_NAMES,
    "gpunn.checkpoint.x__optim_shape__mutmut_17": _NEVER_MATCHES,
    "gpunn.checkpoint.x__optim_shape__mutmut_18": _NEVER_MATCHES,
    "gpunn.checkpoint.x__array__mutmut_28": _ONE_LETTER,
    "gpunn.checkpoint.x__array__mutmut_35": _NEVER_MATCHES,
    "gpunn.checkpoint.x__array__mutmut_36": _NEVER_MATCHES,
    "gpunn.checkpoint.x__array__mutmut_37": "None is falsy: the same refusal as False",
    "gpunn.checkpoint.x__array__mutmut_45": _ONE_LETTER,
    "gpunn.checkpoint.x__array__mutmut_56": _READ_STOPS,
    "gpunn.checkpoint.x__array__mutmut_67": _READ_STOPS,
    "gpunn.checkpoint.x__array__mutmut_68": _READ_STOPS,
    "gpunn.checkpoint.x__array__mutmut_69": _READ_STOPS,
}
# gpunn/backend: device selection, availability, the CUDA probe, kernel sources
_DEVICE: dict[str, str] = {
    "gpunn.backend.selection.x__resolve_auto__mutmut_11": (
        "DeviceSpec's index defaults to 0: DeviceSpec('cuda') is field for field DeviceSpec('cuda', 0)"
    ),
}
EQUIVALENT: dict[str, str] = {**_NN, **_BACKEND, **_CHECKPOINT_EVALUATE, **_DEVICE}

KILLED = {"killed", "timeout", "caught by type check", "segfault"}


def run_mutmut(jobs: int, names: list[str]) -> None:
    # GPUNN_CUDA_STANDIN: the gpu tests run CupyBackend on the CuPy stand-in, as in CI's second pass
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GPUNN_CUDA_STANDIN": "1"}
    # the kernel tests compile CuPy's generated source from the checkout's unpacked wheel, not mutants/'s
    env.setdefault("GPUNN_CUPY_REAL", str(ROOT / ".cupy-real"))
    done = subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *names],
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


def chosen(name: str, patterns: list[str]) -> bool:
    """No patterns choose every mutant."""
    return not patterns or any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


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
    parser.add_argument(
        "--recheck", action="store_true", help="check again every mutant not yet killed (after adding tests)"
    )
    parser.add_argument("--out", help="default benchmarks/results/mutation-DATE-HOST.json")
    parser.add_argument(
        "patterns",
        nargs="*",
        help="only these mutants (mutmut names, * globs: 'gpunn.nn.layers.*'), for work on one module",
    )
    args = parser.parse_args()
    try:
        import mutmut  # noqa: F401
    except ImportError:
        sys.exit("mutation_score: mutmut is not installed: pip install mutmut==3.8.1")
    os.chdir(ROOT)  # mutmut's helpers read pyproject.toml and mutants/ from the working directory
    if not args.no_run:
        if not args.recheck:
            run_mutmut(args.jobs, args.patterns)
        elif names := [
            n for n, (status, _) in results().items() if status not in KILLED and chosen(n, args.patterns)
        ]:
            run_mutmut(args.jobs, names)
        else:
            print("mutation_score: nothing left to recheck")  # mutmut given no names would run every mutant
    found = {name: result for name, result in results().items() if chosen(name, args.patterns)}
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
        "not_mutated": {
            "gpunn/backend/cupy_backend.py": "runs only on an NVIDIA GPU; no test here executes it"
        },
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
