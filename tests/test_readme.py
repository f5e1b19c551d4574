"""The README's example blocks run and print what the README says they print."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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
