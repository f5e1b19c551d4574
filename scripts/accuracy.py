"""MNIST test accuracy of the default recipe (3 seeds) and the classic seed recipe, as committed in README.

python scripts/accuracy.py --data-dir DIR [--seeds 0 1 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import socket
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from bench import _cpu_name, write_results

    from gpunn.training import train

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out")
    args = parser.parse_args()
    results = {
        "date": datetime.date.today().isoformat(),
        "host": socket.gethostname(),
        "cpu": _cpu_name(),
        "recipes": {},
    }
    for recipe in ("default", "seed"):
        runs = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as out:
                result = train(
                    out=Path(out) / "run", recipe=recipe, seed=seed, data_dir=args.data_dir, verbose=False
                )
            runs.append(
                {
                    "seed": seed,
                    "test_accuracy": result.test_accuracy,
                    "train_seconds": round(sum(h["seconds"] for h in result.history), 2),
                    "epochs": len(result.history),
                }
            )
            print(
                f"{recipe} seed {seed}: {result.test_accuracy:.2%} in {runs[-1]['train_seconds']} s",
                flush=True,
            )
        accuracies = [r["test_accuracy"] for r in runs]
        results["recipes"][recipe] = {
            "runs": runs,
            "mean": statistics.mean(accuracies),
            "min": min(accuracies),
            "max": max(accuracies),
            "config": result.config.to_dict(),
        }
        print(f"{recipe}: mean {statistics.mean(accuracies):.2%} over seeds {args.seeds}")
    write_results(results, args.out, "accuracy-")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
