"""A weights-only file (Model.save()) says what it was trained on, so `gpunn evaluate` needs no --dataset;
one that cannot say is one line naming --dataset, never a download of MNIST."""

from __future__ import annotations

from gpunn.checkpoint import load_checkpoint
from gpunn.cli.main import main
from gpunn.nn.model import Sequential, mlp
from gpunn.training.run import train


def test_a_saved_trained_model_records_its_dataset_and_evaluates_without_dataset(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = train(dataset="digits", epochs=2, out="runs/digits", verbose=False)
    result.model.save("digits.npz")  # the README's API example
    header = load_checkpoint("digits.npz").header
    assert header["dataset"] == "digits" and header["classes"] == [str(i) for i in range(10)]
    assert "config" not in header  # still weights only: not a run that could be resumed
    capsys.readouterr()
    assert main(["evaluate", "digits.npz"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digits test set, model from digits.npz")
    # loading and saving again keeps the record
    Sequential.load("digits.npz").save("again.npz")
    assert load_checkpoint("again.npz").header["dataset"] == "digits"


def test_a_file_that_cannot_say_its_dataset_asks_for_dataset(tmp_path, capsys):
    mlp([64, 16, 10]).save(tmp_path / "by-hand.npz")  # built by hand: trained on nothing gpunn knows
    assert main(["evaluate", str(tmp_path / "by-hand.npz")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "holds weights only and does not say what they were trained on" in err
    assert "name the test data with --dataset (mnist, fashion-mnist, digits or a folder of IDX files)" in err
    assert main(["evaluate", str(tmp_path / "by-hand.npz"), "--dataset", "digits"]) == 0


def test_best_npz_records_the_runs_data_too(tmp_path):
    train(dataset="digits", epochs=1, val_size=100, out=tmp_path / "r", verbose=False)
    header = load_checkpoint(tmp_path / "r" / "best.npz").header
    assert header["classes"] == [str(i) for i in range(10)]
    assert header["data"] == load_checkpoint(tmp_path / "r").header["data"]  # where evaluate reads again
