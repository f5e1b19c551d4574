"""Issue 25's classes of failure, each tested as a class: no command replaces a file it did not create, a
run that failed before its first checkpoint leaves nothing in the way, every hand-editable file is one line
naming file and field, resource bounds are one line, messages name the real cause and the caller's spelling
of the option, predict reads transparent drawings, warm_start refuses changed layers.

In-process CLI calls (gpunn.cli.main.main) on the digits dataset, 1 epoch, tiny layers: fast.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_hostile import _good, _header, _idx_folder, _members, _npy, _write, snapshot

from gpunn.cli.main import main
from gpunn.errors import GpunnError, cli_message
from gpunn.training.run import train

RUN_FILES = ("config.json", "checkpoint.npz", "metrics.jsonl", "best.npz")  # what gpunn train writes

TINY = ["--dataset", "digits", "--hidden", "8", "--batch-size", "64", "--epochs", "1", "--quiet"]


def run_cli(capsys, *argv) -> tuple[int, str]:
    """(exit status, stderr) of one in-process CLI call; a traceback fails the test."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit:
        status = exit.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return status, err


def one_line(capsys, code, argv, *needles, absent=()) -> str:
    status, err = run_cli(capsys, *argv)
    lines = err.strip().splitlines()
    assert status == code and len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    for word in absent:
        assert word not in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def done(tmp_path_factory) -> Path:
    """A finished 1-epoch digits run with a validation split: it has all four run files."""
    run = tmp_path_factory.mktemp("runs") / "done"
    train(out=run, dataset="digits", hidden=(8,), batch_size=64, epochs=1, val_size=100, verbose=False)
    assert all((run / name).is_file() for name in RUN_FILES)
    return run


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---- 1. no command replaces a file it did not create ---------------------------------------------------
def _writers(run: Path, target: Path) -> dict[str, list]:
    """Every command that writes a file the person names, aimed at `target`."""
    return {
        "plot": ["plot", run, "--output", target],
        "plot-weights": ["plot", run, "--weights", "--output", target],
        "export": ["export", run, "--onnx", target],
    }


@pytest.mark.parametrize("command", ["plot", "plot-weights", "export"])
@pytest.mark.parametrize("name", RUN_FILES)
@pytest.mark.parametrize("force", [False, True], ids=["", "force"])
def test_no_command_replaces_a_run_file_even_with_force(done, here, capsys, command, name, force):
    pytest.importorskip("onnx") if command == "export" else pytest.importorskip("matplotlib")
    run = here / "r"
    shutil.copytree(done, run)
    before = snapshot(run)
    argv = _writers(run, run / name)[command] + (["--force"] if force else [])
    one_line(capsys, 1, argv, str(run / name), "a file of the run")
    assert snapshot(run) == before


@pytest.mark.parametrize("command", ["plot", "plot-weights", "export"])
def test_an_existing_file_is_replaced_only_with_force(done, here, capsys, command):
    pytest.importorskip("onnx") if command == "export" else pytest.importorskip("matplotlib")
    target = here / "mine.out"
    target.write_bytes(b"keep")
    one_line(capsys, 1, _writers(done, target)[command], str(target), "already exists", "--force")
    assert target.read_bytes() == b"keep"
    assert run_cli(capsys, *_writers(done, target)[command], "--force")[0] == 0
    assert target.read_bytes() != b"keep" and not list(here.glob(".*.tmp"))


def test_evaluate_plot_does_not_replace_pictures_without_force(done, here, capsys):
    pytest.importorskip("matplotlib")
    shutil.copytree(done, here / "r")
    assert run_cli(capsys, "evaluate", here / "r", "--plot")[0] == 0
    before = snapshot(here / "r")
    one_line(capsys, 1, ["evaluate", here / "r", "--plot"], str(here / "r" / "confusion.png"), "--force")
    assert snapshot(here / "r") == before
    assert run_cli(capsys, "evaluate", here / "r", "--plot", "--force")[0] == 0


def test_a_folder_is_not_a_file_to_write(done, here, capsys):
    pytest.importorskip("matplotlib")
    (here / "d").mkdir()
    one_line(capsys, 1, ["plot", done, "--output", here / "d"], "is a folder")


def test_data_download_keeps_a_file_that_is_not_the_official_one(here, capsys, monkeypatch):
    (here / "data").mkdir()
    mine = here / "data" / "train-images-idx3-ubyte.gz"
    mine.write_bytes(b"my own file")
    monkeypatch.setenv("GPUNN_DATA_MIRRORS", "http://127.0.0.1:9/unreachable")  # nothing may be fetched
    one_line(capsys, 1, ["data", "download", "--data-dir", here / "data"], str(mine), "--force")
    assert mine.read_bytes() == b"my own file" and sorted(os.listdir(here / "data")) == [mine.name]


def test_data_download_force_replaces_it_with_the_checked_file(here, capsys, monkeypatch, data_root):
    (here / "data").mkdir()
    mine = here / "data" / "train-images-idx3-ubyte.gz"
    mine.write_bytes(b"my own file")
    monkeypatch.setenv("GPUNN_DATA_MIRRORS", (data_root / "mnist").as_uri())  # a local mirror: file://
    assert run_cli(capsys, "data", "download", "--data-dir", here / "data", "--force")[0] == 0
    assert mine.read_bytes() == (data_root / "mnist" / mine.name).read_bytes()


def test_the_write_lands_only_where_no_file_is(tmp_path):
    from gpunn.atomic import atomic_writer

    path = tmp_path / "out.png"
    with pytest.raises(FileExistsError), atomic_writer(path, replace=False) as fh:
        fh.write(b"new")
        path.write_bytes(b"appeared meanwhile")
    assert path.read_bytes() == b"appeared meanwhile" and os.listdir(tmp_path) == ["out.png"]


# ---- 4. a run that failed before its first checkpoint ---------------------------------------------------
def test_a_run_that_diverged_in_epoch_one_leaves_the_folder_as_it_was(here, capsys):
    (here / "mine").mkdir()
    for folder in ("new", "mine"):
        argv = ["train", "--out", folder, *TINY, "--weight-decay", "1e300"]
        one_line(capsys, 1, argv, "no checkpoint was written")
    assert not (here / "new").exists() and os.listdir(here / "mine") == []
    assert run_cli(capsys, "train", "--out", "mine", *TINY)[0] == 0  # the same command again just works


def test_a_folder_whose_run_was_killed_before_its_first_save_is_reused(done, here, capsys):
    (here / "r").mkdir()
    for name in ("config.json", "best.npz"):  # what a SIGKILL in epoch 1 leaves (best.npz: between two saves)
        shutil.copy(done / name, here / "r")
    line = one_line(capsys, 1, ["train", "--resume", "r", "--quiet"], "holds no checkpoint.npz", "--out r")
    assert "already holds a run" not in line
    with pytest.raises(GpunnError) as info:
        train(resume="r", verbose=False)
    assert "out='r'" in str(info.value) and "--" not in str(info.value)
    assert run_cli(capsys, "train", "--out", "r", *TINY)[0] == 0  # the way forward both named
    assert (here / "r" / "checkpoint.npz").is_file()
    assert not (
        here / "r" / "best.npz"
    ).exists()  # the dead run's, not this run's (it has no validation split)


# ---- 5. every hand-editable file: one line naming file and field ------------------------------------------
RECORD = '{"epoch": 1, "loss": 0.5, "train_accuracy": 0.9, "test_accuracy": 0.9, "lr": 0.1, "seconds": 1, "samples_per_second": 9}'
BAD_METRICS = {
    "empty-object": ("{}", "line 1: 'epoch' must be 1"),
    "a-number": ("5", "line 1: expected an object"),
    "a-list": ("[1, 2]", "line 1: expected an object"),
    "not-json": ("{epoch", "line 1: Expecting property name"),
    "missing-loss": (RECORD.replace('"loss": 0.5, ', ""), "line 1: 'loss' is missing"),
    "loss-a-string": (RECORD.replace("0.5", '"low"'), "line 1: 'loss' must be a number >= 0, got 'low'"),
    "loss-nan": (RECORD.replace("0.5", "NaN"), "'loss' must be a number >= 0"),
    "accuracy-above-one": (RECORD.replace('"test_accuracy": 0.9', '"test_accuracy": 90'), "'test_accuracy'"),
    "epoch-a-bool": (RECORD.replace('"epoch": 1', '"epoch": true'), "'epoch' must be 1"),
    "second-line-skips": (
        RECORD + "\n" + RECORD.replace('"epoch": 1', '"epoch": 3'),
        "line 2: 'epoch' must be 2",
    ),
    "no-epochs": ("\n", "holds no epochs"),
}


@pytest.mark.parametrize("case", BAD_METRICS, ids=list(BAD_METRICS))
def test_plot_names_the_metrics_line_and_field(done, here, capsys, case):
    pytest.importorskip("matplotlib")
    text, needle = BAD_METRICS[case]
    shutil.copytree(done, here / "r")
    (here / "r" / "metrics.jsonl").write_text(text + "\n")
    one_line(capsys, 1, ["plot", here / "r"], str(here / "r" / "metrics.jsonl"), needle)
    assert not (here / "r" / "curves.png").exists()


BAD_HEADER_FIELDS = {
    "config": [],
    "data": {"dir": 5},
    "classes": "digits",
    "written_on": 0,
    "gpunn_version": 1,
    "epoch": -1,
    "step_in_epoch": "0",
    "loss_sum": "x",
    "correct": 1.5,
    "history": [1, 2],
    "rng_state": [],
    "best_val_loss": "low",
    "best_epoch": None,
    "stopped_early": "no",
}


@pytest.mark.parametrize("field", BAD_HEADER_FIELDS)
@pytest.mark.parametrize("command", ["evaluate", "predict", "resume", "export", "plot-weights"])
def test_every_header_field_is_checked_where_any_command_reads_it(done, here, capsys, field, command):
    if command == "export":
        pytest.importorskip("onnx")
    if command == "plot-weights":
        pytest.importorskip("matplotlib")
    (here / "bad").mkdir()
    members = _members(done / "checkpoint.npz")
    header = {**_header(members), field: BAD_HEADER_FIELDS[field]}
    members["header.npy"] = _npy(np.frombuffer(json.dumps(header).encode(), np.uint8))
    target = _write(here / "bad" / "checkpoint.npz", members)
    np.save(here / "x.npy", np.zeros((8, 8), np.uint8))
    argv = {
        "evaluate": ["evaluate", target],
        "predict": ["predict", target, here / "x.npy"],
        "resume": ["train", "--resume", here / "bad", "--epochs", "5", "--quiet"],
        "export": ["export", target, "--onnx", here / "m.onnx"],
        "plot-weights": ["plot", target, "--weights", "--output", here / "w.png"],
    }[command]
    one_line(capsys, 1, argv, str(target), f"malformed checkpoint header: {field!r} must be")


def test_config_json_is_for_people_gpunn_never_reads_it(done, here, capsys):
    shutil.copytree(done, here / "r")
    (here / "r" / "config.json").write_text("[]")  # edited, even broken: the checkpoint is what resumes
    assert run_cli(capsys, "evaluate", here / "r")[0] == 0
    assert run_cli(capsys, "train", "--resume", here / "r", "--epochs", "2", "--quiet")[0] == 0
    assert json.loads((here / "r" / "config.json").read_text())["epochs"] == 2  # rewritten by the run


# ---- 6. resource bounds -----------------------------------------------------------------------------------
def test_a_giant_hidden_layer_is_refused_before_any_data_or_allocation(here, capsys):
    argv = ["train", "--out", "r", "--dataset", "digits", "--hidden", "1000000000", "--quiet"]
    one_line(capsys, 2, argv, "--hidden 1000000000", "4,000,000,002 parameters", "268,435,456")
    assert not (here / "r").exists()
    with pytest.raises(GpunnError) as info:
        train(out="r", dataset="digits", hidden=(10**9,), verbose=False)
    assert str(info.value).startswith("hidden= 1000000000 makes") and "--" not in str(info.value)


def test_the_exact_size_is_checked_once_the_data_is_known(here, capsys):
    # 20M parameters at the least, 375M with digits' 64 inputs and 10 classes: past the cap
    argv = ["train", "--out", "r", "--dataset", "digits", "--hidden", "5000000", "--quiet"]
    one_line(capsys, 2, argv, "--hidden 5000000", "with 64 inputs and 10 classes", "375,000,010")
    assert not (here / "r").exists()


def test_one_cap_for_models_built_trained_and_loaded(done, here, monkeypatch):
    import gpunn.nn.model
    from gpunn.checkpoint import load_checkpoint
    from gpunn.errors import CheckpointError, ShapeError
    from gpunn.nn.model import mlp

    monkeypatch.setattr(gpunn.nn.model, "MAX_PARAMETERS", 100)
    with pytest.raises(ShapeError, match="would have 110 parameters"):
        mlp([10, 10], backend="cpu")  # (10 + 1) * 10
    with pytest.raises(GpunnError, match="hidden= 8 makes a model of 610 parameters with 64 inputs"):
        train(out="r", dataset="digits", hidden=(8,), epochs=1, verbose=False)
    with pytest.raises(CheckpointError, match="more than 100 parameters"):
        load_checkpoint(done)


def test_any_memory_error_is_one_line_naming_the_size(here, capsys, monkeypatch):
    import gpunn.training.run

    asked = "Unable to allocate 3.73 GiB for an array with shape (1000000000,) and data type float32"

    def no_memory(*args, **kwargs):
        raise MemoryError(asked)

    monkeypatch.setattr(gpunn.training.run, "mlp", no_memory)
    one_line(capsys, 1, ["train", "--out", "r", *TINY], f"out of memory: {asked}", "--hidden")
    with pytest.raises(GpunnError) as info:
        train(out="r", dataset="digits", epochs=1, verbose=False)
    assert isinstance(info.value, MemoryError) and asked in str(info.value) and "--" not in str(info.value)
    assert not (here / "r").exists()


def test_a_memory_error_in_evaluate_is_one_line(done, capsys, monkeypatch):
    import gpunn.training.evaluate

    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 8.00 EiB")

    monkeypatch.setattr(gpunn.training.evaluate, "evaluate", no_memory)
    one_line(capsys, 1, ["evaluate", done], "out of memory: Unable to allocate 8.00 EiB")


# ---- 8. messages name the real cause and the caller's spelling ---------------------------------------------
def _trained_on_a_folder(here: Path, dataset_is_the_folder: bool) -> list[str]:
    images, labels = _good(n=40, side=4)
    folder = _idx_folder(here / "data", images, labels, images[:10], labels[:10])
    where = ["--dataset" if dataset_is_the_folder else "--data-dir", str(folder)]
    assert main(["train", "--out", "r", *where, "--epochs", "1", "--quiet"]) == 0
    folder.rename(here / "moved")
    return where


@pytest.mark.parametrize("dataset_is_the_folder", [True, False], ids=["--dataset DIR", "--data-dir DIR"])
def test_a_moved_data_folder_is_reported_as_moved_and_data_dir_finds_it(here, capsys, dataset_is_the_folder):
    _trained_on_a_folder(here, dataset_is_the_folder)
    for argv in (["evaluate", "r"], ["train", "--resume", "r", "--epochs", "2", "--quiet"]):
        one_line(
            capsys,
            1,
            argv,
            f"{here / 'data'}",
            "is gone (moved",
            "--data-dir",
            absent=("damaged", "malformed"),
        )
        assert run_cli(capsys, *argv, "--data-dir", here / "moved")[0] == 0
    assert (
        run_cli(capsys, "train", "--resume", "r", "--epochs", "3", "--quiet")[0] == 0
    )  # it recorded the new place


def test_resume_of_the_checkpoint_file_continues_its_run(done, here, capsys):
    shutil.copytree(done, here / "r")
    assert (
        run_cli(capsys, "train", "--resume", here / "r" / "checkpoint.npz", "--epochs", "2", "--quiet")[0]
        == 0
    )
    assert len((here / "r" / "metrics.jsonl").read_text().splitlines()) == 2
    argv = ["train", "--resume", here / "r" / "best.npz", "--epochs", "3", "--quiet"]
    one_line(capsys, 2, argv, "--resume takes a run folder", f"--resume {here / 'r'}", absent=("--out",))


# (setting, Python value, CLI value): each one wrong; the Python error names `key=`, the CLI's `--key`
EVERY_SETTING = [
    ("epochs", 0, "0"),
    ("batch_size", 0, "0"),
    ("lr", -1.0, "-1"),
    ("optimizer", "rmsprop", "rmsprop"),
    ("momentum", 2.0, "2"),
    ("weight_decay", -1.0, "-1"),
    ("schedule", "linear", "linear"),
    ("hidden", (0,), "0"),
    ("activation", "swish", "swish"),
    ("init", "zeros", "zeros"),
    ("seed", -1, "-1"),
    ("dataset", "cifar", "cifar"),
    ("val_size", -1, "-1"),
    ("val_size", 100000, "100000"),
    ("early_stopping", -1, "-1"),
    ("dropout", 1.5, "1.5"),
    ("recipe", "fancy", "fancy"),
    ("device", "tpu", "tpu"),
    ("dtype", "float16", "float16"),
]


@pytest.mark.parametrize(
    "key, python_value, cli_value", EVERY_SETTING, ids=[f"{k}={v}" for k, v, _ in EVERY_SETTING]
)
def test_every_setting_is_named_as_the_caller_spelled_it(here, capsys, key, python_value, cli_value):
    flag = "--" + key.replace("_", "-")
    base = {"out": "r", "dataset": "digits", "epochs": 1, "hidden": (4,), "verbose": False}
    with pytest.raises(GpunnError) as info:
        train(**{**base, key: python_value})
    assert f"{key}=" in str(info.value) and "--" not in str(info.value), str(info.value)
    flags = {"--out": "r", "--dataset": "digits", "--epochs": "1", "--hidden": "4", flag: cli_value}
    argv = ["train", "--quiet", *(word for pair in flags.items() for word in pair)]
    status, err = run_cli(capsys, *argv)
    assert status != 0 and flag in err and f"{key}=" not in err, err
    assert not (here / "r").exists()


def test_data_dir_and_out_are_named_as_the_caller_spelled_them(here, capsys):
    (here / "afile").write_text("x")
    with pytest.raises(GpunnError) as info:
        train(out="r", dataset="mnist", data_dir="nowhere", epochs=1, verbose=False)
    assert "data_dir=" in str(info.value) and "--" not in str(info.value)
    assert "--data-dir" in one_line(capsys, 1, ["train", "--out", "r", "--data-dir", "nowhere", "--quiet"])
    with pytest.raises(GpunnError) as info:
        train(out="afile", dataset="digits", epochs=1, verbose=False)
    assert "out=" in str(info.value) and "--" not in str(info.value)
    assert cli_message(info.value).endswith("--out")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--val-size", "100,100000"], "--val-size 100000 does not fit digits's 1437 training images"),
        (["--hidden", "16/5000000"], "--hidden 5000000 makes a model of 375,000,010 parameters"),
    ],
    ids=["val-size", "hidden"],
)
def test_sweep_checks_every_value_against_the_data_before_the_first_run(here, capsys, argv, needle):
    one_line(capsys, 2, ["sweep", "--dataset", "digits", "--epochs", "1", "--out", "s", *argv], needle)
    assert not (here / "s").exists()


# ---- 9. predict reads what a person drew --------------------------------------------------------------------
def _digit() -> np.ndarray:
    from gpunn.data import load_dataset

    return load_dataset("digits", "test").images[3]  # white on black, 8x8 uint8


def _rgba_png(path: Path, grey: int, alpha: np.ndarray) -> Path:
    from PIL import Image

    rgba = np.zeros((*alpha.shape, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = grey, alpha
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def test_transparency_is_composited_over_the_page_the_strokes_stand_out_on():
    from PIL import Image

    from gpunn.cli.predict_inputs import composited

    alpha = np.array([[0, 128, 255]], np.uint8)
    dark, light = (
        Image.fromarray(np.dstack([np.full((1, 3, 3), g, np.uint8), alpha]), "RGBA") for g in (0, 255)
    )
    # black strokes over white: 255 (1 - a); white strokes over black: 255 a
    np.testing.assert_array_equal(composited(dark), [[255, 127, 0]])
    np.testing.assert_array_equal(composited(light), [[0, 128, 255]])
    opaque = Image.fromarray(
        np.dstack([np.full((1, 3, 3), 200, np.uint8), np.full((1, 3), 255, np.uint8)]), "RGBA"
    )
    np.testing.assert_array_equal(composited(opaque), [[200, 200, 200]])  # nothing transparent: as before


def test_predict_reads_strokes_drawn_in_the_alpha_channel(done, here, capsys):
    pytest.importorskip("PIL")
    from PIL import Image

    digit = _digit()
    Image.fromarray(digit).save(here / "plain.png")
    _rgba_png(here / "light.png", 255, digit)  # white strokes, transparent background
    _rgba_png(here / "dark.png", 0, digit)  # black strokes: what most drawing apps save
    one_line(capsys, 1, ["predict", done, here / "dark.png"], "dark digit on a light background", "--invert")
    assert main(["predict", str(done), str(here / "plain.png"), str(here / "light.png"), "--top", "10"]) == 0
    assert main(["predict", str(done), str(here / "dark.png"), "--invert", "--top", "10"]) == 0
    plain, light, dark = (line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines())
    assert plain == light == dark  # the same pixels reached the model each time


# ---- 10. scikit-learn's warm_start: the fitted layers may not change under it --------------------------------
@pytest.mark.parametrize("new_sizes", [(7,), (5, 5)], ids=["wider", "deeper"])
@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_warm_start_refuses_changed_hidden_layer_sizes(new_sizes, how):
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from gpunn.sklearn import MLPClassifier

    rng = np.random.default_rng(0)
    X, y = rng.random((40, 4)), np.arange(40) % 3
    model = MLPClassifier(hidden_layer_sizes=(5,), warm_start=how == "warm_start", max_iter=3, solver="sgd")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        fitted = [c.copy() for c in model.coefs_]
        model.set_params(hidden_layer_sizes=new_sizes)
        with pytest.raises(ValueError, match=r"`hidden_layer_sizes` is the same as in the previous call to fit. "
                           rf"Previously got \[5\], now \[{', '.join(map(str, new_sizes))}\]"):  # fmt: skip
            model.fit(X, y) if how == "warm_start" else model.partial_fit(X, y)
        assert all(np.array_equal(a, b) for a, b in zip(model.coefs_, fitted, strict=True))  # untouched
        model.set_params(hidden_layer_sizes=(5,))
        model.fit(X, y) if how == "warm_start" else model.partial_fit(X, y)  # the same layers continue
        model.set_params(hidden_layer_sizes=new_sizes, warm_start=False)
        model.fit(X, y)  # a fresh fit takes the new layers
    assert [c.shape[1] for c in model.coefs_[:-1]] == list(new_sizes)
