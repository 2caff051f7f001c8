"""The lake: a DuckLake lake — Parquet files plus a catalog database — so that readers never
block writers and writers never fail on a lock. This module opens it: where the catalog and the
files are (`Lake`), connections with it attached, and errors that name what is wrong with it
(lost or newer catalog, missing files, PostgreSQL down). warehouse.py writes to it.

A plain DuckDB file allows one writing process and, while it writes, no other process at all: a
notebook holding it open (even read-only) stopped every run. DuckLake (DuckDB's own lakehouse
format) gives snapshot isolation instead: a reader keeps reading the snapshot it started on while
runs commit. The catalog is a SQLite file inside the lake folder by default (one host); with
`MOESTATS_POSTGRES_URL` it lives in PostgreSQL, which supports writers on many hosts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb

from moestats_dagster.lakehouse import object_store
from moestats_dagster.lakehouse.engine import (  # noqa: F401 (re-exported for older imports)
    connection_config,
    extension_directory,
)
from moestats_dagster.lakehouse.lake_locks import (  # noqa: F401 (re-exported: the warehouse's errors)
    PostgresUnavailable,
    WarehouseBusy,
    postgres_unreachable,
    publish_locks,
)
from moestats_dagster.messages import said
from moestats_dagster.postgres import describe_postgres, scrub_postgres

log = logging.getLogger("moestats_dagster.lakehouse.lake")

LAKE = "lake"  # the name the lake is attached under in every connection (views refer to it)
LAKE_PATH_ENV = "MOESTATS_LAKE_PATH"
OLD_DUCKDB_PATH_ENV = "MOESTATS_DUCKDB_PATH"
DEFAULT_LAKE_PATH = "data/lake"
POSTGRES_URL_ENV = "MOESTATS_POSTGRES_URL"
# The SQLite catalog of a lake whose files are on object storage (one host; the bucket cannot hold
# a SQLite database). Many hosts: MOESTATS_POSTGRES_URL instead.
CATALOG_PATH_ENV = "MOESTATS_LAKE_CATALOG"
# Errors a retry of the whole transaction can cure: the SQLite catalog busy with another commit,
# or DuckLake's own conflict check losing a race with a commit that touched the same files. The
# last one is DuckLake 1.4's conflict check failing to read the changes of another host's commit
# when both created the tables at once (2 trials in 6 with six processes); the retry sees them.
_TRANSIENT = ("database is locked", "conflict", "could not serialize", "deadlock",
              "failed to parse catalog entry")  # fmt: skip
# Writers on several hosts attaching a new catalog at once each create DuckLake's tables; the ones
# that lose get PostgreSQL's "duplicate key value ... pg_type" or "relation ... already exists"
# (often, with four processes). The winner has committed by then, so attaching
# again finds the catalog made. Only during DuckLake's initialization is this a race.
_FIRST_ATTACH = "failed to initialize ducklake"
_FIRST_ATTACH_RACE = ("duplicate key value", "already exists")


def _transient(exc: duckdb.Error | sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return any(t in text for t in _TRANSIENT) or (
        _FIRST_ATTACH in text and any(t in text for t in _FIRST_ATTACH_RACE)
    )


def lake_path() -> str:
    """The warehouse folder (a DuckLake lake: catalog.sqlite and files/)."""
    if os.environ.get(OLD_DUCKDB_PATH_ENV, "").strip():
        raise ValueError(
            f"{OLD_DUCKDB_PATH_ENV} is no longer read: the warehouse is now a DuckLake folder, so "
            f"that readers never block runs. Set {LAKE_PATH_ENV} to a folder (default "
            f"{DEFAULT_LAKE_PATH}) and unset {OLD_DUCKDB_PATH_ENV}; the old DuckDB file is left "
            "as it was"
        )
    return os.environ.get(LAKE_PATH_ENV, "").strip() or DEFAULT_LAKE_PATH


class WarehouseNotFound(RuntimeError):
    """A reader asked for a lake that nothing has written yet."""


class LakeDamaged(RuntimeError):
    """The lake's catalog or one of its files is gone or unreadable; the message names which and
    how to repair it. Nothing is written while it stands."""


class CatalogTooNew(RuntimeError):
    """The lake's catalog is in a DuckLake format newer than this DuckDB reads."""


class CatalogTooOld(RuntimeError):
    """The lake's catalog is in an older DuckLake format: `moestats lake upgrade` moves it."""


# DuckLake catalog formats this DuckDB (1.5 with DuckLake 1.0) reads and writes; older ones it
# opens only by migrating them, which `moestats lake upgrade` does with a backup and a check.
READS_FORMATS = ("1.0",)
WRITES_FORMAT = "1.0"
OLD_FORMATS = ("0.1", "0.2", "0.3-dev1", "0.3", "0.4-dev1", "0.4")
_TOO_NEW = "Only DuckLake versions"
_TOO_OLD = ("catalog version mismatch", "AUTOMATIC_MIGRATION")
UPGRADE_COMMAND = "moestats lake upgrade"


def too_old(lake: Lake, found: str | None) -> CatalogTooOld:
    return CatalogTooOld(
        f"the lake's catalog ({lake.describe()}) is in DuckLake format {found or '(older)'}, "
        f"written by DuckDB 1.4; this release runs DuckDB {duckdb.__version__} with DuckLake "
        f"format {WRITES_FORMAT}. Upgrade it once with `{UPGRADE_COMMAND}` (it backs the catalog "
        "up, migrates a copy, checks every table's rows and keys, then swaps it in; "
        "docs/warehouse.md). Nothing was written"
    )


def too_new(lake: Lake, found: str | None) -> CatalogTooNew:
    return CatalogTooNew(
        f"the lake's catalog ({lake.describe()}) is in DuckLake format {found or '(newer)'}, "
        f"written by a newer DuckDB (or not one we know); this moestats_dagster runs DuckDB "
        f"{duckdb.__version__}, which reads DuckLake formats up to {READS_FORMATS[-1]}. Run the "
        "release (and DuckDB) that wrote it. A catalog moved to a newer format cannot be moved "
        'back; see "Versions, and moving a lake to DuckLake 1.0" in docs/warehouse.md. Nothing '
        "was written"
    )


def catalog_format(lake: Lake) -> str | None:
    """The DuckLake format version the lake's catalog records (None: no catalog yet), read with
    SQLite or PostgreSQL directly, so it works when DuckDB cannot attach the catalog."""
    return catalog_metadata(lake, "version")


def catalog_metadata(lake: Lake, key: str) -> str | None:
    """A value of the catalog's `ducklake_metadata` (version, data_path, ...), read directly."""
    query = "SELECT value FROM ducklake_metadata WHERE key = "  # global keys: 0.1 had no scope
    where = lake.catalog_at
    try:
        if lake.kind == "sqlite":
            if not Path(where).is_file() or Path(where).stat().st_size == 0:
                return None
            with contextlib.closing(sqlite3.connect(f"file:{where}?mode=ro", uri=True)) as db:
                row = db.execute(query + "?", [key]).fetchone()
        else:
            import psycopg

            with psycopg.connect(where, connect_timeout=10) as db:
                row = db.execute(query + "%s", [key]).fetchone()
    except Exception as exc:  # no catalog table yet, or out of reach
        if "ducklake_metadata" in str(exc) or "no such table" in str(exc):
            return None
        raise
    return row[0] if row else None


_MISSING_FILE = re.compile(
    r'Cannot open file "([^"]+)": No such file or directory'  # a folder
    r"|error (?:on|reading) '([^']+\.parquet)'[^\n]*HTTP 404"  # a bucket
)
_BROKEN_CATALOG = ("database disk image is malformed", "file is not a database")


def _refuse_orphaned_files(lake: Lake, conn: duckdb.DuckDBPyConnection) -> None:
    """A SQLite catalog that is missing or empty beside Parquet files is a lost catalog, not a
    new lake: creating a fresh one would hide every published partition from every query."""
    catalog = Path(lake.catalog_at)
    if catalog.is_file() and catalog.stat().st_size > 0:
        return
    if lake.remote:
        found = conn.execute(
            "SELECT 1 FROM glob(?) LIMIT 1", [lake.data_path + "**/*.parquet"]
        ).fetchall()
        aside = f"delete the objects under {lake.data_path}"
    else:
        files = Path(lake.data_path)
        found = files.is_dir() and next(files.rglob("*.parquet"), None) is not None
        aside = f"move {files} aside (or delete it)"
    if found:
        state = "is empty" if catalog.is_file() else "is missing"
        raise LakeDamaged(
            f"the lake's catalog {catalog} {state}, but {lake.data_path} holds data files of a "
            "lake: refusing to create a new, empty catalog that would hide them. Restore "
            f"{catalog.name} from your backup (with its -wal file, if any). To start afresh on "
            f"purpose, {aside}; MoEngage serves every past day again, so a backfill rebuilds "
            "the lake"
        )


def _explain_damage(lake: Lake, exc: BaseException) -> RuntimeError | None:
    """A clear `LakeDamaged` for a catalog SQLite cannot read or a data file that is gone, and a
    `CatalogTooNew` for a catalog a newer DuckDB wrote."""
    text = str(exc)
    mismatch = any(t in text for t in _TOO_OLD)  # DuckDB 1.5 words older and newer alike
    if mismatch or _TOO_NEW in text:
        try:
            found = catalog_format(lake)
        except Exception:  # the messages below stand without the number
            found = None
        if mismatch and (found is None or found in OLD_FORMATS):
            return too_old(lake, found)
        return too_new(lake, found)
    if lake.kind == "sqlite" and any(b in text for b in _BROKEN_CATALOG):
        catalog = lake.catalog_at
        return LakeDamaged(
            f"the lake's catalog {catalog} is damaged ({text.splitlines()[0][:200]}); nothing was "
            f"written. Restore it from your backup; or try `sqlite3 {catalog} .recover | sqlite3 "
            "recovered.sqlite` and put the result in its place. The Parquet files beside it are "
            "untouched"
        )
    missing = _MISSING_FILE.search(text)
    path = missing and (missing.group(1) or missing.group(2))
    if path and lake.remote:
        path = object_store.as_s3_url(path, object_store.parse(lake.data_path)[0])
    if path and path.startswith(lake.data_path):
        table = Path(path).parent.name
        return LakeDamaged(
            f"the lake's data file {path} (table moestats.{table}) is missing: something outside "
            "moestats deleted or moved it, and every publish or query that reads that table "
            f"needs it; nothing was written. Restore it from your backup of {lake.data_path} at "
            "the same path. Without a backup, move the lake folder aside and backfill the days "
            "you need: MoEngage serves every past day again"
        )
    return None


@dataclass(frozen=True)
class Lake:
    """Where the lake lives: its catalog (a SQLite file, or a PostgreSQL database) and the folder
    (or object-store prefix) of its Parquet files."""

    catalog: str  # "sqlite:<absolute path>" or "postgres:<libpq connection string>"
    data_path: str  # a folder, or an s3:// prefix; ends with a separator

    @classmethod
    def at(cls, folder: str | os.PathLike[str], postgres_url: str | None = None) -> Lake:
        """The lake of a folder: catalog.sqlite and files/ inside it, or, with a PostgreSQL
        connection string, the catalog in PostgreSQL and only the files in the folder.

        `folder` may be an object-store URL (s3://bucket/prefix): the files go to
        <prefix>/files/ there, and the catalog to PostgreSQL, or to the local SQLite file that
        MOESTATS_LAKE_CATALOG names (one host)."""
        if object_store.is_url(folder):
            data = object_store.root(str(folder)) + "files/"
            if postgres_url:
                return cls(f"postgres:{postgres_url}", data)
            catalog = os.environ.get(CATALOG_PATH_ENV, "").strip()
            if not catalog:
                raise object_store.ObjectStoreError(
                    f"the lake's files are on object storage ({data}), but its catalog cannot "
                    f"live in a bucket: set {POSTGRES_URL_ENV} (the production profile: any "
                    f"number of hosts share the lake) or {CATALOG_PATH_ENV} to a local SQLite "
                    "file (one host), e.g. data/catalog.sqlite"
                )
            return cls(f"sqlite:{Path(catalog).expanduser().absolute()}", data)
        root = Path(folder).expanduser().absolute()
        data = str(root / "files") + os.sep
        if postgres_url:
            return cls(f"postgres:{postgres_url}", data)
        return cls(f"sqlite:{root / 'catalog.sqlite'}", data)

    @property
    def kind(self) -> str:
        """The catalog's kind: sqlite or postgres."""
        return self.catalog.split(":", 1)[0]

    @property
    def catalog_at(self) -> str:
        """The catalog's SQLite path or PostgreSQL connection string."""
        return self.catalog.split(":", 1)[1]

    @property
    def remote(self) -> bool:
        """The files are on object storage."""
        return object_store.is_url(self.data_path)

    @property
    def exists(self) -> bool:
        if self.kind == "sqlite":
            return Path(self.catalog_at).is_file()
        return True

    def describe(self) -> str:
        """Where the lake is, for messages (no password)."""
        if self.kind == "sqlite":
            where = self.catalog_at
        else:
            where = f"PostgreSQL catalog {describe_postgres(self.catalog_at)}"
        return f"{where}, files at {self.data_path}" if self.remote else where

    @classmethod
    def from_env(cls, folder: str | os.PathLike[str]) -> Lake:
        """The lake of a folder, its catalog in PostgreSQL when MOESTATS_POSTGRES_URL is set."""
        return cls.at(folder, os.environ.get(POSTGRES_URL_ENV, "").strip() or None)


def _sqlite_wal(path: Path) -> None:
    """Put the SQLite catalog in WAL mode (it stays so): readers then no longer hold writers back
    (docs/benchmarks.md, "Measurements behind the code"). WAL needs a local disk, not NFS."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.execute("PRAGMA journal_mode=WAL")


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def connect(lake: Lake, read_only: bool = False, timeout_seconds: float = 60.0):
    """A DuckDB connection with the lake attached (as `lake`, and in use: `moestats.<table>`
    resolves), retried while the catalog is busy."""
    with explained(lake):
        return _connect(lake, read_only, timeout_seconds)


@contextlib.contextmanager
def explained(lake: Lake) -> Iterator[None]:
    """DuckDB/SQLite errors of the lake, as what a person can act on: a damaged catalog, a
    missing data file, a PostgreSQL catalog out of reach (host and database, no password)."""
    try:
        yield
    except (duckdb.Error, sqlite3.DatabaseError) as exc:
        damage = _explain_damage(lake, exc)
        if damage is None and lake.remote:
            damage = object_store.explain(lake.data_path, exc)
        if damage is not None:
            raise damage from None
        if lake.kind != "postgres":
            raise
        url = lake.catalog_at
        text = scrub_postgres(str(exc), url)
        if any(t in text.lower() for t in ("connection to server", "could not connect",
               "connection refused", "server closed the connection", "terminating connection")):  # fmt: skip
            raise postgres_unreachable("the lake's catalog", url, text) from None
        if text != str(exc):  # DuckDB quoted the URL, password and all: never let that through
            raise WarehouseError(text) from None
        raise


class WarehouseError(RuntimeError):
    """A DuckDB error of the lake, reworded only to keep the catalog's password out of it."""


def _connect(lake: Lake, read_only: bool, timeout_seconds: float) -> duckdb.DuckDBPyConnection:
    if read_only and not lake.exists:
        raise WarehouseNotFound(
            f"no warehouse at {lake.describe()} yet: run `make demo` or materialize a partition "
            "first (or set MOESTATS_LAKE_PATH to where your runs write)"
        )
    conn = duckdb.connect(":memory:", config=connection_config())
    try:
        conn.execute("SET enable_progress_bar = false")  # it would print into runs' output
        if not read_only:
            # A run publishes small slices: one thread is enough, and DuckDB's default (a thread
            # per core in every run process) made runs side by side spend CPU on each other.
            conn.execute("SET threads = 1")
        attach(conn, lake, read_only, timeout_seconds)
        conn.execute(f"USE {LAKE}")
    except BaseException:
        conn.close()
        raise
    return conn


def attach(
    conn: duckdb.DuckDBPyConnection, lake: Lake, read_only: bool, timeout_seconds: float = 60.0
) -> None:
    """Attach `lake` to a connection opened with `engine.connection_config()`, as `lake`
    (the name the views refer to): its object store configured, its catalog's extension loaded.
    Also how dbt reaches the lake (lakehouse/dbt_plugin.py), read-only."""
    if lake.remote:
        object_store.configure(conn, lake.data_path)
    if lake.kind == "sqlite" and not read_only:  # several first runs race to set WAL mode
        _refuse_orphaned_files(lake, conn)
        catalog = Path(lake.catalog_at)
        _retrying(lambda: _sqlite_wal(catalog), timeout_seconds, lake)
    if not read_only and not lake.remote:
        Path(lake.data_path).mkdir(parents=True, exist_ok=True)
    conn.execute("LOAD ducklake")
    conn.execute("LOAD sqlite" if lake.kind == "sqlite" else "LOAD postgres")
    options = [f"DATA_PATH {sql_string(lake.data_path)}"] + (["READ_ONLY"] if read_only else [])
    statement = f"ATTACH {sql_string('ducklake:' + lake.catalog)} AS {LAKE} ({', '.join(options)})"
    try:
        _retrying(lambda: conn.execute(statement), timeout_seconds, lake)
    except duckdb.Error as exc:
        recorded = _moved_from(exc)
        if recorded is None:
            raise
        _attach_moved(conn, lake, recorded, options, read_only)


_MOVED = re.compile(r'DATA_PATH parameter "[^"]*" does not match existing data path in the '
                    r'catalog "([^"]*)"')  # fmt: skip


def files_beside_catalog(lake: Lake) -> bool:
    """Is this a local lake laid out by `Lake.at` (catalog.sqlite beside files/) whose files are
    there? Then wherever the folder is, its files are where its catalog is."""
    here = Path(lake.data_path)
    return (
        lake.kind == "sqlite"
        and not lake.remote
        and Path(lake.catalog_at).parent / "files" == here
        and here.is_dir()
        and next(here.rglob("*.parquet"), None) is not None
    )


class LakeMoved(RuntimeError):
    """The catalog records its files at another path, and they are not beside it here."""


def _moved_from(exc: BaseException) -> str | None:
    """The data path the catalog records, when the attach failed because the lake moved."""
    found = _MOVED.search(str(exc))
    return found.group(1) if found else None


def _attach_moved(
    conn: duckdb.DuckDBPyConnection, lake: Lake, recorded: str, options: list[str], read_only: bool
) -> None:
    """A local lake whose folder was copied or moved (a restored backup, a renamed project, a
    folder mounted elsewhere): its catalog records the old path of its files. When the catalog
    sits beside the files (catalog.sqlite and files/ in one folder, as `Lake.at` lays it out),
    the files are where the catalog is: the lake opens here and, when writing, the catalog
    records the new path. Anywhere else it is refused, naming both paths."""
    if not files_beside_catalog(lake):
        raise LakeMoved(
            f"the lake's catalog ({lake.describe()}) records its files at {recorded}, but this "
            f"run looks for them at {lake.data_path}, and they are not there beside it. Point "
            f"MOESTATS_LAKE_PATH at the lake's folder (or prefix) as it now is, or move "
            f"{recorded} there; nothing was written"
        )
    attach = (f"ATTACH {sql_string('ducklake:' + lake.catalog)} AS {LAKE} "
              f"({', '.join([*options, 'OVERRIDE_DATA_PATH true'])})")  # fmt: skip
    conn.execute(attach)
    if not read_only:
        conn.execute(
            f"UPDATE __ducklake_metadata_{LAKE}.ducklake_metadata SET value = ? "
            "WHERE key = 'data_path' AND scope IS NULL",
            [lake.data_path],
        )
        log.info("the lake moved from %s to %s; its catalog now records the new path",
                 recorded, lake.data_path)  # fmt: skip


def _retrying(fn, timeout_seconds: float, lake: Lake | None = None):
    """Run `fn`, again while the catalog reports a transient conflict, for up to the timeout."""
    deadline = time.monotonic() + timeout_seconds
    delay = 0.05
    while True:
        try:
            return fn()
        except (duckdb.Error, sqlite3.OperationalError) as exc:
            if not _transient(exc):
                raise
            if time.monotonic() >= deadline:
                text = said(exc, 200)
                if lake is not None and lake.kind == "postgres":
                    text = scrub_postgres(text, lake.catalog_at)
                raise WarehouseBusy(
                    f"the warehouse catalog ({lake.describe() if lake else 'in use'}) stayed busy with other commits "
                    f"for {timeout_seconds:.0f} s ({text}); nothing was "
                    "written. Re-run; if it persists, fewer runs at once or a PostgreSQL catalog "
                    f"({POSTGRES_URL_ENV}) will help."
                ) from None
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)
