"""Peak resident memory added by loading MNIST train + test (uint8): prints one JSON line.

Usage: python scripts/measure_load_memory.py DATA_DIR
"""

import json
import sys

import numpy as np  # noqa: F401  (imported before the baseline so it is not counted)

from gpunn.data import load_dataset
from gpunn.procinfo import peak_rss_bytes


def peak_mb() -> float:
    return peak_rss_bytes() / 2**20


if __name__ == "__main__":
    before = peak_mb()
    train = load_dataset("mnist", "train", data_dir=sys.argv[1])
    test = load_dataset("mnist", "test", data_dir=sys.argv[1])
    after = peak_mb()
    print(
        json.dumps(
            {
                "added_peak_rss_mb": round(after - before, 1),
                "array_mb": round(
                    (train.images.nbytes + train.labels.nbytes + test.images.nbytes + test.labels.nbytes)
                    / 2**20,
                    1,
                ),
            }
        )
    )
