"""Training end to end: determinism, resume equivalence, signals, corrupt checkpoints, divergence."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gpunn.backend import parse_device
from gpunn.checkpoint import load_checkpoint
from gpunn.errors import CheckpointError, RunFolderError, TrainingDivergedError
from gpunn.nn.model import Sequential
from gpunn.training.config import ConfigError
from gpunn.training.run import train

DIGITS = dict(dataset="digits", batch_size=32, verbose=False)


def gpunn_cli(*args, env=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "gpunn", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


def metrics_without_time(history):
    return [{k: v for k, v in h.items() if k not in ("seconds", "samples_per_second")} for h in history]


def test_digits_end_to_end_on_each_backend(tmp_path, device):
    result = train(out=tmp_path / "run", device=device, epochs=8, **DIGITS)
    assert result.test_accuracy > 0.93
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 9))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"] == "digits" and config["hidden"] == [128, 64]
    assert parse_device(config["device"]) == parse_device(device)  # "cuda" is recorded as "cuda:0"
    assert load_checkpoint(tmp_path / "run").header["epoch"] == 8


def test_same_seed_same_metrics_and_numpy_equals_strict(tmp_path):
    a = train(out=tmp_path / "a", epochs=3, **DIGITS)
    b = train(out=tmp_path / "b", epochs=3, **DIGITS)
    s = train(out=tmp_path / "s", epochs=3, device="strict", **DIGITS)
    assert (
        metrics_without_time(a.history) == metrics_without_time(b.history) == metrics_without_time(s.history)
    )
    for x, y in zip(a.model.get_weights(), s.model.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)
    other = train(out=tmp_path / "c", epochs=3, seed=1, **DIGITS)
    assert metrics_without_time(other.history) != metrics_without_time(a.history)


@pytest.mark.parametrize("dtype, atol", [("float64", 0.0), ("float32", 1e-6)])
def test_resume_matches_an_uninterrupted_run(tmp_path, dtype, atol):
    full = train(
        out=tmp_path / "full",
        epochs=4,
        dtype=dtype,
        optimizer="adam",
        lr=0.003,
        schedule="constant",
        **DIGITS,
    )
    train(
        out=tmp_path / "part",
        epochs=2,
        dtype=dtype,
        optimizer="adam",
        lr=0.003,
        schedule="constant",
        **DIGITS,
    )
    resumed = train(resume=tmp_path / "part", epochs=4, verbose=False)
    for x, y in zip(full.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4]
    assert len((tmp_path / "part" / "metrics.jsonl").read_text().splitlines()) == 4


def test_checkpoint_moves_across_devices(tmp_path):
    cpu = train(out=tmp_path / "cpu", epochs=2, dtype="float64", schedule="constant", **DIGITS)
    model = Sequential.load(tmp_path / "cpu", "strict")
    resumed_on_strict = train(resume=tmp_path / "cpu", epochs=3, device="strict", verbose=False)
    reference = train(out=tmp_path / "ref", epochs=3, dtype="float64", schedule="constant", **DIGITS)
    for x, y in zip(reference.model.get_weights(), resumed_on_strict.model.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)
    assert model.backend.device == "strict"
    back = model.to("cpu")
    for x, y in zip(cpu.model.get_weights(), back.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_resume_without_a_device_continues_on_the_runs_device_and_an_explicit_one_wins(tmp_path, capsys):
    train(out=tmp_path / "r", epochs=1, device="strict", **DIGITS)
    resumed = train(resume=tmp_path / "r", epochs=2)
    assert resumed.model.backend.device == "strict"
    assert capsys.readouterr().out.startswith("gpunn: device strict (from the run's checkpoint) |")
    moved = train(resume=tmp_path / "r", epochs=3, device="cpu", verbose=False)
    assert moved.model.backend.device == "cpu"
    assert load_checkpoint(tmp_path / "r").header["written_on"] == "cpu"


def test_refuses_to_overwrite_a_run_and_to_change_settings_on_resume(tmp_path):
    train(out=tmp_path / "r", epochs=1, **DIGITS)
    before = (tmp_path / "r" / "checkpoint.npz").read_bytes()
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(out=tmp_path / "r", epochs=1, **DIGITS)
    with pytest.raises(ConfigError, match="cannot change hidden"):
        train(resume=tmp_path / "r", hidden=(32,), verbose=False)
    assert (tmp_path / "r" / "checkpoint.npz").read_bytes() == before


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "mismatched"])
def test_bad_checkpoint_is_one_line_and_left_untouched(tmp_path, damage):
    train(out=tmp_path / "r", epochs=1, **DIGITS)
    path = tmp_path / "r" / "checkpoint.npz"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(data[:200] + bytes(255 - b for b in data[200:400]) + data[400:])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        with np.load(path) as archive:
            arrays = {k: archive[k] for k in archive.files}
        arrays["param.0"] = arrays["param.0"][:10]
        np.savez(path, **arrays)
    damaged = path.read_bytes()
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    for command in (["train", "--resume", str(tmp_path / "r")], ["evaluate", str(path)]):
        result = gpunn_cli(*command)
        assert result.returncode != 0
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, (
            result.stderr
        )
    assert path.read_bytes() == damaged


def test_a_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, header=np.array([{"format": "gpunn-checkpoint"}], dtype=object))
    with pytest.raises(CheckpointError, match="corrupt|not a gpunn"):
        load_checkpoint(path)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from gpunn.training import loop as train_loop

    real_step = train_loop.Loop._step
    calls = {"n": 0}

    def poisoned(self, rows, *args):
        calls["n"] += 1
        loss_sum, correct = real_step(self, rows, *args)
        return (loss_sum * float("nan") if calls["n"] > 45 else loss_sum), correct  # 45 steps = epoch 1

    monkeypatch.setattr(train_loop.Loop, "_step", poisoned)
    with pytest.raises(TrainingDivergedError, match="last good checkpoint \\(epoch 1\\)"):
        train(out=tmp_path / "r", epochs=3, **DIGITS)
    checkpoint = load_checkpoint(tmp_path / "r")
    assert checkpoint.header["epoch"] == 1 and all(np.isfinite(w).all() for w in checkpoint.weights)


def test_cli_huge_lr_diverges_cleanly(tmp_path):
    result = gpunn_cli(
        "train",
        "--dataset",
        "digits",
        "--lr",
        "1e6",
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "r"),
        "--optimizer",
        "sgd",
        "--schedule",
        "constant",
    )
    assert result.returncode == 1
    assert "loss became nan" in result.stderr and "smaller --lr" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


LONG_EPOCHS = 30  # digits, batch 8: ~50 ms an epoch, so a signal lands mid-run


def start_long_run(out: Path, extra=()):
    args = [
        sys.executable,
        "-m",
        "gpunn",
        "train",
        "--dataset",
        "digits",
        "--epochs",
        str(LONG_EPOCHS),
        "--batch-size",
        "8",
        "--dtype",
        "float64",
        "--out",
        str(out),
        *extra,
    ]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_epochs(process, count: int):
    for _ in range(count + 1):
        line = process.stdout.readline()
        assert line, process.stderr.read()


@pytest.mark.subprocess
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_mid_epoch_and_resume_is_exact(tmp_path, signum, code):
    process = start_long_run(tmp_path / "r")
    wait_for_epochs(process, 2)
    time.sleep(0.05)  # land somewhere inside epoch 3
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert f"gpunn train --resume {tmp_path / 'r'}" in err and len(err.strip().splitlines()) == 1
    saved = load_checkpoint(tmp_path / "r")
    stopped_at = (saved.header["epoch"], saved.header["step_in_epoch"])
    assert stopped_at >= (2, 0)
    resumed = train(
        resume=tmp_path / "r", verbose=False
    )  # same onecycle schedule: the lr picks up where it was
    reference = train(
        out=tmp_path / "ref",
        epochs=LONG_EPOCHS,
        batch_size=8,
        dtype="float64",
        dataset="digits",
        verbose=False,
    )
    for x, y in zip(reference.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.subprocess
def test_kill_9_loses_at_most_one_epoch(tmp_path):
    process = start_long_run(tmp_path / "r")
    wait_for_epochs(process, 3)
    process.kill()
    process.wait(timeout=30)
    saved = load_checkpoint(tmp_path / "r")  # the atomic write left a valid file
    assert saved.header["epoch"] >= 3 and saved.header["step_in_epoch"] == 0
    resumed = train(resume=tmp_path / "r", epochs=saved.header["epoch"] + 1, verbose=False)
    assert resumed.history[-1]["epoch"] == saved.header["epoch"] + 1


def test_real_mnist_one_epoch(tmp_path, data_root):
    result = train(out=tmp_path / "m", dataset="mnist", data_dir=data_root, epochs=1, verbose=False)
    assert result.test_accuracy > 0.90


def test_cli_output_names_device_and_summarises(tmp_path):
    result = gpunn_cli(
        "train",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--out",
        str(tmp_path / "r"),
        env={"GPUNN_DEVICE": "strict"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("gpunn: device strict (from GPUNN_DEVICE) | float32 | digits")
    assert "17,226 parameters" in lines[0]
    assert lines[1].startswith("epoch   1/2") and "samples/s" in lines[1] and "test " in lines[1]
    assert lines[-1].startswith("done: 2 epochs") and "6*N*D = 6 x 17,226 x 2,874" in lines[-1]
    assert "GFLOP/s" in lines[-1]


def test_classic_recipe_settings(tmp_path):
    result = train(out=tmp_path / "r", recipe="classic", dataset="digits", epochs=1, verbose=False)
    config = result.config
    assert (config.optimizer, config.lr, config.batch_size, config.schedule, config.init) == (
        "sgd",
        0.1,
        128,
        "constant",
        "he",
    )
    assert config.hidden == (128, 64)


def rewrite_header(path: Path, change) -> None:
    """Rewrite a checkpoint's JSON header in place (as an older gpunn would have written it)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = json.loads(np.load(io.BytesIO(members["header.npy"])).tobytes().decode())
    change(header)
    buffer = io.BytesIO()
    np.save(buffer, np.frombuffer(json.dumps(header).encode(), dtype=np.uint8))
    members["header.npy"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_a_run_saved_under_the_old_recipe_name_seed_resumes_as_classic(tmp_path):
    train(out=tmp_path / "r", recipe="classic", dataset="digits", epochs=1, verbose=False)
    rewrite_header(tmp_path / "r" / "checkpoint.npz", lambda header: header["config"].update(recipe="seed"))
    assert load_checkpoint(tmp_path / "r").header["config"]["recipe"] == "seed"
    resumed = train(resume=tmp_path / "r", epochs=2, verbose=False)
    assert resumed.config.recipe == "classic" and len(resumed.history) == 2


def test_the_old_recipe_name_as_a_setting_names_the_new_one():
    with pytest.raises(ConfigError, match="recipe 'seed' is now called 'classic': use recipe='classic'"):
        train(recipe="seed", dataset="digits", epochs=1, verbose=False)


@pytest.mark.gpu
def test_one_epoch_on_cuda_agrees_with_numpy(tmp_path):
    from conftest import require_usable

    require_usable("cuda")
    cpu = train(out=tmp_path / "cpu", device="cpu", epochs=1, **DIGITS)
    gpu = train(out=tmp_path / "gpu", device="cuda", epochs=1, **DIGITS)
    # float32 on different BLAS libraries (and fused kernels): the same trajectory to within 1e-4
    assert abs(cpu.history[0]["loss"] - gpu.history[0]["loss"]) < 1e-4
    assert abs(cpu.test_accuracy - gpu.test_accuracy) <= 2 / 360
    for x, y in zip(cpu.model.get_weights(), gpu.model.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, atol=1e-4)
