"""The README's example blocks run and print what the README says they print."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gpunn.training.config import RENAMED_RECIPES

README = Path(__file__).resolve().parents[1] / "README.md"


# A python block may be preceded by `<!-- example: NAME (tests/test_readme.py runs this block) -->`; one that
# cannot run here says why instead: `<!-- example: NAME (skipped by tests/test_readme.py: needs a GPU) -->`.
BLOCK = re.compile(
    r"(?:<!-- example: (?P<name>[\w-]+) (?P<note>[^\n]*?)-->\n)?```python\n(?P<code>.*?)```", re.S
)
SKIPPED = re.compile(r"skipped by tests/test_readme\.py: (?P<reason>[^)]+)")
# blocks whose own test below also checks what they print or write
CHECKED_BY_THEIR_OWN_TEST = {"api", "two-two-one"}


def python_blocks(text: str | None = None) -> list:
    """Every python block of the README as a pytest param: its name (or line), code and skip mark."""
    text = README.read_text() if text is None else text
    blocks = []
    for match in BLOCK.finditer(text):
        name = match["name"] or f"line-{text.count(chr(10), 0, match.start()) + 1}"
        skipped = SKIPPED.search(match["note"] or "")
        marks = [pytest.mark.skip(reason=f"README block {name}: {skipped['reason']}")] if skipped else []
        blocks.append(pytest.param(name, match["code"], marks=marks, id=name))
    return blocks


def printed_as_commented(code: str, stdout: str) -> None:
    """Each `print(...)  # TEXT` line, in order, printed exactly TEXT."""
    expected = [m.group(1) for m in re.finditer(r"^print\(.*\)  # (.+)$", code, re.M)]
    if expected:
        assert stdout.splitlines()[: len(expected)] == expected


def test_the_readme_has_python_blocks_and_every_one_is_found():
    assert README.read_text().count("```python") == len(python_blocks()) >= 4


def test_a_block_marked_as_skipped_is_skipped_with_its_reason_and_an_unnamed_one_runs():
    text = (
        "<!-- example: on-gpu (skipped by tests/test_readme.py: needs a GPU) -->\n```python\nimport cupy\n```\n"
        "text\n```python\nprint(1)  # 1\n```\n"
    )
    gpu, plain = python_blocks(text)
    assert gpu.id == "on-gpu" and gpu.marks[0].kwargs == {"reason": "README block on-gpu: needs a GPU"}
    assert plain.id == "line-6" and plain.marks == [] and plain.values[1] == "print(1)  # 1\n"


@pytest.mark.parametrize(
    "name, code", [b for b in python_blocks() if b.values[0] not in CHECKED_BY_THEIR_OWN_TEST]
)
def test_every_other_readme_python_block_runs(name, code, tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert done.returncode == 0, done.stderr
    printed_as_commented(code, done.stdout)


def example_block(name: str) -> str:
    text = README.read_text()
    match = re.search(rf"<!-- example: {name} .*?-->\n```python\n(.*?)```", text, re.S)
    assert match, f"README has no example block {name!r}"
    return match.group(1)


def test_two_two_one_example_prints_the_commented_numbers():
    code = example_block("two-two-one")
    assert len(code.strip().splitlines()) <= 30
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    printed = {line.split()[0]: line for line in out.splitlines()}
    checked = 0
    for line in code.splitlines():
        match = re.match(r'print\("(\S+)\s*".*#\s*(\[\[.*?\]\])', line.strip())
        if match:
            label, expected = match.groups()
            assert " ".join(expected.split()) in " ".join(printed[label].split()), (label, printed[label])
            checked += 1
    assert checked == 5


def test_api_example_runs(tmp_path):
    code = example_block("api")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    accuracy = float(done.stdout.split("test accuracy ")[1].rstrip("%\n"))
    assert accuracy > 90
    assert (tmp_path / "digits.npz").exists() and (tmp_path / "runs" / "digits" / "checkpoint.npz").exists()


RESULTS = README.parent / "benchmarks" / "results"


def newest_results(prefix: str) -> Path:
    """The committed results file of that kind that finished last (its own finished_utc decides)."""
    files = sorted(RESULTS.glob(f"{prefix}*.json"))
    assert files, f"no {prefix}*.json under benchmarks/results"
    return max(files, key=lambda f: json.loads(f.read_text())["finished_utc"])


def generated_block(text: str, marker: str) -> str:
    """What the README holds between `<!-- marker: ... -->` and `<!-- /marker -->`."""
    found = re.search(rf"<!-- {marker}: [^\n]*-->\n(.*?)<!-- /{marker} -->", text, re.S)
    assert found, f"README has no {marker} block"
    return found[1]


@pytest.mark.parametrize(
    "marker, prefix, script",
    [("bench-table", "bench-", "bench_summary"), ("cost-growth-table", "cost-growth-", "cost_growth")],
)
def test_performance_blocks_are_generated_from_the_newest_results_file(marker, prefix, script):
    from script_modules import load_script

    newest = newest_results(prefix)
    shown = str(newest.relative_to(README.parent))
    expected = load_script(script).markdown(json.loads(newest.read_text()), shown)
    assert generated_block(README.read_text(), marker) == expected, (
        f"README's {marker} block is stale: paste `python scripts/{'bench' if prefix == 'bench-' else 'cost_growth'}.py "
        f"--table {shown}` between its markers"
    )


def test_accuracy_numbers_come_from_committed_results():
    text = README.read_text()
    accuracy_name = re.search(r"the numbers above are\s+`(benchmarks/results/accuracy-[\w.-]+\.json)`", text)[
        1
    ]
    saved = json.loads((README.parent / accuracy_name).read_text())["recipes"]
    recipes = {
        RENAMED_RECIPES.get(name, name): result for name, result in saved.items()
    }  # results of old runs
    for recipe in ("default", "long", "classic"):
        mean = recipes[recipe]["mean"]
        assert f"{mean:.2%} mean" in text, recipe
    assert recipes["default"]["mean"] >= 0.98 and recipes["long"]["mean"] > recipes["default"]["mean"]
    assert 0.973 <= recipes["classic"]["mean"] <= 0.98


def test_dlpack_example_runs():
    done = subprocess.run([sys.executable, "-c", example_block("dlpack")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_sklearn_save_example_runs_and_prints_its_layers(tmp_path):
    code = example_block("sklearn-save")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = [line for line in code.splitlines() if line.startswith("# Sequential")][0].lstrip("# ")
    assert done.stdout.strip().splitlines()[-1] == printed
    assert (tmp_path / "digits-mlp.npz").is_file()


def test_own_arrays_and_custom_loop_examples_train(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", example_block("own-arrays")], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    first, resumed = done.stdout.strip().splitlines()
    assert float(first.split()[-1].rstrip("%")) > 80 and resumed.startswith("after 15 epochs")
    assert (tmp_path / "runs" / "my-arrays" / "checkpoint.npz").is_file()
    code = example_block("custom-loop")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split("train accuracy ")[1].rstrip("%\n")) > 95


def test_the_early_stopping_example_beats_the_default_by_the_committed_numbers():
    import json

    text = " ".join(README.read_text().split())
    name = re.search(r"`(benchmarks/results/accuracy-early-stopping-[\w.-]+\.json)`", text)[1]
    saved = json.loads((README.parent / name).read_text())
    assert (saved["val_size"], saved["early_stopping"], saved["epochs"]) == (5000, 3, 30)
    result = saved["recipes"]["default"]
    assert result["config"]["schedule"] == "exponential" and result["reported"] == "chosen_test_accuracy"
    chosen = ", ".join(f"{100 * run['chosen_test_accuracy']:.2f}" for run in result["runs"])
    assert f"{result['mean']:.2%} mean test accuracy for `best.npz` ({chosen};" in text
    last = sum(run["test_accuracy"] for run in result["runs"]) / len(result["runs"])
    default_name = re.search(r"`(benchmarks/results/accuracy-default-[\w.-]+\.json)`", text)[1]
    default = json.loads((README.parent / default_name).read_text())["recipes"]["default"]
    assert f"and {last:.2%} for the last epoch, against {default['mean']:.2%} for plain `gpunn train`" in text
    assert min(result["mean"], last) > default["mean"]
