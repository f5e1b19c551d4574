"""Parse GitHub Actions workflow files and check the structure actionlint would reject first.

python scripts/check_workflows.py .github/workflows/*.yml
"""

from __future__ import annotations

import sys

import yaml


def problems(path: str) -> list[str]:
    with open(path) as fh:
        doc = yaml.safe_load(fh)
    found = []
    if not isinstance(doc, dict):
        return [f"{path}: not a YAML mapping"]
    triggers = doc.get("on", doc.get(True))  # YAML 1.1 reads a bare `on` key as True
    if not triggers:
        found.append(f"{path}: no `on:` triggers")
    jobs = doc.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        return found + [f"{path}: no jobs"]
    for name, job in jobs.items():
        if "runs-on" not in job:
            found.append(f"{path}: job {name} has no runs-on")
        steps = job.get("steps")
        if not isinstance(steps, list) or not steps:
            found.append(f"{path}: job {name} has no steps")
            continue
        for index, step in enumerate(steps):
            if not isinstance(step, dict) or ("run" in step) == ("uses" in step):
                found.append(f"{path}: job {name} step {index} needs exactly one of run/uses")
    return found


if __name__ == "__main__":
    issues = [p for path in sys.argv[1:] for p in problems(path)]
    for line in issues:
        print(line)
    print(f"workflows: {len(sys.argv) - 1} checked, {len(issues)} problems")
    raise SystemExit(1 if issues or len(sys.argv) < 2 else 0)
