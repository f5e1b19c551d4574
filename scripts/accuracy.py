"""MNIST test accuracy of the default, long and classic recipes (3 seeds each), as committed in README.

python scripts/accuracy.py --data-dir DIR [--seeds 0 1 2] [--out FILE]
python scripts/accuracy.py --data-dir DIR --val-size 5000 [--early-stopping 3]   # validation-chosen
python scripts/accuracy.py --data-dir DIR --recipes default --val-size 5000 --early-stopping 3 --epochs 30

With --val-size, each run holds out a stratified validation set; the reported test accuracy is that of
the epoch with the lowest validation loss (best.npz), so the test set takes no part in any choice.
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
    from bench import BenchError, cpu_name, results_path, write_results

    from gpunn.training.run import train

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="the MNIST folder (default: GPUNN_DATA_DIR or the cache)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--recipes", nargs="+", default=["default", "long", "classic"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--val-size", type=int, default=0, help="validation images held out (0: none)")
    parser.add_argument("--early-stopping", type=int, default=0, help="patience on validation loss (0: off)")
    parser.add_argument("--epochs", type=int, help="epoch budget (default: each recipe's own)")
    parser.add_argument("--out")
    parser.add_argument("--force", action="store_true", help="replace an existing results file")
    args = parser.parse_args()
    try:  # checked before the run, so a long run is not lost to a file that is there already
        path = results_path(args.out, args.force, prefix="accuracy-")
    except BenchError as exc:
        print(f"{Path(__file__).name}: {exc}", file=sys.stderr)
        return 1
    results = {
        "date": datetime.date.today().isoformat(),
        "host": socket.gethostname(),
        "cpu": cpu_name(),
        "dataset": args.dataset,
        "val_size": args.val_size,
        "early_stopping": args.early_stopping,
        "epochs": args.epochs,
        "recipes": {},
    }
    for recipe in args.recipes:
        runs = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as out:
                result = train(
                    out=Path(out) / "run",
                    recipe=recipe,
                    seed=seed,
                    dataset=args.dataset,
                    data_dir=args.data_dir,
                    val_size=args.val_size,
                    early_stopping=args.early_stopping,
                    epochs=args.epochs,
                    verbose=False,
                )
            run = {
                "seed": seed,
                "test_accuracy": result.test_accuracy,
                "train_seconds": round(sum(h["seconds"] for h in result.history), 2),
                "epochs": len(result.history),
            }
            chosen = ""
            if result.best is not None:  # the validation-chosen epoch: what best.npz holds
                run.update(
                    best_epoch=result.best_epoch,
                    val_accuracy=result.best["val_accuracy"],
                    chosen_test_accuracy=result.best["test_accuracy"],
                )
                chosen = (
                    f"; epoch {result.best_epoch} chosen on validation ({result.best['val_accuracy']:.2%}): "
                    f"test {result.best['test_accuracy']:.2%}"
                )
            runs.append(run)
            print(
                f"{recipe} seed {seed}: final test {result.test_accuracy:.2%} in {run['train_seconds']} s{chosen}",
                flush=True,
            )
        key = "chosen_test_accuracy" if args.val_size else "test_accuracy"
        accuracies = [r[key] for r in runs]
        results["recipes"][recipe] = {
            "runs": runs,
            "reported": key,
            "mean": statistics.mean(accuracies),
            "min": min(accuracies),
            "max": max(accuracies),
            "config": result.config.to_dict(),
        }
        print(
            f"{recipe}: mean {key.replace('_', ' ')} {statistics.mean(accuracies):.2%} over seeds {args.seeds}"
        )
    write_results(results, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
