"""A battery of hostile inputs (issue #16): CLI, Python API, files, signals and concurrent runs.

Every case asserts the exit status, exactly one line on stderr that names the problem and the fix, no
traceback, and that every run folder that existed before is byte-for-byte unchanged.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from idx_files import idx_bytes

from gpunn.cli.main import main
from gpunn.errors import GpunnError

pytestmark = pytest.mark.subprocess  # the CLI battery: one gpunn process per case

TINY = ["--dataset", "digits", "--hidden", "16", "--batch-size", "64", "--quiet"]


def snapshot(*roots: Path) -> dict[str, bytes]:
    """Every file under `roots` (hidden ones too) with its bytes and mode: a failed command changes none."""
    found = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file():
                found[str(path)] = (path.read_bytes(), path.stat().st_mode)
    return found


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished 2-epoch digits run and a weights-only Model.save() file."""
    from gpunn.training.run import train

    root = tmp_path_factory.mktemp("runs")
    result = train(out=root / "done", dataset="digits", hidden=(16,), batch_size=64, epochs=2, verbose=False)
    result.model.save(root / "weights.npz")
    return root


@pytest.fixture
def env(runs, tmp_path, monkeypatch):
    """Work in a fresh folder (default run names land there); the shared runs must stay untouched."""
    monkeypatch.chdir(tmp_path)
    before = snapshot(runs)
    yield runs, tmp_path
    assert snapshot(runs) == before, "a failed command changed a run folder that existed before"


def one_line_error(capsys, argv, code, *needles):
    """Run the CLI in-process; assert `code`, one stderr line naming the problem, no traceback."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exit:  # argparse's usage errors exit from inside parse_args
        status = exit.code
    err = capsys.readouterr().err
    assert status == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---- CLI settings: each refused before anything is written ------------------------------------------
BAD_SETTINGS = [
    (["--epochs", "0"], 2, "--epochs must be an integer >= 1"),
    (["--epochs", "-3"], 2, "--epochs must be an integer >= 1"),
    (["--epochs", "x"], 2, "invalid int value"),
    (["--epochs", "1.5"], 2, "invalid int value"),
    (["--batch-size", "0"], 2, "--batch-size must be an integer >= 1"),
    (["--lr", "-1"], 2, "--lr must be a finite number > 0"),
    (["--lr", "0"], 2, "--lr must be a finite number > 0"),
    (["--lr", "nan"], 2, "--lr must be a finite number"),
    (["--lr", "inf"], 2, "--lr must be a finite number"),
    (["--lr", "fast"], 2, "invalid float value"),
    (["--momentum", "1"], 2, "--momentum must be a finite number in [0, 1)"),
    (["--momentum", "-0.1"], 2, "--momentum must be a finite number in [0, 1)"),
    (["--weight-decay", "-1"], 2, "--weight-decay must be a finite number >= 0"),
    (["--weight-decay", "nan"], 2, "--weight-decay must be a finite number"),
    (["--optimizer", "rmsprop"], 2, "--optimizer must be one of"),
    (["--optimizer", "nesterov", "--momentum", "0"], 2, "--optimizer nesterov needs --momentum > 0"),
    (["--schedule", "linear"], 2, "--schedule must be one of"),
    (["--activation", "softmax"], 2, "--activation must be one of"),
    (["--activation", "swish"], 2, "--activation must be one of"),
    (["--init", "zeros"], 2, "--init must be one of"),
    (["--dataset", "cifar"], 2, "--dataset must be one of"),
    (["--hidden", "0"], 2, "--hidden takes comma-separated positive integers"),
    (["--hidden", "a,b"], 2, "--hidden takes comma-separated positive integers"),
    (["--hidden", ""], 2, "--hidden takes comma-separated positive integers"),
    (["--hidden", "128,-1"], 2, "--hidden takes comma-separated positive integers"),
    (["--hidden", "12.7"], 2, "--hidden takes comma-separated positive integers"),
    (["--seed", "-1"], 2, "--seed must be an integer >= 0"),
    (["--recipe", "fancy"], 2, "unknown recipe 'fancy'"),
    (["--device", "tpu"], 2, "tpu"),
    (["--dtype", "float16"], 2, "float16"),
    (["--bogus"], 2, "unrecognized arguments"),
]


@pytest.mark.parametrize("extra, code, needle", BAD_SETTINGS, ids=[" ".join(c[0]) for c in BAD_SETTINGS])
def test_bad_train_setting(env, capsys, extra, code, needle):
    _, here = env
    one_line_error(capsys, ["train", "--out", here / "r", *TINY, *extra], code, needle)
    assert not (here / "r").exists()


# ---- run folders: claimed once, never mixed -----------------------------------------------------------
def test_out_is_a_file(env, capsys):
    _, here = env
    (here / "f").write_text("x")
    one_line_error(capsys, ["train", "--out", here / "f", *TINY, "--epochs", "1"], 3, "is a file", "--out")
    assert (here / "f").read_text() == "x"


@pytest.mark.parametrize(
    "out, needle",
    [
        ("f/sub", "Not a directory"),
        ("a" * 300, "File name too long"),
        ("/proc/gpunn-run", "/proc/gpunn-run"),
    ],
    ids=["under-a-file", "name-too-long", "unwritable"],
)
def test_out_unusable(env, capsys, out, needle):
    _, here = env
    (here / "f").write_text("x")
    one_line_error(capsys, ["train", "--out", out, *TINY, "--epochs", "1"], 1, needle)


def test_out_holds_a_run(env, capsys):
    runs, _ = env
    line = one_line_error(capsys, ["train", "--out", runs / "done", *TINY], 3, "already holds a run")
    assert f"--resume {runs / 'done'}" in line


@pytest.mark.parametrize(
    "extra, code, needle",
    [
        (["--epochs", "2"], 2, "already trained 2 of 2 epochs"),
        (["--epochs", "1"], 2, "--epochs greater than 2 (asked for 1)"),
        ([], 2, "already trained 2 of 2 epochs"),
        (["--hidden", "32", "--epochs", "3"], 2, "cannot change hidden"),
        (["--lr", "0.5", "--epochs", "3"], 2, "cannot change lr"),
        (["--out", "elsewhere", "--epochs", "3"], 2, "drop --out elsewhere"),
    ],
    ids=["finished", "fewer-epochs", "no-epochs", "hidden", "lr", "other-out"],
)
def test_bad_resume(env, capsys, extra, code, needle):
    runs, here = env
    one_line_error(capsys, ["train", "--resume", runs / "done", "--quiet", *extra], code, needle)
    assert not (here / "elsewhere").exists()


def test_resume_of_nothing(env, capsys):
    _, here = env
    one_line_error(capsys, ["train", "--resume", here / "none", "--quiet"], 1, "no checkpoint there")


def test_resume_of_a_weights_only_file(env, capsys):
    runs, here = env
    (here / "w").mkdir()
    shutil.copy(runs / "weights.npz", here / "w" / "checkpoint.npz")
    one_line_error(capsys, ["train", "--resume", here / "w", "--epochs", "5"], 1, "cannot be resumed")


def test_resume_of_a_cuda_run_where_cuda_is_unusable_names_the_way_out(env, capsys):
    from test_train import rewrite_header

    from gpunn.backend.cuda_probe import cuda_status

    if cuda_status(0)[0]:
        pytest.skip("CUDA works here: the run's saved device is usable")
    runs, here = env
    shutil.copytree(runs / "done", here / "r")
    rewrite_header(here / "r" / "checkpoint.npz", lambda header: header.update(written_on="cuda:0"))
    before = snapshot(here / "r")
    argv = ["train", "--resume", here / "r", "--epochs", "3", "--quiet"]
    one_line_error(
        capsys, argv, 1, "was trained on cuda:0, which cannot run here", "resume with --device cpu"
    )
    assert snapshot(here / "r") == before  # nothing trained on another device behind the user's back


def test_default_names_are_unique(env):
    from gpunn.training.runlock import default_run_folder

    names = {default_run_folder("digits") for _ in range(5)}  # same second: -2, -3, ... suffixes
    assert len(names) == 5 and all(n.is_dir() for n in names)


def test_stale_temp_files_are_removed_on_resume_and_files_are_not_private(env):
    runs, here = env
    shutil.copytree(runs / "done", here / "r")
    stale = here / "r" / ".checkpoint.npz.abc123.tmp"  # what a SIGKILL mid-save leaves
    stale.write_bytes(b"partial")
    from gpunn.training.run import train

    old = os.umask(0o022)
    try:
        train(resume=here / "r", epochs=3, verbose=False)
    finally:
        os.umask(old)
    assert not stale.exists()
    for name in ("checkpoint.npz", "config.json", "metrics.jsonl"):
        assert (here / "r" / name).stat().st_mode & 0o777 == 0o644


# ---- checkpoints: only what the format defines, sizes checked before reading ----------------------
def _members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _header(members) -> dict:
    return json.loads(np.load(io.BytesIO(members["header.npy"])).tobytes())


def _with_header(members, **changes) -> dict:
    header = {**_header(members), **changes}
    header = {k: v for k, v in header.items() if v is not None}
    return {**members, "header.npy": _npy(np.frombuffer(json.dumps(header).encode(), np.uint8))}


def _huge_member(members):
    fake = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        fake, {"descr": "<f4", "fortran_order": False, "shape": (10**7, 10**7)}
    )
    return {**members, "param.0.npy": fake.getvalue() + b"\0" * 64}


BAD_CHECKPOINTS = {
    "garbage": lambda m: b"not a zip at all",
    "empty": lambda m: b"",
    "no-architecture": lambda m: _with_header(m, architecture=None),
    "unknown-layer": lambda m: _with_header(m, architecture=[{"type": "Conv2D"}]),
    "bad-dense-sizes": lambda m: _with_header(m, architecture=[{"type": "Dense", "in": -1, "out": 10}]),
    "wrong-format": lambda m: _with_header(m, format="other"),
    "future-version": lambda m: _with_header(m, version=99),
    "extra-member": lambda m: {**m, "payload.npy": _npy(np.zeros(3))},
    "huge-declared-shape": _huge_member,
    "shape-mismatch": lambda m: {**m, "param.0.npy": _npy(np.zeros((3, 3), np.float32))},
    "missing-param": lambda m: {k: v for k, v in m.items() if k != "param.1.npy"},
    "object-array": lambda m: {**m, "param.1.npy": _npy(np.array([object()] * 16))},
    "nan-weights": lambda m: {**m, "param.1.npy": _npy(np.full(16, np.nan, np.float32))},
    "no-header": lambda m: {k: v for k, v in m.items() if k != "header.npy"},
}


@pytest.mark.parametrize("damage", BAD_CHECKPOINTS, ids=list(BAD_CHECKPOINTS))
@pytest.mark.parametrize("command", ["evaluate", "predict", "resume"])
def test_bad_checkpoint(env, capsys, damage, command):
    runs, here = env
    made = BAD_CHECKPOINTS[damage](_members(runs / "done" / "checkpoint.npz"))
    (here / "bad").mkdir()
    target = here / "bad" / "checkpoint.npz"
    target.write_bytes(made) if isinstance(made, bytes) else _write(target, made)
    np.save(here / "x.npy", np.zeros((8, 8), np.uint8))
    argv = {
        "evaluate": ["evaluate", target],
        "predict": ["predict", target, here / "x.npy"],
        "resume": ["train", "--resume", here / "bad", "--epochs", "5", "--quiet"],
    }[command]
    one_line_error(capsys, argv, 1, str(target))


def test_unused_giant_member_is_not_read(env, capsys):
    """A small file that inflates to gigabytes is refused from its directory entry, before any reading."""
    runs, here = env
    members = _members(runs / "done" / "checkpoint.npz")
    with zipfile.ZipFile(here / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        with archive.open("array.order.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "<i8", "fortran_order": False, "shape": (10**8,)}
            )
            chunk = b"\0" * (1 << 20)
            for _ in range(800):
                fh.write(chunk)
    one_line_error(capsys, ["evaluate", here / "bomb.npz"], 1, "bomb.npz")


# ---- predict inputs ----------------------------------------------------------------------------------
def _png(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


def _text(path):
    path.write_text("hello")
    return path


def _huge_npy(path):
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f8", "fortran_order": False, "shape": (2**23, 2**20)}
        )
        fh.write(b"\0" * 64)
    return path


INPUTS = {
    "zero-d": (lambda d: np.save(d / "in.npy", np.array(3.0)) or d / "in.npy", "expected numbers"),
    "huge-header": (lambda d: _huge_npy(d / "in.npy"), "does not match the file's size"),
    "wrong-shape": (lambda d: np.save(d / "in.npy", np.zeros((5, 7))) or d / "in.npy", "cannot be read"),
    "nan": (lambda d: np.save(d / "in.npy", np.full(64, np.nan)) or d / "in.npy", "finite and in [0, 1]"),
    "above-one": (lambda d: np.save(d / "in.npy", np.full(64, 2.0)) or d / "in.npy", "finite and in [0, 1]"),
    "objects": (
        lambda d: np.save(d / "in.npy", np.array([object()]), allow_pickle=True) or d / "in.npy",
        "not a readable .npy",
    ),
    "strings": (lambda d: np.save(d / "in.npy", np.array(["a"] * 64)) or d / "in.npy", "expected numbers"),
    "inverted": (
        lambda d: _png(d / "in.png", np.pad(np.zeros((4, 4), np.uint8), 2, constant_values=255)),
        "pass --invert",
    ),
    "big-png": (lambda d: _png(d / "in.png", np.zeros((100, 120), np.uint8)), "is 120x100, expected"),
    "not-a-png": (lambda d: _text(d / "in.png"), "not a readable image"),
    "not-idx": (lambda d: _text(d / "in.idx"), "in.idx"),
    "missing": (lambda d: d / "nothing.npy", "file not found"),
    "a-folder": (lambda d: (d / "dir.npy").mkdir() or d / "dir.npy", "file not found"),
}


@pytest.mark.parametrize("case", INPUTS, ids=list(INPUTS))
def test_bad_predict_input(env, capsys, case):
    runs, here = env
    make, needle = INPUTS[case]
    one_line_error(capsys, ["predict", runs / "done", make(here)], 1, needle)


def test_decompression_bomb_png(env, capsys, monkeypatch):
    from PIL import Image

    runs, here = env
    path = _png(here / "bomb.png", np.zeros((8, 8), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 16)  # an 8x8 image is then a "bomb", as 20000x20000 is
    one_line_error(capsys, ["predict", runs / "done", path], 1, "not a readable image")


@pytest.mark.parametrize("top", ["0", "-1", "100"])
def test_bad_top(env, capsys, top):
    runs, here = env
    np.save(here / "x.npy", np.zeros((8, 8), np.uint8))
    one_line_error(
        capsys, ["predict", runs / "done", here / "x.npy", "--top", top], 1, "--top must be between 1 and 10"
    )


def test_inverted_digit_is_read_with_invert(env, capsys):
    from gpunn.data import load_dataset

    runs, here = env
    digit = load_dataset("digits", "test").images[0]
    np.save(here / "dark.npy", 255 - digit)
    assert main(["predict", str(runs / "done"), str(here / "dark.npy"), "--invert", "--top", "1"]) == 0
    np.save(here / "light.npy", digit)
    assert main(["predict", str(runs / "done"), str(here / "light.npy"), "--top", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split(": ")[1].split()[0] == out[1].split(": ")[1].split()[0]


# ---- data files ----------------------------------------------------------------------------------------
def _idx_folder(folder: Path, train_images, train_labels, test_images, test_labels) -> Path:
    folder.mkdir(exist_ok=True)
    for name, array in [
        ("train-images-idx3-ubyte.gz", train_images),
        ("train-labels-idx1-ubyte.gz", train_labels),
        ("t10k-images-idx3-ubyte.gz", test_images),
        ("t10k-labels-idx1-ubyte.gz", test_labels),
    ]:
        data = array if isinstance(array, bytes) else idx_bytes(array)
        (folder / name).write_bytes(gzip.compress(data, mtime=0))
    return folder


def _good(n=20, side=4):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, side, side)), rng.integers(0, 10, n)


DATA = {
    "zero-samples": (lambda: (np.zeros((0, 4, 4)), np.zeros(0), *_good()), "no usable images"),
    "zero-pixels": (lambda: (np.zeros((5, 0, 0)), np.zeros(5), *_good()), "no usable images"),
    "test-size-differs": (lambda: (*_good(side=4), *_good(side=5)), "same image size"),
    "label-count": (lambda: (_good()[0], np.zeros(3), *_good()), "labels"),
    "label-range": (lambda: (_good()[0], np.full(20, 12), *_good()), "outside [0, 10)"),
    "bad-magic": (lambda: (b"\x01\x02\x03\x04", _good()[1], *_good()), "bad magic"),
    "truncated": (lambda: (idx_bytes(_good()[0])[:-5], _good()[1], *_good()), "truncated"),
}


@pytest.mark.parametrize("case", DATA, ids=list(DATA))
def test_bad_data_files(env, capsys, case):
    _, here = env
    make, needle = DATA[case]
    folder = _idx_folder(here / "data", *make())
    one_line_error(
        capsys, ["train", "--out", here / "r", "--data-dir", folder, "--epochs", "1", "--quiet"], 1, needle
    )
    assert not (here / "r" / "checkpoint.npz").exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--data-dir", "nowhere"], "not found in nowhere"),
        (["--data-dir", "afile"], "not found in afile"),
        (["--dataset", "fashion-mnist", "--data-dir", "empty"], "not found in empty"),
    ],
)
def test_missing_data(env, capsys, argv, needle):
    _, here = env
    (here / "afile").write_text("x")
    (here / "empty").mkdir()
    one_line_error(capsys, ["train", "--out", "r", "--epochs", "1", "--quiet", *argv], 1, needle)


def test_data_verify_of_a_folder_in_place_of_a_file(env, capsys):
    _, here = env
    (here / "d" / "t10k-labels-idx1-ubyte.gz").mkdir(parents=True)
    one_line_error(capsys, ["data", "verify", "--data-dir", here / "d"], 1, "t10k-labels")


@pytest.mark.parametrize(
    "dataset, layout, needle",
    [
        ("fashion-mnist", {}, "official mnist train images file, not the fashion-mnist"),
        ("mnist", {"train-images-idx3-ubyte.gz": "t10k-images-idx3-ubyte.gz"}, "official mnist test images"),
    ],
    ids=["mnist-as-fashion", "swapped-train-test"],
)
def test_official_files_of_another_dataset_or_split(env, capsys, data_root, dataset, layout, needle):
    _, here = env
    folder = here / "data"
    folder.mkdir()
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        os.symlink(data_root / "mnist" / layout.get(name, name), folder / name)
    argv = ["train", "--dataset", dataset, "--data-dir", folder, "--out", "r", "--epochs", "1", "--quiet"]
    one_line_error(capsys, argv, 1, needle)


def test_run_remembers_its_data_folder(env, capsys, tmp_path):
    """--resume, evaluate and the Ctrl-C hint work without --data-dir (GPUNN_DATA_DIR unset, no cache)."""
    _, here = env
    images, labels = _good(n=40, side=4)
    folder = _idx_folder(here / "data", images, labels, images[:10], labels[:10])
    assert main(["train", "--out", "r", "--data-dir", str(folder), "--epochs", "1", "--quiet"]) == 0
    config = json.loads((here / "r" / "config.json").read_text())
    assert config["data"]["dir"] == str(folder.resolve()) and len(config["data"]["files"]) == 4
    os.environ.pop("GPUNN_DATA_DIR", None)
    os.environ["XDG_CACHE_HOME"] = str(tmp_path / "no-cache")  # a fall back to the cache would download
    try:
        assert main(["train", "--resume", "r", "--epochs", "2", "--quiet"]) == 0
        assert main(["evaluate", "r"]) == 0
        (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels[10:20])))
        capsys.readouterr()
        before = snapshot(here / "r")
        one_line_error(
            capsys, ["train", "--resume", "r", "--epochs", "3", "--quiet"], 1, "not the file run r"
        )
        assert snapshot(here / "r") == before
    finally:
        del os.environ["XDG_CACHE_HOME"]


# ---- sweeps and plots -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv, code, needle",
    [
        (["--lr", "0.1,-1"], 2, "--lr must be a finite number > 0, got -1.0"),
        (["--epochs", "1,x"], 1, "--epochs takes a comma-separated list of integers, got 'x'"),
        (["--optimizer", "sgd,rmsprop"], 2, "--optimizer must be one of"),
        (["--hidden", "16/0"], 2, "--hidden takes comma-separated positive integers"),
        (["--batch-size", "64,0"], 2, "--batch-size must be an integer >= 1"),
    ],
)
def test_sweep_grid_checked_before_the_first_run(env, capsys, argv, code, needle):
    _, here = env
    one_line_error(capsys, ["sweep", "--dataset", "digits", "--out", here / "s", *argv], code, needle)
    assert not (here / "s").exists()


@pytest.mark.parametrize(
    "argv, needle",
    [
        (
            ["sweep", "--dataset", "digits", "--epochs", "1", "--out", "/proc/gpunn-sweep"],
            "/proc/gpunn-sweep",
        ),
        (["data", "download", "--data-dir", "/proc/gpunn-data"], "/proc/gpunn-data"),
        (["train", "--out", "r", "--epochs", "1", "--data-dir", "/proc/gpunn-data"], "/proc/gpunn-data"),
    ],
    ids=["sweep-out", "download-dir", "data-dir"],
)
def test_unwritable_or_missing_folders(env, capsys, argv, needle):
    one_line_error(capsys, argv, 1, needle)


def test_sweep_into_a_used_folder(env, capsys):
    runs, _ = env
    one_line_error(
        capsys, ["sweep", "--dataset", "digits", "--epochs", "1", "--out", runs], 3, "already holds files"
    )


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["RUN", "--output", "/proc/curves.png"], "/proc/"),
        (["RUN", "--output", "RUN/metrics.jsonl/x.png"], "metrics.jsonl"),
        (["nothing"], "no metrics.jsonl"),
    ],
)
def test_bad_plot(env, capsys, argv, needle):
    runs, _ = env
    argv = [str(a).replace("RUN", str(runs / "done")) for a in argv]
    one_line_error(capsys, ["plot", *argv], 1, needle)


# ---- errors in the middle of a run ----------------------------------------------------------------
def test_full_disk_while_checkpointing(env, capsys, monkeypatch):
    _, here = env
    import gpunn.checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(here / "r" / "checkpoint.npz"))

    monkeypatch.setattr(gpunn.checkpoint, "atomic_writer", full)
    one_line_error(
        capsys, ["train", "--out", "r", *TINY, "--epochs", "1"], 1, "No space left", "disk is full"
    )


def test_weight_decay_not_lr_is_blamed(env, capsys):
    one_line_error(
        capsys,
        ["train", "--out", "r", *TINY, "--epochs", "1", "--weight-decay", "1e300"],
        1,
        "smaller --weight-decay",
    )


def test_loss_stuck_at_chance_stops_the_run(env, capsys):
    _, here = env
    line = one_line_error(
        capsys,
        ["train", "--out", "r", "--dataset", "digits", "--epochs", "5", "--lr", "2", "--quiet"],
        1,
        "stuck at chance level",
        "--lr 0.5",
    )
    history = [json.loads(x) for x in (here / "r" / "metrics.jsonl").read_text().splitlines()]
    assert len(history) < 5, line  # stopped early, with the epochs it did saved


def test_default_lr_scales_down_with_small_batches():
    from gpunn.training.config import TrainConfig

    assert TrainConfig.from_recipe(batch_size=16).lr == pytest.approx(0.2 * 16 / 128)
    assert TrainConfig.from_recipe(batch_size=512).lr == 0.2
    assert TrainConfig.from_recipe(batch_size=16, lr=0.3).lr == 0.3


# ---- the Python API: keyword names, no raw TypeError ------------------------------------------------
API = [
    (dict(hidden="128,64"), "hidden= takes a sequence of layer sizes"),
    (dict(hidden=128), "hidden= takes a sequence of layer sizes"),
    (dict(hidden=(12.7, 3.2)), "hidden= needs positive integer sizes"),
    (dict(hidden=()), "hidden= needs positive integer sizes"),
    (dict(momentum="0.9"), "momentum= must be a finite number"),
    (dict(lr="0.1"), "lr= must be a finite number"),
    (dict(epochs=True), "epochs= must be an integer"),
    (dict(epochs=2.0), "epochs= must be an integer"),
    (dict(batch_size=np.float64(8)), "batch_size= must be an integer"),
    (dict(seed=-1), "seed= must be an integer >= 0"),
    (dict(out=5), "out= must be a path"),
    (dict(data_dir=5), "data_dir= must be a path"),
    (dict(resume=5), "resume= must be a path"),
    (dict(optimizer="nesterov", momentum=0), "optimizer='nesterov' needs momentum= > 0"),
    (dict(dataset=3), "dataset= must be one of"),
]


@pytest.mark.parametrize("kwargs, needle", API, ids=[str(k) for k, _ in API])
def test_python_api_names_keywords(env, kwargs, needle):
    from gpunn.training.run import train

    with pytest.raises(GpunnError) as info:
        train(**{"out": "r", "dataset": "digits", "epochs": 1, "verbose": False, **kwargs})
    assert needle in str(info.value) and "--" not in str(info.value)


def test_python_api_resume_elsewhere_names_keywords(env):
    from gpunn.training.run import train

    runs, _ = env
    with pytest.raises(GpunnError, match="resume= continues the run") as info:
        train(resume=runs / "done", out="elsewhere", epochs=3, verbose=False)
    assert "--" not in str(info.value)


def test_python_api_takes_numpy_numbers(env):
    from gpunn.training.run import train

    result = train(
        out="r",
        dataset="digits",
        epochs=np.int64(1),
        batch_size=np.int32(64),
        lr=np.float32(0.1),
        hidden=np.array([16]),
        verbose=False,
    )
    config = json.loads(Path("r/config.json").read_text())
    assert config["epochs"] == 1 and config["hidden"] == [16] and len(result.history) == 1


# ---- processes: concurrency, pipes, signals -----------------------------------------------------------
def _gpunn(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "gpunn", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def _slow_run(out, epochs=400):
    return _gpunn("train", "--dataset", "digits", "--batch-size", "8", "--epochs", epochs, "--out", out)


def test_second_writer_of_a_run_is_refused(tmp_path):
    first = _slow_run(tmp_path / "r")
    assert first.stdout.readline()  # it holds the folder now
    assert first.stdout.readline()  # and has saved epoch 1: a run is there (before, the lock alone says no)
    second = _gpunn("train", *TINY, "--out", tmp_path / "r")
    resume = _gpunn("train", "--resume", tmp_path / "r", "--epochs", "500")
    for process, needle in (
        (second, "already holds a run"),
        (resume, "being written by another gpunn process"),
    ):
        _, err = process.communicate(timeout=120)
        assert process.returncode == 3, err
        assert len(err.strip().splitlines()) == 1 and needle in err, err
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["batch_size"] == 8  # the first run's settings, not the second's


def test_two_default_named_runs_started_together_get_two_folders(tmp_path):
    processes = [_gpunn("train", *TINY, "--epochs", "1", cwd=tmp_path) for _ in range(2)]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2
    for folder in folders:
        assert (folder / "checkpoint.npz").is_file() and (folder / "config.json").is_file()


def test_closed_stdout_does_not_stop_training(tmp_path):
    process = _gpunn("train", *TINY[:-1], "--epochs", "6", "--out", tmp_path / "r")
    process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    err = process.stderr.read()
    assert process.wait(timeout=120) == 0, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    history = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert len(history) == 6


def test_interrupt_while_importing_is_one_line(tmp_path):
    """A Ctrl-C that lands while NumPy loads (slow on a cold disk) is caught inside gpunn's main."""
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent(
            """
            import builtins
            real = builtins.__import__
            def hook(name, *args, **kwargs):
                if name == "numpy":
                    raise KeyboardInterrupt
                return real(name, *args, **kwargs)
            builtins.__import__ = hook
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-m", "gpunn", "info"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip() == "gpunn: interrupted"


def test_sigterm_then_resume_while_nothing_else_runs(tmp_path):
    process = _slow_run(tmp_path / "r", epochs=50)
    process.stdout.readline()
    process.stdout.readline()
    time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and len(err.strip().splitlines()) == 1, err
    resumed = _gpunn("train", "--resume", tmp_path / "r", "--epochs", "2", "--quiet")
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode in (0, 2), err  # 2: the SIGTERM came after epoch 2 had finished
    assert "Traceback" not in err
