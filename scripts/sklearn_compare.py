"""gpunn.sklearn side by side with scikit-learn's MLPs: same data, hidden sizes and settings, several seeds.

Tasks: digits, breast_cancer, a sparse TF-IDF text task (a corpus built here), a regression task
(make_regression) and MNIST (with --data-dir). Reports test accuracy / R^2 and fit seconds per seed.

python scripts/sklearn_compare.py [--data-dir DIR] [--device cpu] [--seeds 0 1 2] [--quick] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime
import socket
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = {
    "sport": "match goal team score league coach player season win stadium referee",
    "science": "experiment theory molecule energy physics data lab research cell quantum",
    "cooking": "recipe oven flour butter sauce garlic bake simmer salt pepper dough",
    "travel": "flight hotel beach passport museum train island tour luggage map",
}
COMMON = "the a of and to in is it that for on with as this was very really some".split()


def text_corpus(n_per_class: int, seed: int):
    """Short documents: topic words mixed with common words and words of other topics (label noise)."""
    rng = np.random.default_rng(seed)
    topics = list(WORDS)
    docs, labels = [], []
    for label, topic in enumerate(topics):
        own = WORDS[topic].split()
        other = [w for t in topics if t != topic for w in WORDS[t].split()]
        for _ in range(n_per_class):
            words = list(rng.choice(own, 4)) + list(rng.choice(other, 3)) + list(rng.choice(COMMON, 8))
            rng.shuffle(words)
            docs.append(" ".join(words))
            labels.append(label)
    return docs, np.array(labels)


def tasks(data_dir: str | None, quick: bool):
    """name -> (kind, X_train, X_test, y_train, y_test)."""
    from sklearn.datasets import load_breast_cancer, load_digits, make_regression
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    out = {}
    X, y = load_digits(return_X_y=True)
    out["digits"] = (
        "classification",
        *train_test_split(X / 16.0, y, test_size=0.25, random_state=0, stratify=y),
    )
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    out["breast_cancer"] = (
        "classification",
        scaler.transform(X_train),
        scaler.transform(X_test),
        y_train,
        y_test,
    )
    docs, y = text_corpus(100 if quick else 500, seed=0)
    d_train, d_test, y_train, y_test = train_test_split(docs, y, test_size=0.25, random_state=0, stratify=y)
    tfidf = TfidfVectorizer().fit(d_train)
    out["tfidf_text"] = ("classification", tfidf.transform(d_train), tfidf.transform(d_test), y_train, y_test)
    X, y = make_regression(n_samples=500 if quick else 2000, n_features=20, noise=10.0, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y / np.std(y), test_size=0.25, random_state=0)
    out["regression"] = ("regression", X_train, X_test, y_train, y_test)
    if data_dir:
        from gpunn.data import load_dataset

        train_set = load_dataset("mnist", "train", data_dir)
        test_set = load_dataset("mnist", "test", data_dir)
        n = 5000 if quick else len(train_set.labels)
        out["mnist"] = (
            "classification",
            train_set.features[:n].astype(np.float32) / 255,
            test_set.features.astype(np.float32) / 255,
            train_set.labels[:n],
            test_set.labels,
        )
    return out


def main() -> int:
    from bench import BenchError, cpu_name, results_path, write_results
    from sklearn import neural_network

    import gpunn.sklearn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", help="MNIST folder (the task is left out without it)")
    parser.add_argument("--device", default="cpu", help="gpunn's device: cpu, cuda, cuda:N, strict")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="small data and few epochs (a smoke run)")
    parser.add_argument("--out")
    parser.add_argument("--force", action="store_true", help="replace an existing results file")
    args = parser.parse_args()
    try:  # checked before the run, so a long run is not lost to a file that is there already
        path = results_path(args.out, args.force, prefix="sklearn-compare-")
    except BenchError as exc:
        print(f"{Path(__file__).name}: {exc}", file=sys.stderr)
        return 1
    settings = {"hidden_layer_sizes": (128, 64), "max_iter": 5 if args.quick else 50, "batch_size": 128}
    results = {
        "date": datetime.date.today().isoformat(),
        "host": socket.gethostname(),
        "cpu": cpu_name(),
        "device": args.device,
        "settings": {**settings, "seeds": args.seeds, "quick": args.quick},
        "tasks": {},
    }
    for name, (kind, X_train, X_test, y_train, y_test) in tasks(args.data_dir, args.quick).items():
        cls_name = "MLPClassifier" if kind == "classification" else "MLPRegressor"
        row = {}
        ours = getattr(gpunn.sklearn, cls_name)
        for library, make, extra in (
            ("scikit-learn", getattr(neural_network, cls_name), {}),
            ("gpunn", ours, {"device": args.device}),
        ):
            runs = []
            for seed in args.seeds:
                model = make(random_state=seed, **settings, **extra)
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter(
                        "ignore"
                    )  # ConvergenceWarning at the fixed max_iter, both libraries
                    model.fit(X_train, y_train)
                seconds = time.perf_counter() - start
                runs.append(
                    {
                        "seed": seed,
                        "score": float(model.score(X_test, y_test)),
                        "fit_seconds": round(seconds, 3),
                    }
                )
            scores = [r["score"] for r in runs]
            row[library] = {
                "metric": "accuracy" if kind == "classification" else "r2",
                "runs": runs,
                "mean": statistics.mean(scores),
                "std": statistics.pstdev(scores),
                "mean_fit_seconds": round(statistics.mean(r["fit_seconds"] for r in runs), 3),
            }
            print(
                f"{name:14s} {library:12s} {row[library]['metric']} {row[library]['mean']:.4f} "
                f"± {row[library]['std']:.4f}  fit {row[library]['mean_fit_seconds']} s",
                flush=True,
            )
        results["tasks"][name] = row
    write_results(results, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
