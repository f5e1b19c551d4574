"""Parse GitHub Actions workflow files and check the structure actionlint would reject first.

python scripts/check_workflows.py .github/workflows/*.yml

Also the docker mistakes that only show on a self-hosted runner: data kept in runner.temp (emptied for
every job), a writable bind mount (our images run as uid 10001, which cannot write the runner's checkout),
and a --data-dir that no earlier step filled (an explicit --data-dir never downloads).
"""

from __future__ import annotations

import re
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
        scripts = [str(step.get("run", "")) for step in steps if isinstance(step, dict)]
        found += [f"{path}: job {name} step {index}: {p}" for index, p in docker_problems(scripts)]
    return found


_VOLUME = re.compile(r"(?:^|\s)(?:-v|--volume)(?:\s+|=)(\"[^\"]*\"|'[^']*'|\S+)")
_NAMED_VOLUME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def docker_problems(scripts: list[str]) -> list[tuple[int, str]]:
    """(step index, problem) for the `docker run` mounts and --data-dir uses of a job's run scripts."""
    found = []
    for index, script in enumerate(scripts):
        for mount in _VOLUME.findall(script):
            spec = mount.strip("\"'")
            source = spec.split(":")[0]
            if "runner.temp" in source:
                found.append((index, f"{spec}: runner.temp is emptied for every job; keep data in a named "
                                     "docker volume"))
            elif not _NAMED_VOLUME.fullmatch(source) and not spec.endswith(":ro"):
                found.append((index, f"{spec}: a writable bind mount; the image's user (uid 10001) cannot "
                                     "write it: use a named volume and `docker cp`, or mount it :ro"))
        if "--data-dir" in script and not any("data download" in s for s in scripts[:index]):
            found.append((index, "--data-dir never downloads: an earlier step must run `gpunn data download`"))
    return found


if __name__ == "__main__":
    issues = [p for path in sys.argv[1:] for p in problems(path)]
    for line in issues:
        print(line)
    print(f"workflows: {len(sys.argv) - 1} checked, {len(issues)} problems")
    raise SystemExit(1 if issues or len(sys.argv) < 2 else 0)
