"""The DuckDB warehouse: lock-patient connections and atomic replacement of a partition's slice.

dagster-duckdb's IO manager deletes a slice and inserts the new one as two autocommitted statements,
so a failed insert leaves the slice empty; here both happen in one transaction, and inserts go
`BY NAME` into tables created from the declared schemas, never by position.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Mapping
from pathlib import Path

import duckdb
import pandas as pd

from .schemas import SCHEMA, TABLES, Table, quote_ident

log = logging.getLogger("moestats_dagster.warehouse")


class WarehouseLockTimeout(RuntimeError):
    """Another process held the DuckDB file for longer than we were willing to wait."""


def connect(database: str, lock_timeout_seconds: float = 600.0) -> duckdb.DuckDBPyConnection:
    """Open the file, waiting (with jittered backoff) while another process holds its lock."""
    if database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + lock_timeout_seconds
    delay = 0.05
    while True:
        try:
            return duckdb.connect(database)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            if time.monotonic() >= deadline:
                raise WarehouseLockTimeout(
                    f"DuckDB file {database} stayed locked by another process for "
                    f"{lock_timeout_seconds:.0f}s (is a DuckDB shell or notebook holding it open?). "
                    "Close it and re-run; nothing was written."
                ) from None
            time.sleep(delay * random.uniform(0.5, 1.5))
            delay = min(delay * 2, 2.0)


@contextlib.contextmanager
def connection(database: str, lock_timeout_seconds: float = 600.0):
    """A short-lived connection with every table created; closed however the block ends."""
    conn = connect(database, lock_timeout_seconds)
    try:
        ensure_tables(conn)
        yield conn
    finally:
        conn.close()


def ensure_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Create what is missing, and bring tables of an earlier release up to the declared schema:
    columns are only ever added (NULL for old rows) or renamed, never dropped."""
    catalog = _catalog(conn)
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(catalog)}.{SCHEMA}")
    for table in TABLES.values():
        conn.execute(table.ddl(catalog))
        _migrate(conn, catalog, table)


# Renamed columns: table -> (old name, new name). The conversion goal's key was called goal_name
# until the published schema's goal objects brought a goal_name field of their own.
RENAMED = {"conversion_goal_stats": ("goal_name", "goal_key")}


def _migrate(conn: duckdb.DuckDBPyConnection, catalog: str, table: Table) -> None:
    existing = [
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = ? "
            "AND schema_name = ? AND table_name = ?",
            [catalog, SCHEMA, table.name],
        ).fetchall()
    ]
    qualified = table.in_catalog(catalog)
    old, new = RENAMED.get(table.name, (None, None))
    if old in existing and new not in existing:
        conn.execute(
            f"ALTER TABLE {qualified} RENAME COLUMN {quote_ident(old)} TO {quote_ident(new)}"
        )
        existing[existing.index(old)] = new
        log.info("%s: column %s renamed to %s", table.qualified, old, new)
    for column in table.columns:
        if column.name not in existing:
            conn.execute(
                f"ALTER TABLE {qualified} ADD COLUMN {quote_ident(column.name)} {column.type}"
            )
            log.info(
                "%s: column %s added (NULL for rows written before)", table.qualified, column.name
            )


def _catalog(conn: duckdb.DuckDBPyConnection) -> str:
    return conn.execute("SELECT current_database()").fetchall()[0][0]


def table_name(conn: duckdb.DuckDBPyConnection, table: Table) -> str:
    """The table's name for SQL on this connection, whatever the file is called."""
    return table.in_catalog(_catalog(conn))


def replace_slices(
    conn: duckdb.DuckDBPyConnection,
    frames: Mapping[str, pd.DataFrame],
    *,
    workspace_id: str,
    stat_date: dt.date | None = None,
) -> dict[str, int]:
    """Replace the (workspace, day) slice of each table with its frame, all in one transaction
    (the workspace's whole slice for tables without `stat_date`).

    Either every table gets its new slice or none changes: the last good data is never lost.
    """
    for name, frame in frames.items():
        _check_slice(TABLES[name], frame, workspace_id, stat_date)
    counts = {}
    catalog = _catalog(conn)
    where, params = _slice_filter(workspace_id, stat_date)
    views = {name: f"incoming_{name}" for name in frames}
    for name, frame in frames.items():
        conn.register(views[name], frame)
    try:
        conn.execute("BEGIN TRANSACTION")
        try:
            for name, frame in frames.items():
                qualified = TABLES[name].in_catalog(catalog)
                conn.execute(f"DELETE FROM {qualified} WHERE {where}", params)
                if len(frame):
                    conn.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM {views[name]}")
                counts[name] = len(frame)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        for view in views.values():
            conn.unregister(view)
    return counts


def read_slice(
    conn: duckdb.DuckDBPyConnection,
    table: Table,
    *,
    workspace_id: str,
    stat_date: dt.date | None = None,
) -> pd.DataFrame:
    """One (workspace, day) slice, rows in key order, dates as `datetime.date`."""
    order = ", ".join(quote_ident(k) for k in table.keys)
    where, params = _slice_filter(workspace_id, stat_date)
    columns = ", ".join(quote_ident(c) for c in table.names)  # declared order, whatever the file's
    frame = conn.execute(
        f"SELECT {columns} FROM {table.in_catalog(_catalog(conn))} WHERE {where} ORDER BY {order}",
        params,
    ).fetchdf()
    if "stat_date" in frame:
        frame["stat_date"] = pd.to_datetime(frame["stat_date"]).dt.date
    return frame


def _slice_filter(workspace_id: str, stat_date: dt.date | None) -> tuple[str, list[object]]:
    if stat_date is None:
        return "workspace_id = ?", [workspace_id]
    return "workspace_id = ? AND stat_date = ?", [workspace_id, stat_date]


def _check_slice(
    table: Table, frame: pd.DataFrame, workspace_id: str, stat_date: dt.date | None
) -> None:
    if list(frame.columns) != table.names:
        raise ValueError(
            f"{table.qualified}: frame columns {list(frame.columns)} differ from the declared "
            f"schema {table.names}; this is a bug in moestats_dagster"
        )
    if len(frame):
        inside = (frame["workspace_id"] == workspace_id).all()
        if stat_date is not None:
            inside &= bool((pd.to_datetime(frame["stat_date"]).dt.date == stat_date).all())
        if not inside:
            raise ValueError(
                f"{table.qualified}: rows outside partition {stat_date}|{workspace_id} refused"
            )
