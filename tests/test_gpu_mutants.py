"""scripts/gpu_mutants.py: its operators find the GPU bugs they claim, on gpunn's real sources, and plant each
one in a temporary copy judged by fake proof parts (the real proof's run is the committed result, not a test)."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

from script_modules import load_script

ROOT = Path(__file__).resolve().parents[1]


gpu_mutants = load_script("gpu_mutants")
check_gpu = sys.modules["check_gpu"]  # the one gpu_mutants judges with
MUTANTS = gpu_mutants.find_mutants(ROOT)
TEXTS = {m.path: (ROOT / m.path).read_text() for m in MUTANTS}


def of(operator: str):
    return [m for m in MUTANTS if m.operator == operator]


def test_every_operator_finds_sites_and_each_mutant_has_its_own_id():
    assert {m.operator for m in MUTANTS} == set(gpu_mutants.OPERATORS)
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))


def test_each_equivalence_names_a_mutant_that_exists():
    assert set(gpu_mutants.EQUIVALENT) <= {m.id for m in MUTANTS}  # a stale id would excuse nothing
    assert set(gpu_mutants.UNSEEN) <= {m.id for m in MUTANTS} - set(gpu_mutants.EQUIVALENT)


def test_each_numpy_call_judged_equivalent_is_the_call_its_reason_names():
    for mutant in MUTANTS:
        if mutant.operator == "host_array" and mutant.id in gpu_mutants.EQUIVALENT:
            called = TEXTS[mutant.path][mutant.end :].split("(")[0].lstrip(".")
            assert f"np.{called}(device_array)" in gpu_mutants.EQUIVALENT[mutant.id], mutant.id


def test_fences_and_atomics_are_each_planted_away_once_per_site():
    kernels = TEXTS["gpunn/backend/kernels.py"]
    fences = of("drop_fence")
    assert len(fences) == kernels.count("__threadfence();") == 2
    for mutant in fences:
        assert mutant.apply(kernels).count("__threadfence();") == 1
    (atomic,) = of("deatomise")
    mutated = atomic.apply(kernels)
    assert "atomicAdd(" not in mutated and "((done[0] += (1u)) - (1u))" in mutated  # (a comment names it)


def test_index_math_is_told_from_counters():
    code = (
        "long long r = i / width; long long count = 0; const ptrdiff_t k = r * cols + j;"
        " x = a[(long long)rows[k] + c]; for (long long q = 0; q < n; ++q) y[q] = (long long)z;"
    )
    # r feeds k, k indexes a[], q indexes y[]: index math; count indexes nothing; the cast inside a[] is index
    # math, the one outside is not
    expected = [
        (code.index("long long r"), "long long"),
        (code.index("ptrdiff_t k"), "ptrdiff_t"),
        (code.index("long long)rows"), "long long"),
        (code.index("long long q"), "long long"),
    ]
    assert [(a, code[a:b]) for a, b in gpu_mutants.index_sites(code)] == expected


def test_tails_are_cut_in_kernel_loops_and_in_row_counts_only():
    for mutant in of("skip_tail"):
        assert mutant.replacement == f"{mutant.original} - 1"
    host = [m for m in of("skip_tail") if m.path.endswith("cupy_backend.py")]
    assert {m.original for m in host} == {
        "grad.shape[0]",
        "np.float64(rows)",
        "rows",
    }  # never the `rows` index array


def test_every_python_mutant_still_parses():
    for mutant in MUTANTS:
        if mutant.path.endswith(".py") and mutant.path != "gpunn/backend/kernels.py":
            ast.parse(mutant.apply(TEXTS[mutant.path]), mutant.id)


def test_a_hidden_sync_keeps_the_value_it_reads_back():
    (first, *_) = of("hidden_sync")
    expression = first.replacement

    class Scalar:
        reads = 0

        def __float__(self):
            Scalar.reads += 1
            return 0.5

    value = Scalar()
    assert eval(expression, {"loss_value": value}) is value and Scalar.reads == 1
    assert eval(expression, {"loss_value": None}) is None


def fake_repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "gpunn").mkdir(parents=True)
    (root / "gpunn" / "code.py").write_text("X = 1\n")
    return root


def fake_part(name, code, reads=("gpunn/*",), cost=1):
    return check_gpu.Part(name, (check_gpu.PYTHON, "-c", code), reads, cost)


PLANTED = "import sys; sys.exit(1 if 'X = 2' in open('gpunn/code.py').read() else 0)"


def test_a_mutant_is_judged_in_a_copy_cheapest_part_first_and_the_worktree_is_untouched(tmp_path):
    root = fake_repo(tmp_path)
    mutant = gpu_mutants.Mutant("skip_tail", "gpunn/code.py", "<module>", 1, 4, 5, "1", "2")
    parts = (
        fake_part("dear", PLANTED, cost=9),
        fake_part("cheap", "print('blind')", cost=1),
        fake_part("elsewhere", "raise SystemExit(1)", reads=("docs/*",)),
    )
    result = gpu_mutants.run_mutants([mutant], parts, root, progress=lambda line: None)
    killed = result["killed_mutants"][mutant.id]
    assert killed["killed_by"] == "dear" and killed["parts_run"] == ["cheap", "dear"]
    assert killed["diff"] == "- X = 1\n+ X = 2"
    assert (root / "gpunn" / "code.py").read_text() == "X = 1\n"
    assert (result["killed"], result["survived"], result["mutants"], result["complete"]) == (1, 0, 1, True)


def test_a_survivor_says_what_the_proof_cannot_see_and_an_equivalent_is_not_run(tmp_path, monkeypatch):
    root = fake_repo(tmp_path)
    survivor = gpu_mutants.Mutant("drop_fence", "gpunn/code.py", "<module>", 1, 4, 5, "1", "2")
    excused = gpu_mutants.Mutant("drop_fence", "gpunn/code.py", "<module>", 2, 4, 5, "1", "3")
    monkeypatch.setitem(gpu_mutants.EQUIVALENT, excused.id, "X is never read")
    parts = (fake_part("blind", "print('ok')"), fake_part("counts runs", "open('ran', 'a').write('x')"))
    result = gpu_mutants.run_mutants([survivor, excused], parts, root, progress=lambda line: None)
    assert (
        result["surviving_mutants"][survivor.id]["why_unseen"]
        == gpu_mutants.OPERATORS["drop_fence"].blind_spot
    )
    assert result["equivalent_mutants"][excused.id]["reason"] == "X is never read"
    assert result["by_operator"] == {"drop_fence": {"killed": 0, "survived": 1, "equivalent": 1}}
    assert not (root / "ran").exists()  # the parts ran in the copy, never in the repository


def test_a_pattern_that_matches_no_mutant_is_one_line_and_exit_2(capsys):
    assert gpu_mutants.main(["no-such-mutant:*"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "gpu_mutants.py: error: no mutant id matches no-such-mutant:*"
    ]


def test_workers_each_judge_in_their_own_copy_and_the_score_so_far_is_kept(tmp_path):
    root = fake_repo(tmp_path)
    mutants = [
        gpu_mutants.Mutant("skip_tail", "gpunn/code.py", "<module>", n, 4, 5, "1", "2") for n in (1, 2, 3)
    ]
    partial = tmp_path / "partial.json"
    result = gpu_mutants.run_mutants(
        mutants, (fake_part("sees it", PLANTED),), root, progress=lambda line: None, jobs=2, partial=partial
    )
    assert list(result["killed_mutants"]) == [m.id for m in mutants]  # in source order, whoever judged them
    so_far = json.loads(partial.read_text())
    assert (so_far["complete"], so_far["killed"]) == (False, 3)


def test_rescore_moves_a_survivor_judged_equivalent_since_the_run(tmp_path, monkeypatch):
    root = fake_repo(tmp_path)
    survivor = gpu_mutants.Mutant("block_size", "gpunn/code.py", "<module>", 1, 4, 5, "1", "2")
    score = gpu_mutants.run_mutants([survivor], (fake_part("blind", "print('ok')"),), root, lambda line: None)
    path = tmp_path / "score.json"
    score["surviving_mutants"][survivor.id]["why_unseen"] = "the words of an older proof"
    path.write_text(json.dumps(score))
    first = gpu_mutants.rescore(path)
    assert first["survived"] == 1  # nothing listed yet: nothing moves, and it says today's blind spot
    assert (
        first["surviving_mutants"][survivor.id]["why_unseen"]
        == gpu_mutants.OPERATORS["block_size"].blind_spot
    )
    monkeypatch.setitem(gpu_mutants.EQUIVALENT, survivor.id, "one thread whatever the block size")
    again = gpu_mutants.rescore(path)
    assert (again["survived"], again["equivalent"], again["surviving_mutants"]) == (0, 1, {})
    assert again["equivalent_mutants"][survivor.id] == {
        "diff": "- X = 1\n+ X = 2",
        "reason": "one thread whatever the block size",
    }
    assert again["by_operator"] == {"block_size": {"killed": 0, "survived": 0, "equivalent": 1}}


def test_a_resumed_run_keeps_verdicts_whose_change_is_the_same_and_judges_the_rest(tmp_path):
    root = fake_repo(tmp_path)
    judged = gpu_mutants.Mutant("skip_tail", "gpunn/code.py", "<module>", 1, 4, 5, "1", "2")
    earlier = gpu_mutants.run_mutants([judged], (fake_part("sees it", PLANTED),), root, lambda line: None)
    new = gpu_mutants.Mutant("skip_tail", "gpunn/code.py", "<module>", 2, 4, 5, "1", "3")
    changed = gpu_mutants.Mutant("skip_tail", "gpunn/code.py", "<module>", 1, 4, 5, "1", "4")  # same id
    marker = "import pathlib; pathlib.Path(r'%s').open('a').write('run ')" % (tmp_path / "runs")
    again = gpu_mutants.run_mutants(
        [judged, new], (fake_part("m", marker),), root, lambda line: None, earlier=earlier
    )
    assert again["killed_mutants"][judged.id]["killed_by"] == "sees it"  # kept, not judged again
    assert list(again["surviving_mutants"]) == [new.id] and (tmp_path / "runs").read_text() == "run "
    stale = dict(
        earlier, killed_mutants={}, equivalent_mutants={new.id: {"diff": new.diff("X = 1\n"), "reason": "?"}}
    )
    rerun = gpu_mutants.run_mutants([new], (fake_part("m", marker),), root, lambda line: None, earlier=stale)
    assert rerun["survived"] == 1  # an equivalence today's list does not hold is judged
    third = gpu_mutants.run_mutants(
        [changed], (fake_part("m", marker),), root, lambda line: None, earlier=earlier
    )
    assert list(third["surviving_mutants"]) == [changed.id]  # its change differs from the one judged
