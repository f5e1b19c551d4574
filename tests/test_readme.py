"""The README's example blocks run and print what the README says they print."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from gpunn.training.config import RENAMED_RECIPES

README = Path(__file__).resolve().parents[1] / "README.md"


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


def test_performance_and_accuracy_numbers_come_from_committed_results():
    import json

    text = README.read_text()
    bench_name = re.search(r"\(`(benchmarks/results/[\w.-]+\.json)`\):", text).group(1)
    bench = json.loads((README.parent / bench_name).read_text())
    for label, key in [
        ("gpunn numpy", "gpunn numpy"),
        ("classic from-scratch", "classic numpy (float64)"),
        ("PyTorch 2.13 eager CPU", "pytorch eager cpu"),
        ("scikit-learn MLPClassifier", "sklearn MLPClassifier"),
    ]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {label}"))
        assert f"| {bench['rows'][key]['epoch_s']:.3f} |" in row, (label, row)
    assert f"| {bench['roofline_epoch_s']:.3f} |" in text
    accuracy_name = re.search(r"`(benchmarks/results/accuracy-[\w.-]+\.json)`", text).group(1)
    saved = json.loads((README.parent / accuracy_name).read_text())["recipes"]
    recipes = {RENAMED_RECIPES.get(name, name): result for name, result in saved.items()}  # results of old runs
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
