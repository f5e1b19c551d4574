"""MLflowLogger: a run's settings as MLflow params, its metrics per epoch (step = the epoch) and, at the end,
its checkpoint.npz (and best.npz) as artifacts, in an MLflow tracking store.

It talks to the store through an MlflowClient of its own, given the store's URI: nothing process-wide
changes (no mlflow.set_tracking_uri, no active run, no environment variable).

A local folder (the default, ./mlruns) holds an SQLite store, mlflow.db, and the artifacts beside it:
MLflow 3 refuses its old folder-of-files store (FileStore) unless MLFLOW_ALLOW_FILE_STORE=true is set,
and SQLite needs no server. A resumed run continues the MLflow run whose tag gpunn.run_folder names its
folder; when the store holds none, a new MLflow run gets the earlier epochs first.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from gpunn.tracking.extras import TrackingError, earlier_epochs, need, scalars

EXTRA = "mlflow"
DEFAULT_STORE = "mlruns"
DATABASE = "mlflow.db"
ARTIFACTS = "artifacts"
RUN_FOLDER_TAG = "gpunn.run_folder"  # how a resume finds the MLflow run it continues


def _mlflow():
    return need("mlflow", EXTRA, "MLflow logging")


def store_uri(uri: str | Path | None) -> tuple[str, str | None]:
    """(the tracking URI, where new experiments keep their artifacts or None for the store to decide).

    A folder (a plain path or a file: URI) becomes an SQLite store in it, artifacts in FOLDER/artifacts;
    an sqlite:/// database keeps its artifacts in `artifacts` beside it; any other URI (a tracking server,
    another database) is the store's to run. Local paths are made absolute: every process of a sweep finds
    the same store."""
    uri = str(DEFAULT_STORE if uri is None else uri)
    scheme = urlparse(uri).scheme
    if scheme in ("", "file"):
        folder = Path(unquote(urlparse(uri).path) if scheme == "file" else uri).resolve()
        return f"sqlite:///{folder / DATABASE}", str(folder / ARTIFACTS)
    if scheme == "sqlite" and uri.startswith("sqlite:///") and "?" not in uri:
        database = Path(uri[len("sqlite:///") :]).resolve()
        return f"sqlite:///{database}", str(database.parent / ARTIFACTS)
    return uri, None


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


class MLflowLogger:
    """Log each run into `experiment` of the store at `tracking_uri` (see store_uri), as an MLflow run
    named `run_name` (default: the run folder's name) with `tags` added."""

    def __init__(
        self,
        tracking_uri: str | Path | None = None,
        experiment: str = "gpunn",
        run_name: str | None = None,
        tags: dict | None = None,
    ):
        _mlflow()  # the missing extra is said now, before any run starts
        self.tracking_uri, self.artifact_root = store_uri(tracking_uri)
        self.experiment, self.run_name, self.tags = experiment, run_name, dict(tags or {})
        self.run_id, self.out_dir = None, None
        self._client = None

    def __getstate__(self) -> dict:  # a sweep's worker process opens the store anew
        return {**self.__dict__, "_client": None}

    @property
    def client(self):
        if self._client is None:
            from mlflow.tracking import MlflowClient

            if self.artifact_root is not None:  # a local store: its folder is made, and nothing else
                Path(self.artifact_root).parent.mkdir(parents=True, exist_ok=True)
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @contextlib.contextmanager
    def _store_errors(self):
        """What the store refuses (unreachable, locked, a bad URI) as one TrackingError naming the store."""
        from mlflow.exceptions import MlflowException

        try:
            yield
        except MlflowException as exc:
            lines = str(exc.message).strip().splitlines()
            raise TrackingError(
                f"MLflow store {self.tracking_uri}: {lines[0] if lines else type(exc).__name__}"
            ) from None

    def prepare(self) -> str:
        """Open the store and make the experiment if it is not there (once, before a sweep's workers
        start: they would race to make it); its id. A store that cannot be used is one TrackingError."""
        from mlflow.exceptions import MlflowException

        with self._store_errors():
            experiment = self.client.get_experiment_by_name(self.experiment)
            if experiment is None:
                try:
                    return self.client.create_experiment(self.experiment, self.artifact_root)
                except MlflowException:  # another process made it in the meantime
                    experiment = self.client.get_experiment_by_name(self.experiment)
        if experiment is None or experiment.lifecycle_stage != "active":
            raise TrackingError(
                f"MLflow experiment {self.experiment!r} in {self.tracking_uri} is deleted: restore it "
                "(mlflow experiments restore) or log into another store"
            )
        return experiment.experiment_id

    def on_train_begin(self, run) -> None:
        from mlflow.entities import Param

        experiment = self.prepare()
        self.out_dir = Path(run.out_dir)
        folder = str(self.out_dir.resolve())
        with self._store_errors():
            self.run_id = self._run_of(experiment, folder) if run.epochs_done else None
            if self.run_id is not None:
                self.client.update_run(self.run_id, status="RUNNING")
                return
            name = self.run_name or self.out_dir.name
            created = self.client.create_run(
                experiment, run_name=name, tags={**self.tags, RUN_FOLDER_TAG: folder}
            )
            self.run_id = created.info.run_id
            params = [Param(key, _text(value)) for key, value in run.config.to_dict().items()]
            self.client.log_batch(self.run_id, params=params)
            self._log(earlier_epochs(run))

    def _run_of(self, experiment: str, folder: str) -> str | None:
        """The newest MLflow run of `folder` in the experiment, or None."""
        quote = '"' if "'" in folder else "'"
        if quote in folder:
            return None  # no filter can name it: a new MLflow run
        found = self.client.search_runs(
            [experiment],
            f"tags.`{RUN_FOLDER_TAG}` = {quote}{folder}{quote}",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return found[0].info.run_id if found else None

    def on_epoch_end(self, record: dict) -> None:
        with self._store_errors():
            self._log([record])

    def _log(self, records: list[dict]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, r["epoch"]) for r in records for k, v in scalars(r).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def on_train_end(self, history: list[dict]) -> None:
        from gpunn.training.store import BEST, CHECKPOINT

        with self._store_errors():
            for name in (CHECKPOINT, BEST):
                path = self.out_dir / name
                if path.is_file():
                    self.client.log_artifact(self.run_id, str(path))
            self.client.set_terminated(self.run_id, "FINISHED")
