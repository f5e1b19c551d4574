"""`gpunn tune`: an Optuna study of gpunn runs, ranked and pruned on the validation loss only."""

from __future__ import annotations

import json
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="optuna (the tune extra) is not installed")

from optuna.trial import TrialState  # noqa: E402

import gpunn  # noqa: E402
from gpunn.cli.main import main  # noqa: E402
from gpunn.cli.tune import BEST_JSON  # noqa: E402
from gpunn.cli.tune_folder import TUNE_FILE, load_study_of  # noqa: E402
from gpunn.cli.tune_request import default_val_size  # noqa: E402
from gpunn.cli.tune_space import LOG_SCALE, parse_dimension, search_space  # noqa: E402
from gpunn.cli.tune_storage import parse_storage  # noqa: E402
from gpunn.errors import ConfigError, OutputExistsError  # noqa: E402
from gpunn.outputs import check_output  # noqa: E402
from gpunn.training.metrics import read_metrics  # noqa: E402
from gpunn.training.pruning import PruneTrial  # noqa: E402

TUNE = ["tune", "--dataset", "digits", "--epochs", "3", "--lr", "0.05:0.5", "--hidden", "16/32"]
HANG_GUARD = 120  # seconds; every wait below ends long before unless something hangs


def tune_folder(tmp_path, *extra, name="tune", trials=3):
    out = tmp_path / name
    assert main([*TUNE, "--trials", str(trials), "--out", str(out), *extra]) == 0
    return out


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory):
    """One small digits study, run in-process from an empty working directory (which must stay so)."""
    cwd = tmp_path_factory.mktemp("cwd")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        out = tune_folder(cwd, trials=4)
    return cwd, out


# ---- the search space -----------------------------------------------------------------------------


def test_ranges_lists_and_single_values():
    lr = parse_dimension("lr", "1e-4:1")
    assert (lr.low, lr.high, lr.log) == (1e-4, 1.0, True)
    assert parse_dimension("dropout", "0:0.5").log is False  # only lr and batch size are log-scaled
    assert set(LOG_SCALE) == {"lr", "batch_size"}
    batch = parse_dimension("batch_size", "16:256")
    assert (batch.low, batch.high, batch.log) == (16, 256, True) and isinstance(batch.low, int)
    assert parse_dimension("hidden", "128, 64/64").choices == ("128,64", "64")  # one spelling per choice
    assert parse_dimension("optimizer", "sgd,adam").choices == ("sgd", "adam")
    assert parse_dimension("lr", "0.1") is None  # one value: fixed
    space = search_space({"lr": "0.1", "hidden": "16/32"}, {"epochs": 1}, None)
    assert space.fixed == {"epochs": 1, "lr": 0.1} and [d.key for d in space.dimensions] == ["hidden"]


def test_every_sampled_value_lies_in_its_dimension():
    space = search_space({"lr": "1e-3:1", "batch_size": "32:256", "hidden": "16/32,16"}, {}, None)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        settings = space.sample(study.ask())
        assert 1e-3 <= settings["lr"] <= 1 and 32 <= settings["batch_size"] <= 256
        assert settings["hidden"] in ((16,), (32, 16))  # as gpunn.train takes it
    trial = study.trials[0]
    assert trial.distributions["lr"].log and trial.distributions["batch_size"].log


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--lr", "0:1"], "--lr must be a finite number > 0"),  # the range's low end, checked by TrainConfig
        (["--dropout", "0:1"], "--dropout must be a probability in [0, 1)"),  # and its high end
        (["--lr", "1:0.1"], "low end must be below its high end"),
        (["--hidden", "16:32"], "not a range"),
        (["--lr", "a:b"], "--lr takes a number, a comma-separated list or a range"),
        (["--optimizer", "sgd,adamw"], "--optimizer must be one of"),
        (["--momentum", "0:0.9", "--optimizer", "nesterov"], "--optimizer nesterov needs --momentum > 0"),
        (["--lr", "0.1"], "nothing to search"),
        (["--val-size", "0"], "--val-size 0 leaves no validation set"),
        (["--val-size", "1430"], "--val-size 1430 does not fit digits's 1437 training images"),
        (["--hidden", "100000,100000/8"], "a gpunn model holds at most"),
        (["--trials", "0"], "--trials must be an integer >= 1"),
        (["--timeout", "0"], "--timeout must be a number of seconds > 0"),
        (["--storage", "nowhere"], "is neither a database URL"),
        (["--storage", "sqlite:///x.db"], "name this one with --study"),
        (["--storage", "sqlite:///missing/x.db", "--study", "s"], "missing does not exist"),
        (["--device", "cdua"], "invalid device 'cdua'"),
    ],
)
def test_a_bad_setting_is_one_line_before_any_folder_or_storage(tmp_path, monkeypatch, capsys, flags, words):
    monkeypatch.chdir(tmp_path)
    given = ["--trials", "2"] if "--trials" not in flags else []
    storage = [] if "--storage" in flags else ["--storage", "sqlite:///study.db", "--study", "s"]
    code = main(["tune", "--dataset", "digits", "--epochs", "1", *given, *storage, *flags, "--out", "t"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert list(tmp_path.iterdir()) == []  # no tune folder, no study.db


def test_a_storage_that_cannot_be_opened_leaves_no_tune_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a database that is not there (no driver here, or nothing on port 1)
    code = main(
        [*TUNE, "--trials", "1", "--storage", "postgresql+pg8000://me@127.0.0.1:1/db", "--study", "s"]
    )
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "--storage postgresql+pg8000://" in err
    assert list(tmp_path.iterdir()) == []  # not even runs/ (the default --out's parent)


def test_the_default_validation_split():
    assert default_val_size(1437) == 143 and default_val_size(60000) == 5000  # 10%, at most 5000


# ---- the pruner callback ----------------------------------------------------------------------------


def study_with_one_trial(val_loss: float):
    """An in-memory study whose one finished trial had `val_loss` after each of epochs 1-3."""
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    study.add_trial(
        optuna.trial.create_trial(
            value=val_loss,
            params={},
            distributions={},
            intermediate_values={1: val_loss, 2: val_loss, 3: val_loss},
        )
    )
    return study


SLOW_START = dict(dataset="digits", hidden=(16,), lr=1e-4, val_size=143, verbose=False)  # loss stays ~2.3


def test_a_trial_worse_than_the_median_is_pruned_and_keeps_its_epochs(tmp_path):
    study = study_with_one_trial(0.1)
    trial = study.ask()
    out = tmp_path / "run"
    with pytest.raises(optuna.TrialPruned, match="after epoch 1"):
        gpunn.train(out=out, epochs=3, callbacks=[PruneTrial(trial)], **SLOW_START)
    (record,) = read_metrics(out)  # epoch 1 was saved before the pruner ran
    assert study.trials[1].intermediate_values == {1: record["val_loss"]}


def test_a_trial_better_than_the_median_reports_every_epoch(tmp_path):
    study = study_with_one_trial(100.0)
    trial = study.ask()
    result = gpunn.train(out=tmp_path / "run", epochs=3, callbacks=[PruneTrial(trial)], **SLOW_START)
    reported = study.trials[1].intermediate_values
    assert reported == {
        r["epoch"]: r["val_loss"] for r in result.history
    }  # the validation loss, not the test


def test_pruning_needs_a_validation_split(tmp_path):
    trial = optuna.create_study().ask()
    with pytest.raises(ConfigError, match="validation loss"):
        gpunn.train(
            out=tmp_path / "run", epochs=1, callbacks=[PruneTrial(trial)], **{**SLOW_START, "val_size": 0}
        )


# ---- a whole study ------------------------------------------------------------------------------------


def test_each_trial_is_a_run_and_the_best_is_chosen_on_validation_alone(study_folder):
    cwd, out = study_folder
    assert sorted(p.name for p in cwd.iterdir()) == [out.name]  # nothing written outside the tune folder
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best.json", "best.txt", "study.db", TUNE_FILE, *(f"trial-{n:04d}" for n in range(4))]
    )
    study = load_study_of(out)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 4
    for trial in trials:  # the objective: the trial's best validation loss, from its own run folder
        history = read_metrics(out / f"trial-{trial.number:04d}")
        assert len(history) == 3 and trial.value == min(r["val_loss"] for r in history)
        assert (
            trial.user_attrs["test_accuracy"] == history[trial.user_attrs["best_epoch"] - 1]["test_accuracy"]
        )
    best = json.loads((out / BEST_JSON).read_text())
    chosen = min(trials, key=lambda t: t.value)
    assert (best["trial"], best["val_loss"], best["params"]) == (chosen.number, chosen.value, chosen.params)
    assert (out / "best.txt").read_text().splitlines()[-1] == f"  retrain: {best['command']}"


def test_the_retrain_command_trains_the_best_trial_again(study_folder, tmp_path):
    _, out = study_folder
    best = json.loads((out / BEST_JSON).read_text())
    words = shlex.split(best["command"])
    assert words[:2] == ["gpunn", "train"] and "--val-size" in words
    assert main([*words[1:], "--out", str(tmp_path / "again"), "--quiet"]) == 0
    history = read_metrics(tmp_path / "again")
    assert min(r["val_loss"] for r in history) == best["val_loss"]  # the same run, bit for bit
    assert [r["val_loss"] for r in history] == [r["val_loss"] for r in read_metrics(best["run"])]


def test_one_process_and_one_seed_give_the_same_study(study_folder, tmp_path):
    _, out = study_folder
    again = tune_folder(tmp_path, trials=4)
    first, second = (load_study_of(o).get_trials() for o in (out, again))
    assert [(t.params, t.value) for t in first] == [(t.params, t.value) for t in second]


def test_a_rerun_continues_the_study_to_its_total(study_folder, tmp_path, capsys):
    out = tune_folder(tmp_path, trials=2)
    assert len(load_study_of(out).trials) == 2
    tune_folder(tmp_path, trials=3)  # the same folder: one more trial, numbered on
    trials = load_study_of(out).trials
    assert [t.number for t in trials] == [0, 1, 2] and (out / "trial-0002").is_dir()
    assert "joined, 2 trial(s) there" in capsys.readouterr().out
    tune_folder(tmp_path, trials=3)  # the total is reached: nothing to do
    assert len(load_study_of(out).trials) == 3


def test_no_trial_starts_after_the_timeout(tmp_path, monkeypatch):
    class Clock:  # 10 s pass between any two looks at it: --timeout 15 leaves time for one trial
        now = 0.0
        strftime = staticmethod(time.strftime)

        def monotonic(self):
            self.now += 10
            return self.now

    monkeypatch.setattr("gpunn.cli.tune.time", Clock())
    out = tune_folder(tmp_path, "--timeout", "15", trials=5)
    assert len(load_study_of(out).trials) == 1


def test_joining_a_study_with_other_settings_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tune_folder(tmp_path, trials=1)
    capsys.readouterr()
    code = main([*TUNE[:4], "5", *TUNE[5:], "--trials", "2", "--out", str(out)])  # --epochs 5, not 3
    err = capsys.readouterr().err
    assert code == 2 and "was started with other settings (epochs: 3 there, 5 here)" in err
    code = main([*TUNE, "--trials", "2", "--out", str(out), "--storage", "journal:j.log", "--study", "x"])
    assert code == 3 and "is the tune folder of study 'tune'" in capsys.readouterr().err
    assert len(load_study_of(out).trials) == 1 and not Path("j.log").exists()


def test_a_folder_holding_something_else_is_not_taken(tmp_path, capsys):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main([*TUNE, "--trials", "1", "--out", str(tmp_path / "busy")]) == 3
    assert "already holds files and is no tune folder" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == ["notes.txt"]


def test_a_diverging_setting_is_a_failed_trial_not_the_end(tmp_path, capsys):
    out = tmp_path / "t"
    code = main(
        ["tune", "--dataset", "digits", "--epochs", "2", "--lr", "50:100", "--trials", "2", "--out", str(out)]
    )
    printed = capsys.readouterr().out
    assert code == 1 and printed.count("-> failed: loss became") == 2  # both trials ran
    assert "no trial completed yet (0 complete, 0 pruned, 2 failed settings" in printed
    trials = load_study_of(out).trials
    assert [t.state for t in trials] == [
        TrialState.PRUNED
    ] * 2  # told as pruned: TPE learns the region is bad
    assert all(t.user_attrs["failure"].startswith("loss became") for t in trials)
    assert not (out / BEST_JSON).exists()


def test_a_tune_folders_files_are_not_replaced_by_other_commands(study_folder):
    _, out = study_folder
    for name in ("best.json", "tune.json", "study.db"):
        with pytest.raises(OutputExistsError, match="a file of the tune"):
            check_output(out / name, force=True)


def test_storage_urls():
    journal = parse_storage("journal:studies/a.log")  # recorded absolute: the same file from anywhere
    assert journal.journal and journal.file == Path.cwd() / "studies/a.log"
    assert journal.url == f"journal:{Path.cwd() / 'studies/a.log'}"
    assert parse_storage("sqlite:///s.db").url == f"sqlite:///{Path.cwd() / 's.db'}"
    assert parse_storage("sqlite:////srv/s.db").file == Path("/srv/s.db")
    server = parse_storage("postgresql://me:secret@db.example/optuna")
    assert server.file is None and server.describe() == "postgresql://me:***@db.example/optuna"
    with pytest.raises(ConfigError, match="in-memory"):
        parse_storage("sqlite:///:memory:")


def test_opening_a_new_database_that_another_process_is_creating_tries_again(tmp_path, monkeypatch):
    """The schema race of two processes opening one new SQLite file (seen in the two-process test): the
    loser's 'already exists' or UNIQUE error is retried; any other error is not."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    from gpunn.cli import tune_storage

    raised = []

    def storage(errors):
        def make(url, engine_kwargs):
            raised.append(url)
            if errors:
                raise errors.pop(0)
            return "opened"

        return make

    monkeypatch.setattr(tune_storage.time, "sleep", lambda seconds: None)
    lost = [
        OperationalError("CREATE TABLE", {}, Exception("table trial_values already exists")),
        IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")),
    ]
    monkeypatch.setattr(optuna.storages, "RDBStorage", storage(lost))
    assert tune_storage._rdb_storage(optuna, "sqlite:///x.db", {}) == "opened" and len(raised) == 3
    raised.clear()
    locked = OperationalError("SELECT", {}, Exception("unable to open database file"))
    monkeypatch.setattr(optuna.storages, "RDBStorage", storage([locked]))
    with pytest.raises(OperationalError, match="unable to open"):
        tune_storage._rdb_storage(optuna, "sqlite:///x.db", {})
    assert len(raised) == 1


# ---- gpunn plot TUNE_FOLDER ------------------------------------------------------------------------


def test_plot_draws_the_history_and_the_importances(study_folder, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from gpunn.cli.study_pictures import history_figure

    _, out = study_folder
    folder = tmp_path / "copy"
    folder.mkdir()
    for name in ("tune.json", "study.db"):  # a copy: the module's folder stays as the other tests expect
        (folder / name).write_bytes((out / name).read_bytes())
    assert main(["plot", str(folder)]) == 0
    assert capsys.readouterr().out.split() == [
        "wrote",
        str(folder / "history.png"),
        "wrote",
        str(folder / "importances.png"),
    ]
    assert main(["plot", str(folder)]) == 1  # not replaced without --force
    assert "history.png already exists" in capsys.readouterr().err
    study = load_study_of(folder)
    axis = history_figure(study).axes[0]
    points = [tuple(p) for c in axis.collections for p in c.get_offsets()]
    assert sorted(points) == sorted((t.number, t.value) for t in study.trials)


def test_importances_need_two_completed_trials(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tune_folder(tmp_path, trials=1)
    capsys.readouterr()
    assert main(["plot", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"wrote {out / 'history.png'}" and lines[1].startswith("no importances.png: it needs")
    assert not (out / "importances.png").exists()


# ---- processes: a shared study, Ctrl-C ------------------------------------------------------------


def tune_process(out: Path, *extra, trials=4, epochs=20):
    command = [sys.executable, "-m", "gpunn", *TUNE[:4], str(epochs), *TUNE[5:], "--trials", str(trials)]
    return subprocess.Popen(
        [*command, "--out", str(out), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process) -> tuple[str, str]:
    try:
        return process.communicate(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise


@pytest.mark.subprocess
@pytest.mark.parametrize(
    "storage", ["sqlite:///{}/shared.db", "journal:{}/shared.log"], ids=["sqlite", "journal"]
)
def test_two_processes_share_one_study(tmp_path, storage):
    url = storage.format(tmp_path)
    out = tmp_path / "tune"  # both write their trials into one folder too: trial numbers do not collide
    both = [tune_process(out, "--storage", url, "--study", "shared", trials=4, epochs=10) for _ in range(2)]
    for process in both:
        stdout, stderr = finish(process)
        assert process.returncode == 0, stderr
    trials = load_study_of(out).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    # a process starts a trial only while fewer than 4 are finished or running; two may start at once
    assert 4 <= len(trials) <= 5
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both processes ran trials of the one study
    assert sorted(p.name for p in out.glob("trial-*")) == [f"trial-{t.number:04d}" for t in trials]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["tune", Path(url).name])  # nothing else


@pytest.mark.subprocess
def test_ctrl_c_keeps_the_finished_trials_and_the_same_command_continues(tmp_path):
    out = tmp_path / "tune"
    process = tune_process(out, trials=3, epochs=25)
    deadline = time.monotonic() + HANG_GUARD
    while not (out / "trial-0001" / "metrics.jsonl").exists():  # trial 0 finished, trial 1 saved an epoch
        assert time.monotonic() < deadline and process.poll() is None, "trial 1 never started"
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = finish(process)
    assert process.returncode == 130 and "Traceback" not in stderr
    assert "trial 1: " in stdout and "-> interrupted after" in stdout
    (line,) = stderr.strip().splitlines()
    assert line.startswith("gpunn: error: SIGINT received") and "the study keeps 1 finished trial(s)" in line
    trials = load_study_of(out).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert trials[1].user_attrs["failure"] == "interrupted"
    assert len(read_metrics(out / "trial-0001")) < 25  # its folder keeps the epochs it saved
    assert (out / BEST_JSON).exists()  # the best so far
    command = shlex.split(line.split("continue with: ", 1)[1])
    assert command[:2] == ["gpunn", "tune"] and main(command[1:]) == 0
    trials = load_study_of(out).trials
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.COMPLETE,
        TrialState.COMPLETE,
    ]
    assert json.loads((out / BEST_JSON).read_text())["trial"] in (0, 2, 3)


def test_no_trial_of_a_dead_process_counts_forever(tmp_path):
    """A trial left running by a process killed with SIGKILL (here: a pid that has ended) is failed by the
    next process, so the study still reaches its total."""
    out = tune_folder(tmp_path, trials=1)
    study = load_study_of(out)
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    orphan = study.ask()
    orphan.set_user_attr("host", socket.gethostname())
    orphan.set_user_attr("pid", int(ended.stdout))
    tune_folder(tmp_path, trials=2)
    states = [t.state for t in load_study_of(out).trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]


def test_a_tune_folder_another_process_is_setting_up_is_joined_not_refused(tmp_path):
    """The window in which a second `gpunn tune --out` starting at once sees only the first one's temp file
    of tune.json: it must join (the atomic install then decides who wrote tune.json), not call the folder
    foreign. A folder with anything else in it is still refused."""
    from gpunn.atomic import atomic_writer
    from gpunn.cli.tune_folder import check_folder
    from gpunn.errors import RunFolderError

    out = tmp_path / "tune"
    out.mkdir()
    with atomic_writer(out / TUNE_FILE, "w", replace=False) as fh:  # the other process, mid-write
        fh.write("{}")
        fh.flush()
        assert len(list(out.iterdir())) == 1 and not (out / TUNE_FILE).exists()
        check_folder(out, None, "shared")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / ".notes.tmp").write_text("mine")
    with pytest.raises(RunFolderError, match="already holds files and is no tune folder"):
        check_folder(foreign, None, "shared")
