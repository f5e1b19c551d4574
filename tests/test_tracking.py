"""TensorBoard and MLflow loggers (gpunn/tracking/, `--tensorboard DIR`, `--mlflow [URI]`): what they write is
read back with TensorBoard's own EventAccumulator and MLflow's own MlflowClient and equals the run's history;
a resume continues the same log; nothing is written outside the folders given."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_train import gpunn_cli

import gpunn
from gpunn.cli.main import build_parser, main
from gpunn.cli.sweep import index_command, run_sweep
from gpunn.cli.tracking import EXPERIMENT, GROUP_TAG, Tracking
from gpunn.tracking import MLflowLogger, TensorBoardLogger, TrackingError
from gpunn.tracking.mlflow_logger import RUN_FOLDER_TAG, store_uri
from gpunn.training.metrics import read_metrics

SETTINGS = dict(dataset="digits", batch_size=32, hidden=(16,), verbose=False)
RUN_FILES = {"checkpoint.npz", "config.json", "metrics.jsonl"}
# set by `import mlflow` and unset by its telemetry thread when MLflow's servers cannot be reached: MLflow's
# own doing, at a moment of its choosing (mlflow/telemetry/client.py _set_telemetry_client)
MLFLOW_TELEMETRY = "_MLFLOW_TELEMETRY_SESSION_ID"


def environment() -> dict:
    return {k: v for k, v in os.environ.items() if k != MLFLOW_TELEMETRY}


def metric_names(record: dict) -> list[str]:
    return [key for key in record if key != "epoch"]


def tensorboard_series(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def expected_tensorboard(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard keeps scalars as float32."""
    return {k: [(r["epoch"], float(np.float32(r[k]))) for r in history] for k in metric_names(history[0])}


def mlflow_series(client: MlflowClient, run_id: str, names) -> dict[str, list[tuple[int, float]]]:
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in names}


def expected_mlflow(history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    return {k: [(r["epoch"], r[k]) for r in history] for k in metric_names(history[0])}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One MLflow store folder for the module (a new SQLite store takes seconds to set up); each test logs
    into an experiment of its own."""
    folder = tmp_path_factory.mktemp("store") / "mlruns"
    MLflowLogger(folder, experiment="setup").prepare()
    return folder


def runs_of(store: Path, experiment: str):
    client = MlflowClient(tracking_uri=store_uri(store)[0])
    found = client.get_experiment_by_name(experiment)
    return client, ([] if found is None else client.search_runs([found.experiment_id]))


def test_tensorboard_events_are_the_history_and_a_resume_continues_at_its_epoch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = gpunn.train(out="run", epochs=2, val_size=100, callbacks=[TensorBoardLogger("tb")], **SETTINGS)
    assert set(metric_names(first.history[0])) >= {
        "loss",
        "train_accuracy",
        "test_accuracy",
        "val_loss",
        "lr",
    }
    assert tensorboard_series(tmp_path / "tb") == expected_tensorboard(first.history)
    resumed = gpunn.train(resume="run", epochs=3, verbose=False, callbacks=[TensorBoardLogger("tb")])
    assert tensorboard_series(tmp_path / "tb") == expected_tensorboard(resumed.history)  # 1, 2, 3 once each
    assert len(list((tmp_path / "tb").iterdir())) == 2  # the resume wrote a file of its own
    assert sorted(os.listdir(tmp_path)) == ["run", "tb"]
    assert set(os.listdir(tmp_path / "run")) == RUN_FILES | {"best.npz"}


@pytest.mark.slow  # MLflow: its import and a new SQLite store take seconds
def test_mlflow_logs_params_metrics_and_checkpoint_and_a_resume_continues_the_run(
    tmp_path, monkeypatch, store
):
    import mlflow

    monkeypatch.chdir(tmp_path)
    variables, tracking_uri = environment(), mlflow.get_tracking_uri()
    first = gpunn.train(
        out="run", epochs=2, val_size=100, callbacks=[MLflowLogger(store, experiment="resume")], **SETTINGS
    )
    client, (run,) = runs_of(store, "resume")
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.tags[RUN_FOLDER_TAG] == str((tmp_path / "run").resolve())
    settings = first.config.to_dict()
    assert run.data.params == {
        k: ",".join(map(str, v)) if k == "hidden" else str(v) for k, v in settings.items()
    }
    assert mlflow_series(client, run.info.run_id, metric_names(first.history[0])) == expected_mlflow(
        first.history
    )
    artifacts = Path(run.info.artifact_uri.removeprefix("file://"))
    assert artifacts.is_relative_to(store)  # beside the SQLite file, not in the working folder
    for name in ("checkpoint.npz", "best.npz"):
        assert (artifacts / name).read_bytes() == (tmp_path / "run" / name).read_bytes()

    resumed = gpunn.train(
        resume="run", epochs=3, verbose=False, callbacks=[MLflowLogger(store, experiment="resume")]
    )
    client, (again,) = runs_of(store, "resume")  # the same MLflow run, not a second one
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert mlflow_series(client, run.info.run_id, metric_names(resumed.history[0])) == expected_mlflow(
        resumed.history
    )
    assert (artifacts / "checkpoint.npz").read_bytes() == (tmp_path / "run" / "checkpoint.npz").read_bytes()
    assert environment() == variables and mlflow.get_tracking_uri() == tracking_uri
    assert mlflow.active_run() is None
    assert sorted(os.listdir(tmp_path)) == ["run"] and set(os.listdir(tmp_path / "run")) == RUN_FILES | {
        "best.npz"
    }


@pytest.mark.slow
def test_a_resume_logged_for_the_first_time_logs_the_earlier_epochs_first(tmp_path, store):
    gpunn.train(out=tmp_path / "run", epochs=2, **SETTINGS)
    loggers = [TensorBoardLogger(parent=tmp_path / "tb"), MLflowLogger(store, experiment="late")]
    resumed = gpunn.train(resume=tmp_path / "run", epochs=3, verbose=False, callbacks=loggers)
    assert tensorboard_series(tmp_path / "tb" / "run") == expected_tensorboard(resumed.history)
    client, (run,) = runs_of(store, "late")
    names = metric_names(resumed.history[0])
    assert mlflow_series(client, run.info.run_id, names) == expected_mlflow(resumed.history)


def test_a_new_run_refuses_a_tensorboard_folder_with_another_runs_events(tmp_path):
    gpunn.train(
        out=tmp_path / "a" / "run", epochs=1, callbacks=[TensorBoardLogger(tmp_path / "tb")], **SETTINGS
    )
    before = {p: p.read_bytes() for p in (tmp_path / "tb").iterdir()}
    with pytest.raises(TrackingError, match="already holds TensorBoard events of another run"):
        gpunn.train(out=tmp_path / "b", epochs=1, callbacks=[TensorBoardLogger(tmp_path / "tb")], **SETTINGS)
    assert not (tmp_path / "b").exists()  # the run folder it made is gone again
    assert {p: p.read_bytes() for p in (tmp_path / "tb").iterdir()} == before


@pytest.mark.parametrize(
    "given, uri, artifacts",
    [
        (None, "sqlite:///{cwd}/mlruns/mlflow.db", "{cwd}/mlruns/artifacts"),
        ("logs/ml", "sqlite:///{cwd}/logs/ml/mlflow.db", "{cwd}/logs/ml/artifacts"),
        ("file:///srv/ml", "sqlite:////srv/ml/mlflow.db", "/srv/ml/artifacts"),
        ("sqlite:///db/x.db", "sqlite:///{cwd}/db/x.db", "{cwd}/db/artifacts"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000", None),
        ("postgresql://u@h/db", "postgresql://u@h/db", None),
    ],
)
def test_a_folder_is_an_sqlite_store_in_it_and_other_uris_are_the_stores(
    tmp_path, monkeypatch, given, uri, artifacts
):
    monkeypatch.chdir(tmp_path)
    cwd = str(tmp_path.resolve())
    assert store_uri(given) == (uri.format(cwd=cwd), artifacts and artifacts.format(cwd=cwd))


@pytest.mark.parametrize(
    "module, flag, make",
    [
        ("tensorboard", "--tensorboard", lambda: TensorBoardLogger("tb")),
        ("mlflow", "--mlflow", lambda: MLflowLogger("ml")),
    ],
)
def test_a_missing_extra_is_one_line_naming_it_before_any_run_folder(
    tmp_path, monkeypatch, capsys, module, flag, make
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails as if it were not installed
    hint = f'pip install "gpunn[{module}]"'
    with pytest.raises(TrackingError, match="needs the .* package: pip install"):
        make()
    for command in ("train", "sweep"):
        code = main([command, "--dataset", "digits", "--epochs", "1", "--out", "run", flag, "logs"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and hint in err, err
    assert os.listdir(tmp_path) == []


def test_gpunn_and_its_loggers_import_without_the_extras(monkeypatch):
    import importlib

    for module in ("tensorboard", "mlflow"):
        monkeypatch.setitem(sys.modules, module, None)
    before = set(sys.modules)
    import gpunn.cli
    import gpunn.tracking

    for package in ("cli", "tracking"):  # re-importing rebinds gpunn.cli and gpunn.tracking: put them back
        monkeypatch.setattr(gpunn, package, getattr(gpunn, package))
    for name in [n for n in sys.modules if n.startswith(("gpunn.tracking", "gpunn.cli"))]:
        monkeypatch.delitem(sys.modules, name)
    try:
        tracking = importlib.import_module("gpunn.tracking")
        importlib.import_module("gpunn.cli.main").build_parser()
        with pytest.raises(tracking.TrackingError, match="needs the tensorboard package"):
            tracking.TensorBoardLogger("tb")
    finally:  # a module first imported here would outlive the restored parents, unreachable as their attribute
        for name in set(sys.modules) - before:
            if name.startswith("gpunn."):
                del sys.modules[name]


def test_a_store_mlflow_cannot_use_is_one_line_before_any_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (
        main(["train", "--dataset", "digits", "--epochs", "1", "--out", "run", "--mlflow", "nosuch://x"]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("gpunn: error: MLflow store nosuch://x: ") and err.count("\n") == 1, err
    assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_the_cli_flags_give_train_and_sweep_runs_their_loggers(tmp_path, monkeypatch, store):
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", "digits", "--hidden", "16", "--batch-size", "32", "--epochs", "2"]
    assert (
        main(["train", *args, "--out", "one", "--quiet", "--tensorboard", "tb", "--mlflow", str(store)]) == 0
    )
    assert tensorboard_series(tmp_path / "tb" / "one") == expected_tensorboard(read_metrics(tmp_path / "one"))
    client, found = runs_of(store, EXPERIMENT)
    (trained,) = [r for r in found if r.data.tags[RUN_FOLDER_TAG] == str(tmp_path.resolve() / "one")]
    history = read_metrics(tmp_path / "one")
    assert mlflow_series(client, trained.info.run_id, metric_names(history[0])) == expected_mlflow(history)

    tracking = Tracking(tmp_path / "tb", str(store))
    rows = run_sweep(
        {"dataset": ["digits"], "epochs": [2], "lr": [0.05, 0.1]}, tmp_path / "sw", tracking=tracking
    )
    client, found = runs_of(store, EXPERIMENT)
    swept = {r.data.tags[RUN_FOLDER_TAG]: r for r in found if r.data.tags.get(GROUP_TAG) == "sw"}
    assert len(swept) == 2
    for row in rows:
        history = read_metrics(row.folder)
        assert tensorboard_series(tmp_path / "tb" / "sw" / row.folder.name) == expected_tensorboard(history)
        run = swept[str(row.folder.resolve())]
        assert run.info.run_name == row.folder.name
        assert mlflow_series(client, run.info.run_id, metric_names(history[0])) == expected_mlflow(history)
    # a combination resumed on its own, with the flags the README gives, goes on logging where it did
    first = rows[0].folder
    resume = ["train", "--resume", str(first), "--epochs", "3", "--quiet", "--tensorboard", "tb/sw"]
    assert main([*resume, "--mlflow", str(store)]) == 0
    history = read_metrics(first)
    assert len(history) == 3 and tensorboard_series(
        tmp_path / "tb" / "sw" / first.name
    ) == expected_tensorboard(history)
    client, found = runs_of(store, EXPERIMENT)
    (resumed,) = [r for r in found if r.data.tags[RUN_FOLDER_TAG] == str(first.resolve())]
    assert resumed.info.run_id == swept[str(first.resolve())].info.run_id
    assert mlflow_series(client, resumed.info.run_id, metric_names(history[0])) == expected_mlflow(history)
    assert sorted(os.listdir(tmp_path)) == ["one", "sw", "tb"]


def test_a_combinations_own_command_asks_for_the_same_logging(tmp_path):
    tracking = Tracking(Path("tb"), "sqlite:///ml.db")
    redo = index_command({"lr": [0.1, 0.2]}, {"dataset": "digits"}, tmp_path / "sw", 2, tracking)
    args = build_parser().parse_args(shlex.split(redo)[1:])
    assert (args.tensorboard, args.mlflow, args.index) == ("tb", "sqlite:///ml.db", 2)
    assert build_parser().parse_args(["train", "--mlflow"]).mlflow == "mlruns"  # the flag alone: ./mlruns


@pytest.mark.slow
@pytest.mark.subprocess
def test_parallel_sweep_workers_log_every_run_into_the_default_store_in_the_working_folder(tmp_path):
    """--jobs 2: the loggers travel to the worker processes; `--mlflow` alone is ./mlruns."""
    grid = ["--dataset", "digits", "--hidden", "16", "--epochs", "2", "--lr", "0.05,0.1", "--val-size", "100"]
    result = gpunn_cli(
        "sweep", *grid, "--jobs", "2", "--out", "sw", "--tensorboard", "tb", "--mlflow", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "2 combinations in 2 processes" in result.stdout
    client, found = runs_of(tmp_path / "mlruns", EXPERIMENT)
    assert sorted(r.info.run_name for r in found) == ["01-lr0.05", "02-lr0.1"]
    for run in found:
        folder = tmp_path / "sw" / run.info.run_name
        history = read_metrics(folder)
        assert run.data.tags[GROUP_TAG] == "sw" and run.info.status == "FINISHED"
        assert mlflow_series(client, run.info.run_id, metric_names(history[0])) == expected_mlflow(history)
        assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"checkpoint.npz", "best.npz"}
        assert tensorboard_series(tmp_path / "tb" / "sw" / folder.name) == expected_tensorboard(history)
        assert set(os.listdir(folder)) == RUN_FILES | {"best.npz"}
    assert sorted(os.listdir(tmp_path)) == ["mlruns", "sw", "tb"]
    assert sorted(os.listdir(tmp_path / "mlruns")) == ["artifacts", "mlflow.db"]


def test_every_tune_trial_is_a_logged_run_grouped_by_its_study(tmp_path, monkeypatch, store):
    monkeypatch.chdir(tmp_path)
    tune = [
        "tune",
        "--dataset",
        "digits",
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--lr",
        "0.05:0.5",
        "--trials",
        "2",
    ]
    assert main([*tune, "--study", "st", "--out", "tu", "--tensorboard", "tb", "--mlflow", str(store)]) == 0
    client, found = runs_of(store, EXPERIMENT)
    trials = {r.info.run_name: r for r in found if r.data.tags.get(GROUP_TAG) == "st"}
    assert sorted(trials) == ["trial-0000", "trial-0001"]
    for name, run in trials.items():
        history = read_metrics(tmp_path / "tu" / name)
        assert tensorboard_series(tmp_path / "tb" / "st" / name) == expected_tensorboard(history)
        assert mlflow_series(client, run.info.run_id, metric_names(history[0])) == expected_mlflow(history)
    assert sorted(os.listdir(tmp_path)) == ["tb", "tu"]
