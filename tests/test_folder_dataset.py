"""`--dataset FOLDER`: any four IDX files, classes counted from the labels (EMNIST-letters style 1..26)."""

from __future__ import annotations

import json
import math
import string

import numpy as np
import pytest
from idx_files import idx_bytes, write

from gpunn.checkpoint import load_model
from gpunn.cli.main import main
from gpunn.data import load_dataset
from gpunn.data.sources import FILES
from gpunn.errors import DataError

CLASSES, SIDE = 26, 12


def _images(labels: np.ndarray, seed: int) -> np.ndarray:
    """Class k (label k+1) lights pixel 5k..5k+2 brightly over faint noise: learnable in a few epochs."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, (len(labels), SIDE * SIDE), dtype=np.uint8)
    for row, label in enumerate(labels):
        images[row, 5 * (label - 1) : 5 * (label - 1) + 3] = 255
    return images.reshape(-1, SIDE, SIDE)


def letters_folder(folder, names: bool = True, drop: str | None = None):
    """EMNIST-letters-like IDX files: labels 1..26, 12x12 images; classes.txt with a..z when `names`."""
    folder.mkdir()
    for split, per_class in (("train", 12), ("test", 3)):
        labels = np.repeat(np.arange(1, CLASSES + 1), per_class)
        for kind, array in (("images", _images(labels, len(labels))), ("labels", labels)):
            file_name = FILES[(split, kind)]
            if file_name != drop:
                write(folder / file_name, idx_bytes(array), gz=True)
    if names:
        (folder / "classes.txt").write_text("\n".join(string.ascii_lowercase) + "\n")
    return folder


def test_labels_from_one_are_shifted_and_the_classes_counted(tmp_path):
    folder = letters_folder(tmp_path / "letters", names=False)
    data = load_dataset(str(folder), "test")
    assert data.n_classes == CLASSES
    assert data.labels.min() == 0 and data.labels.max() == CLASSES - 1  # 1..26 became 0..25
    assert data.class_names[0] == "1" and data.class_names[-1] == "26"  # the original labels
    assert data.images.shape == (CLASSES * 3, SIDE, SIDE)


def test_train_predict_and_evaluate_a_26_class_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    folder = letters_folder(tmp_path / "letters")
    argv = ["train", "--dataset", "letters", "--out", "run", "--hidden", "32", "--epochs", "6"]
    assert main([*argv, "--batch-size", "16", "--device", "cpu", "--quiet"]) == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"] == str(folder)  # absolute: resume and evaluate work from anywhere
    assert config["classes"] == list(string.ascii_lowercase)
    assert load_model(tmp_path / "run").out_features == CLASSES

    sample = _images(np.array([3, 26]), seed=99)  # the letters c and z
    np.save(tmp_path / "two.npy", sample)
    monkeypatch.chdir(tmp_path / "run")  # the recorded absolute path still finds the data
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "two.npy"), "--top", "1"]) == 0
    out = capsys.readouterr().out
    assert "two.npy[0]: c (" in out and "two.npy[1]: z (" in out, out
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    assert "on 78 samples" in capsys.readouterr().out
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "7", "--quiet"]) == 0
    assert load_model(tmp_path / "run").out_features == CLASSES


def test_a_folder_missing_a_file_is_one_line(tmp_path, capsys):
    letters_folder(tmp_path / "partial", drop=FILES[("test", "labels")])
    argv = ["train", "--dataset", str(tmp_path / "partial"), "--out", str(tmp_path / "r"), "--quiet"]
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "t10k-labels-idx1-ubyte (or .gz) missing" in lines[0], lines
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


def test_a_names_file_that_does_not_fit_the_labels_is_refused(tmp_path):
    folder = letters_folder(tmp_path / "letters")
    (folder / "classes.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"2 names for 26 classes \(labels 1\.\.26\)"):
        load_dataset(str(folder), "train")


def test_chance_level_is_judged_against_the_number_of_classes():
    from gpunn.training.stall import at_chance

    stuck_on_letters = {"loss": math.log(CLASSES), "train_accuracy": 1 / CLASSES}
    assert at_chance(stuck_on_letters, CLASSES)
    assert not at_chance(stuck_on_letters, 10)  # ln 26 = 3.26 is far from ln 10 = 2.30
