"""The lake's locks, shared by every process on every host of one lake.

- A **partition's publish lock** (exclusive): two publishers of one partition take turns.
  DuckLake's conflict check sees two transactions that delete the same files, not two that each
  delete an empty slice and append one: two hosts publishing a new day at once both committed, and
  the day held every row twice.
- The **maintenance lock**: every publish holds it shared; lake maintenance holds it exclusive. A
  publish writes its Parquet files before it commits, so until then they are files no snapshot
  references — exactly what maintenance deletes as orphans. Maintenance therefore runs only while
  no publish is in flight, and no publish starts while maintenance runs.

The locks live beside the catalog: PostgreSQL advisory locks (every host of a PostgreSQL catalog)
or file locks next to the SQLite catalog (one host). Waiting is bounded; then `WarehouseBusy`
says what held it.
"""

from __future__ import annotations

import contextlib
import fcntl
import random
import time
from collections.abc import Iterator
from pathlib import Path

from moestats_dagster.postgres import describe_postgres, unreachable_text

PUBLISH, MAINTENANCE = "moestats publish", "moestats maintenance"
LAKE_WIDE = "lake"


class WarehouseBusy(RuntimeError):
    """The catalog stayed busy with other commits for longer than we were willing to retry."""


class PostgresUnavailable(RuntimeError):
    """A PostgreSQL server the lake's catalog or the rate windows live in did not answer."""


def postgres_unreachable(what: str, url: str, cause: object) -> RuntimeError:
    return PostgresUnavailable(unreachable_text(what, url, cause, "nothing was written"))


def catalog_location(conn) -> tuple[str, str]:
    """("postgres", conninfo) or ("sqlite", path) of the lake attached to `conn`."""
    [(path,)] = conn.execute(
        "SELECT path FROM duckdb_databases() WHERE type = 'ducklake' LIMIT 1"
    ).fetchall()
    kind, _, where = path.partition(":")
    return kind, where


@contextlib.contextmanager
def publish_locks(conn, key: str, timeout_seconds: float) -> Iterator[None]:
    """The maintenance lock shared, then the partition's `key` exclusive."""
    kind, where = catalog_location(conn)
    deadline = time.monotonic() + timeout_seconds
    maintained = "lake maintenance is running (merging and cleaning files)"
    published = f"partition {key} is being published by another run"
    with (
        _session(kind, where) as session,
        session.lock(MAINTENANCE, LAKE_WIDE, True, deadline, timeout_seconds, maintained),
        session.lock(PUBLISH, key, False, deadline, timeout_seconds, published),
    ):
        yield


@contextlib.contextmanager
def maintenance_lock(conn, timeout_seconds: float) -> Iterator[None]:
    """The maintenance lock exclusive: no publish in flight, none starts until it is released."""
    kind, where = catalog_location(conn)
    deadline = time.monotonic() + timeout_seconds
    with (
        _session(kind, where) as session,
        session.lock(MAINTENANCE, LAKE_WIDE, False, deadline, timeout_seconds,
                     "runs kept publishing"),
    ):  # fmt: skip
        yield


@contextlib.contextmanager
def upgrade_locks(kind: str, where: str, timeout_seconds: float) -> Iterator[None]:
    """Every lock of the lake at `where` (a catalog that may not attach: the upgrade's), held
    exclusive: maintenance (every publish holds it shared, so none is in flight or starts) and,
    on one host, the publish lock itself. Waited for at most `timeout_seconds`; then
    `WarehouseBusy` says what held them."""
    deadline = time.monotonic() + timeout_seconds
    with (
        _session(kind, where) as session,
        session.lock(MAINTENANCE, LAKE_WIDE, False, deadline, timeout_seconds,
                     "a run is publishing, or lake maintenance is running"),
    ):  # fmt: skip
        if kind == "postgres":  # a partition's lock is per key there; maintenance covers them
            yield
            return
        with session.lock(PUBLISH, LAKE_WIDE, False, deadline, timeout_seconds,
                          "a run is publishing a partition"):  # fmt: skip
            yield


class _PostgresSession:
    def __init__(self, pg, conninfo: str) -> None:
        self.pg, self.conninfo = pg, conninfo

    @contextlib.contextmanager
    def lock(self, name, key, shared, deadline, timeout, held_by) -> Iterator[None]:
        import psycopg

        kind = "_shared" if shared else ""
        args = (name, key)
        while not self.pg.execute(
            f"SELECT pg_try_advisory_lock{kind}(hashtext(%s), hashtext(%s))", args
        ).fetchone()[0]:
            _wait(deadline, timeout, held_by, describe_postgres(self.conninfo))
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):  # closing the session releases it anyway
                self.pg.execute(
                    f"SELECT pg_advisory_unlock{kind}(hashtext(%s), hashtext(%s))", args
                )


class _FileSession:
    def __init__(self, catalog: Path) -> None:
        self.folder = catalog.parent

    @contextlib.contextmanager
    def lock(self, name, key, shared, deadline, timeout, held_by) -> Iterator[None]:
        # One file per lock name; a partition's lock is the whole file for SQLite lakes (one
        # host, publishes are seconds long): simple, and the file names never carry user text.
        path = self.folder / ("publish.lock" if name == PUBLISH else "maintenance.lock")
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        with open(path, "a+b") as fh:
            while True:
                try:
                    fcntl.flock(fh, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    _wait(deadline, timeout, held_by, str(path))
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _session(kind: str, where: str) -> Iterator[_PostgresSession | _FileSession]:
    if kind != "postgres":
        yield _FileSession(Path(where))
        return
    import psycopg

    try:
        pg = psycopg.connect(where, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        raise postgres_unreachable("the lake's publish lock", where, exc) from None
    with pg:
        yield _PostgresSession(pg, where)


def _wait(deadline: float, timeout: float, held_by: str, where: str) -> None:
    if time.monotonic() >= deadline:
        raise WarehouseBusy(
            f"waited {timeout:.0f} s: {held_by} ({where}); nothing was written. Let it finish, "
            "then re-run if needed"
        )
    time.sleep(random.uniform(0.05, 0.2))
