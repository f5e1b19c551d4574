"""Choose the exponential schedule's decay per epoch on a validation split (never on the test set).

python scripts/tune_decay.py --data-dir DIR/mnist [--decays 0.5 0.6 0.7 0.8 0.85] [--seeds 0]

Each candidate trains the default recipe as `gpunn train --val-size 5000 --early-stopping 3 --epochs 30`
does (55,000 train, 5,000 validation), with gpunn.training.schedules.EXPONENTIAL_DECAY set to it, and is
ranked by the validation loss of its best epoch; the test accuracy is recorded, not used.
"""

from __future__ import annotations

import argparse
import datetime
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from bench import cpu_name, write_results

    import gpunn.training.schedules as schedules
    from gpunn.training.run import train

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--decays", type=float, nargs="+", default=[0.5, 0.6, 0.7, 0.8, 0.85])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--out")
    args = parser.parse_args()
    rows = []
    for decay in args.decays:
        schedules.EXPONENTIAL_DECAY = decay  # this process only: lr_at reads it at every step
        for seed in args.seeds:
            with tempfile.TemporaryDirectory() as out:
                result = train(
                    out=Path(out) / "run", seed=seed, val_size=5000, early_stopping=3, epochs=30,
                    schedule="exponential", data_dir=args.data_dir, verbose=False,
                )  # fmt: skip
            best = result.best
            rows.append(
                dict(decay=decay, seed=seed, epochs=len(result.history), best_epoch=result.best_epoch,
                     val_loss=best["val_loss"], val_accuracy=best["val_accuracy"],
                     best_test_accuracy=best["test_accuracy"], final_test_accuracy=result.test_accuracy)
            )  # fmt: skip
            print(rows[-1], flush=True)
    chosen = min(rows, key=lambda r: r["val_loss"])["decay"]
    print(f"lowest validation loss: decay {chosen}")
    results = {
        "date": datetime.date.today().isoformat(),
        "host": socket.gethostname(),
        "cpu": cpu_name(),
        "runs": rows,
        "chosen": chosen,
    }
    write_results(results, args.out, prefix="exponential-decay-")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
