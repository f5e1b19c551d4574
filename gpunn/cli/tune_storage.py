"""Where a `gpunn tune` study lives: a database URL (Optuna's RDB storage) or `journal:FILE` (its journal).

- default: `sqlite:///OUT/study.db`, a file in the tune folder: nothing to start, several processes on one
  machine may share it;
- `journal:FILE`: Optuna's JournalStorage over a JournalFileBackend, an append-only log with a lock file
  beside it (FILE.lock) for processes that share a file system (Optuna suggests it over SQLite on NFS);
- any other SQLAlchemy URL (`postgresql://user@host/db`, `mysql://...`): one study for many machines.

Every wait is bounded: SQLite waits at most SQLITE_LOCK_TIMEOUT seconds for another process's write lock
(Python's sqlite3 `timeout`), the journal's lock is taken from a holder that has not touched it for
JOURNAL_GRACE seconds (Optuna's grace_period), and a server URL waits as its driver is told in the URL
(`?connect_timeout=10` for PostgreSQL) and for SQLAlchemy's pool at most its 30 s pool_timeout.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from gpunn.errors import ConfigError, GpunnError

JOURNAL = "journal:"
SQLITE_LOCK_TIMEOUT = 60  # seconds: a trial's writes are small; this only bounds a stuck writer
JOURNAL_GRACE = 30  # seconds (Optuna's default grace_period)
DEFAULT_FILE = "study.db"
SCHEMA_RACE_RETRIES = 5


def optuna_module(what: str = "gpunn tune"):
    """optuna, or the one-line error naming the extra."""
    try:
        import optuna
        import sqlalchemy  # noqa: F401  (the RDB storage, the default)
    except ImportError:
        raise GpunnError(f'{what} needs Optuna: pip install "gpunn[tune]"') from None
    return optuna


@contextlib.contextmanager
def optuna_quiet(optuna):
    """Optuna's own INFO lines off while tune prints its own; the previous verbosity is restored."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


@dataclass(frozen=True)
class StorageSpec:
    """A parsed --storage: its URL as written, and the file it lives in (None for a server)."""

    url: str
    journal: bool
    file: Path | None

    def describe(self) -> str:
        """The URL as printed (and in best.json): a password in it shown as ***."""
        if self.journal:
            return self.url
        import sqlalchemy.engine

        return sqlalchemy.engine.make_url(self.url).render_as_string(hide_password=True)


def default_storage(out: Path) -> StorageSpec:
    return parse_storage(f"sqlite:///{out / DEFAULT_FILE}")


def parse_storage(url: str) -> StorageSpec:
    """Check a --storage value without touching it (no file, no connection)."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("--storage takes a database URL (sqlite:///FILE, postgresql://...) or journal:FILE")
    if url.startswith(JOURNAL):
        path = url[len(JOURNAL) :]
        if not path:
            raise ConfigError("--storage journal:FILE needs the journal file's path after 'journal:'")
        path = Path(path).absolute()  # recorded in tune.json: the same file from any working directory
        return StorageSpec(f"{JOURNAL}{path}", True, path)
    import sqlalchemy.engine
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = sqlalchemy.engine.make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"--storage {url!r} is neither a database URL (sqlite:///FILE, postgresql://USER@HOST/DB) "
            "nor journal:FILE"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError(
                f"--storage {url}: an in-memory SQLite database would vanish with this process: name a file"
            )
        path = Path(parsed.database).absolute()
        return StorageSpec(parsed.set(database=str(path)).render_as_string(hide_password=False), False, path)
    return StorageSpec(url, False, None)


def check_reachable(spec: StorageSpec) -> None:
    """The folder of a file storage exists (the tune folder's own study.db is made with the folder)."""
    if spec.file is not None and not spec.file.parent.is_dir():
        raise ConfigError(f"--storage {spec.url}: the folder {spec.file.parent} does not exist")


def open_storage(spec: StorageSpec, create: bool = True):
    """The Optuna storage; `create=False` refuses a file storage whose file is not there (plotting a study
    must not make an empty database)."""
    import optuna

    if not create and spec.file is not None and not spec.file.is_file():
        raise GpunnError(f"the study's storage {spec.file} is not there (moved or deleted?)")
    if spec.journal:
        from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

        path = str(spec.file)
        lock = JournalFileSymlinkLock(path, grace_period=JOURNAL_GRACE)
        return optuna.storages.JournalStorage(JournalFileBackend(path, lock_obj=lock))
    from sqlalchemy.exc import SQLAlchemyError

    engine_kwargs = {}
    if spec.file is not None:
        engine_kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT}
    try:
        return _rdb_storage(optuna, spec.url, engine_kwargs)
    except ImportError as exc:  # Optuna's, raised from the driver's ModuleNotFoundError
        driver = getattr(exc.__cause__, "name", None) or getattr(exc, "name", None) or "of its database"
        raise GpunnError(f"--storage {spec.url} needs the database driver {driver}: pip install it") from None
    except SQLAlchemyError as exc:  # OperationalError and kin: the server (or the file) said no
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GpunnError(f"--storage {spec.url}: cannot open the study's database: {first}") from None


def _rdb_storage(optuna, url: str, engine_kwargs: dict):
    """Optuna's RDBStorage. Two processes opening one new database at once both create its tables (Optuna
    checks, then creates): the slower one fails on a table the faster one made ('table ... already exists')
    or on the row it wrote (alembic_version's UNIQUE constraint). By then the tables are there, so it
    opens again, at most SCHEMA_RACE_RETRIES times; any other error is raised at once."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(SCHEMA_RACE_RETRIES):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, OperationalError) as exc:
            racing = isinstance(exc, IntegrityError) or "already exists" in str(exc)
            if not racing or attempt == SCHEMA_RACE_RETRIES - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")
