"""scripts/check_gpu.py, the one command of the CPU-side GPU proof, driven with fake parts (tiny commands),
never the real suite: a failing part turns it red and is named, -x stops there, an absent part is SKIP."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from script_modules import load_script

ROOT = Path(__file__).resolve().parents[1]


check_gpu = load_script("check_gpu")
Part, PY = check_gpu.Part, check_gpu.PYTHON


def fake(name: str, code: str, **kwargs) -> Part:
    return Part(name, (PY, "-c", code), ("gpunn/*",), 1, **kwargs)


PASSING = fake("first", "print('all 3 good')")
FAILING = fake(
    "broken", "import sys; print('FAILED tests/t.py::x - boom'); print('== 1 failed =='); sys.exit(1)"
)
LAST = fake("last", "print('ran last')")


def lines_of(text: str) -> dict[str, str]:
    """part name -> its line, from check_gpu's stdout"""
    return {m[2]: m[0] for m in re.finditer(r"^(PASS|FAIL|SKIP)\s+(\S+).*$", text, re.M)}


def test_a_failing_part_makes_it_exit_non_zero_naming_the_part(tmp_path, capsys):
    assert check_gpu.main([], parts=(PASSING, FAILING, LAST), root=tmp_path) == 1
    out, err = capsys.readouterr()
    lines = lines_of(out)
    assert lines["first"].startswith("PASS") and lines["first"].endswith("all 3 good")
    assert lines["broken"].startswith("FAIL")
    assert lines["broken"].endswith("FAILED tests/t.py::x - boom; 1 failed")
    assert lines["last"].startswith("PASS")  # without -x every part runs
    assert out.splitlines()[-1].startswith("check_gpu: 1 failed (broken)")
    assert "--- broken: last lines of its output" in err and "boom" in err


def test_x_stops_at_the_first_failure(tmp_path, capsys):
    assert check_gpu.main(["-x"], parts=(PASSING, FAILING, LAST), root=tmp_path) == 1
    out = capsys.readouterr().out
    assert set(lines_of(out)) == {"first", "broken"}
    assert "1 not run (-x)" in out.splitlines()[-1]


def test_green_parts_exit_zero_and_an_absent_part_is_skipped_not_passed(tmp_path, capsys):
    absent = fake("executor", "raise SystemExit(1)", needs="tests/gpu_proof/__init__.py")
    assert check_gpu.main([], parts=(PASSING, absent, LAST), root=tmp_path) == 0
    out = capsys.readouterr().out
    assert lines_of(out)["executor"].startswith("SKIP")
    assert "tests/gpu_proof/__init__.py is not in this checkout" in out
    (tmp_path / "tests" / "gpu_proof").mkdir(parents=True)
    (tmp_path / "tests" / "gpu_proof" / "__init__.py").write_text("")
    assert check_gpu.main([], parts=(PASSING, absent), root=tmp_path) == 1  # present: it runs, and fails


def test_a_part_runs_in_the_root_with_its_environment_and_gpunn_on_the_path(tmp_path, capsys):
    probe = fake(
        "env",
        "import os; print(os.getcwd(), os.environ['PYTHONPATH'], os.environ['GPUNN_CUDA_STANDIN'])",
        env={"GPUNN_CUDA_STANDIN": "1"},
    )
    assert check_gpu.main([], parts=(probe,), root=tmp_path) == 0
    assert lines_of(capsys.readouterr().out)["env"].endswith(f"{tmp_path} {tmp_path} 1")


def test_a_part_past_its_timeout_fails_and_says_so(tmp_path):
    stuck = fake("stuck", "import time; time.sleep(60)", timeout_s=1)
    outcome = check_gpu.run_part(stuck, tmp_path)
    assert (outcome.status, outcome.reason) == ("FAIL", "timed out after 1 s")


def test_a_crash_says_its_exit_status_and_its_last_line(tmp_path):
    crash = fake("crash", "import sys; print('Traceback...'); print('KeyError: x'); sys.exit(3)")
    assert check_gpu.run_part(crash, tmp_path).reason == "exit 3: KeyError: x"


def test_part_selects_parts_and_an_unknown_part_is_refused(tmp_path, capsys):
    assert check_gpu.main(["--part", "first"], parts=(PASSING, FAILING), root=tmp_path) == 0
    assert set(lines_of(capsys.readouterr().out)) == {"first"}
    with pytest.raises(SystemExit) as refused:
        check_gpu.main(["--part", "nonesuch"], parts=(PASSING,), root=tmp_path)
    assert refused.value.code == 2
    assert "invalid choice: 'nonesuch'" in capsys.readouterr().err


def test_mutants_are_not_planted_while_the_proof_is_red(tmp_path, capsys):
    assert check_gpu.main(["--mutants"], parts=(FAILING,), root=tmp_path) == 1
    assert "SKIP  gpu mutants" in capsys.readouterr().out


def test_the_real_table_is_the_ci_proof_cheapest_first():
    parts = {p.name: p for p in check_gpu.PARTS}
    suite = parts["stand-in gpu suite"]
    assert suite.command[-2:] == ("-m", "gpu") and suite.env == {"GPUNN_CUDA_STANDIN": "1"}
    assert parts["budget"].command[1:] == ("scripts/gpu_budget.py", "--check")
    assert parts["nvrtc"].command[1:] == ("scripts/check_kernels.py",)
    costs = [p.cost_s for p in check_gpu.PARTS]
    assert costs == sorted(costs)
    assert "python scripts/check_gpu.py" in (ROOT / ".ci" / "run").read_text()
