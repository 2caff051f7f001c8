"""The warehouse's tables in the lake: creating them and bringing tables of an earlier release
up to the declared schema, and publishing a partition's slices of several tables in one
transaction (retried when the catalog is busy) — what no library does for us. lake.py opens the
lake this writes to.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Iterator, Mapping

import duckdb
import pandas as pd

from moestats_dagster.lakehouse.lake import Lake, _retrying, connect, explained
from moestats_dagster.lakehouse.lake_locks import publish_locks
from moestats_dagster.messages import said
from moestats_dagster.model.schemas import SCHEMA, TABLES, Table, quote_ident

log = logging.getLogger("moestats_dagster.lakehouse.warehouse")


@contextlib.contextmanager
def connection(
    lake: Lake | str, timeout_seconds: float = 60.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived writing connection with every table created; closed however it ends."""
    lake = lake if isinstance(lake, Lake) else Lake.from_env(lake)
    conn = connect(lake, timeout_seconds=timeout_seconds)
    try:
        with explained(lake):
            _retrying(lambda: ensure_tables(conn), timeout_seconds, lake)
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
    _ensure_views(conn, catalog)
    _ensure_options(conn, catalog)


# Parquet row groups of 10,000 rows, not DuckDB's 122,880: a publish buffers a whole row group per
# column before writing it, and a day's raw payloads would all be one group.
LAKE_OPTIONS = {"parquet_row_group_size": "10000"}


def _ensure_options(conn: duckdb.DuckDBPyConnection, catalog: str) -> None:
    current = dict(
        conn.execute(f"SELECT option_name, value FROM {quote_ident(catalog)}.options()").fetchall()
    )
    for name, value in LAKE_OPTIONS.items():
        if current.get(name) != value:
            conn.execute(f"CALL {quote_ident(catalog)}.set_option(?, ?)", [name, int(value)])


def _ensure_views(conn: duckdb.DuckDBPyConnection, catalog: str) -> None:
    """The dashboard views exist from the first write on, so a reader can query them before the
    summary asset first runs (which replaces them with the current SQL)."""
    from moestats_dagster.model.schemas import (
        CAMPAIGN_DAILY_SUMMARY,
        CAMPAIGN_MONTHLY_SUMMARY,
        CAMPAIGN_PERIOD_GOAL_STATS,
        CAMPAIGN_PERIOD_STATS,
        CAMPAIGNS,
        CONVERSION_GOAL_STATS,
        FLOW_CAMPAIGNS,
        FLOW_DAILY_SUMMARY,
        FLOWS,
        PARENT_CAMPAIGN_DAILY_SUMMARY,
        PERFORMANCE_STATS,
    )
    from moestats_dagster.model.summary import flow_sql, monthly_sql, rollup_sql, summary_sql

    present = {
        r[0]
        for r in conn.execute(
            "SELECT view_name FROM duckdb_views() WHERE database_name = ? AND schema_name = ?",
            [catalog, SCHEMA],
        ).fetchall()
    }
    names = {t.name: t.in_catalog(catalog) for t in (PERFORMANCE_STATS, CONVERSION_GOAL_STATS,
             CAMPAIGNS, CAMPAIGN_DAILY_SUMMARY, PARENT_CAMPAIGN_DAILY_SUMMARY,
             CAMPAIGN_PERIOD_STATS, CAMPAIGN_PERIOD_GOAL_STATS, CAMPAIGN_MONTHLY_SUMMARY, FLOWS,
             FLOW_CAMPAIGNS, FLOW_DAILY_SUMMARY)}  # fmt: skip
    if CAMPAIGN_DAILY_SUMMARY.name not in present:
        conn.execute(summary_sql(names["performance_stats"], names["conversion_goal_stats"],
                                 names["campaigns"], names["campaign_daily_summary"]))  # fmt: skip
    if PARENT_CAMPAIGN_DAILY_SUMMARY.name not in present:
        conn.execute(rollup_sql(names["campaign_daily_summary"], names["campaigns"],
                                names["parent_campaign_daily_summary"]))  # fmt: skip
    if CAMPAIGN_MONTHLY_SUMMARY.name not in present:
        conn.execute(monthly_sql(names["campaign_period_stats"], names["campaign_period_goal_stats"],
                                 names["campaigns"], names["campaign_monthly_summary"]))  # fmt: skip
    if FLOW_DAILY_SUMMARY.name not in present:
        conn.execute(flow_sql(names["campaign_daily_summary"], names["flows"],
                              names["flow_campaigns"], names["flow_daily_summary"]))  # fmt: skip


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


def replace_views(
    conn: duckdb.DuckDBPyConnection, statements: list[str], retry_seconds: float = 120.0
) -> None:
    """Run `CREATE OR REPLACE VIEW` statements in one transaction, again while another writer's
    commit conflicts with it. Several runs replace the same views (one summary run per
    workspace, at once): DuckLake lets only the first commit of a view win and fails the others,
    although they all hold the same SQL."""

    def replace() -> None:
        for statement in statements:
            conn.execute(statement)

    _retrying(lambda: _in_transaction(conn, replace), retry_seconds)


def _in_transaction(conn: duckdb.DuckDBPyConnection, work: Callable[[], None]) -> None:
    """`work` in one transaction: committed whole, or rolled back whole."""
    conn.execute("BEGIN TRANSACTION")
    try:
        work()
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed COMMIT has ended it already
            conn.execute("ROLLBACK")
        raise


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
    period: tuple[str, dt.date] | None = None,
    retry_seconds: float = 120.0,
) -> dict[str, int]:
    """Replace the (workspace, day) slice of each table with its frame, all in one transaction
    (the workspace's whole slice for tables without `stat_date`; the (workspace, period kind,
    period start) slice of the period tables, with `period`).

    Either every table gets its new slice or none changes: the last good data is never lost,
    and a reader sees the old slices or the new ones, never a mix. A commit that loses a race
    with another writer's is retried whole, for up to `retry_seconds`.

    Each publish is marked with a commit message of its own, so that when anything fails after
    the statements ran (the object store cut at the commit, a lock that cannot be released) the
    catalog itself says whether it committed: `PublishedThenFailed` when it did, the error as it
    was when it did not.
    """
    for name, frame in frames.items():
        _check_slice(TABLES[name], frame, workspace_id, stat_date, period)
    counts = {}
    where, params = _slice_filter(workspace_id, stat_date, period)
    views = {name: f"incoming_{name}" for name in frames}
    slice_name = (
        f"{workspace_id}|{period[0] + ' ' + str(period[1]) if period else stat_date or '*'}"
    )
    mark = f"moestats publish {slice_name} {uuid.uuid4().hex}"

    def publish() -> None:
        # Everything inside the transaction, the frames' views too: on a lake connection each
        # statement outside one is a transaction of its own that reads the catalog's snapshot
        # (docs/benchmarks.md, "Measurements behind the code"). A view registered in a
        # transaction goes with its rollback.
        catalog = _catalog(conn)
        conn.execute(f"CALL {quote_ident(catalog)}.set_commit_message('moestats', ?)", [mark])
        try:
            for name, frame in frames.items():
                conn.register(views[name], frame)
                qualified = TABLES[name].in_catalog(catalog)
                conn.execute(f"DELETE FROM {qualified} WHERE {where}", params)
                if len(frame):
                    conn.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM {views[name]}")
                counts[name] = len(frame)
        finally:
            for view in views.values():
                with contextlib.suppress(duckdb.Error):  # not registered when a statement failed
                    conn.unregister(view)

    try:
        with partition_lock(conn, workspace_id, stat_date, retry_seconds, period):
            # the whole transaction again: all or nothing
            _retrying(lambda: _in_transaction(conn, publish), retry_seconds)
    except Exception as exc:
        if committed(conn, mark):
            raise PublishedThenFailed(slice_name, counts, exc) from exc
        raise
    return counts


class PublishedThenFailed(RuntimeError):
    """The publish committed, and something after its statements failed: the slices are in the
    lake (and must be reported as published), the failure is still said."""

    def __init__(self, slice_name: str, counts: dict[str, int], cause: BaseException) -> None:
        super().__init__(f"published {slice_name}; then {said(cause, typed=True)}")
        self.counts = counts
        self.cause = cause


def committed(conn: duckdb.DuckDBPyConnection, mark: str) -> bool:
    """Did the publish marked `mark` commit? Read from the catalog's own record of snapshots
    (the catalog database, not the object store). False when it cannot be read."""
    try:
        rows = conn.execute(
            f"SELECT count(*) FROM __ducklake_metadata_{_catalog(conn)}.ducklake_snapshot_changes "
            "WHERE commit_message = ?",
            [mark],
        ).fetchone()
    except duckdb.Error:
        return False
    return bool(rows and rows[0])


@contextlib.contextmanager
def partition_lock(
    conn: duckdb.DuckDBPyConnection,
    workspace_id: str,
    stat_date: dt.date | None,
    timeout_seconds: float,
    period: tuple[str, dt.date] | None = None,
) -> Iterator[None]:
    """Hold this partition's publish lock (and the lake's maintenance lock, shared), for every
    process on every host of the lake: see lake_locks.py. Each transaction begins only once the
    previous publish of the partition has committed, so its DELETE sees the rows it replaces."""
    key = f"{workspace_id}|{stat_date.isoformat() if stat_date else '*'}"
    if period is not None:
        key = f"{workspace_id}|{period[0]}:{period[1].isoformat()}"
    with publish_locks(conn, key, timeout_seconds):
        yield


def read_slice(
    conn: duckdb.DuckDBPyConnection,
    table: Table,
    *,
    workspace_id: str,
    stat_date: dt.date | None = None,
    period: tuple[str, dt.date] | None = None,
) -> pd.DataFrame:
    """One (workspace, day) slice, rows in key order, dates as `datetime.date` (the workspace's
    whole slice without a day; a (period kind, start) slice of a period table with `period`)."""
    order = ", ".join(quote_ident(k) for k in table.keys)
    where, params = _slice_filter(workspace_id, stat_date, period)
    columns = ", ".join(quote_ident(c) for c in table.names)  # declared order, whatever the file's
    frame = conn.execute(
        f"SELECT {columns} FROM {table.in_catalog(_catalog(conn))} WHERE {where} ORDER BY {order}",
        params,
    ).fetchdf()
    for column in ("stat_date", "period_start", "period_end"):
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).dt.date
    return frame


def _slice_filter(
    workspace_id: str, stat_date: dt.date | None, period: tuple[str, dt.date] | None = None
) -> tuple[str, list[object]]:
    if period is not None:
        return "workspace_id = ? AND period = ? AND period_start = ?", [workspace_id, *period]
    if stat_date is None:
        return "workspace_id = ?", [workspace_id]
    return "workspace_id = ? AND stat_date = ?", [workspace_id, stat_date]


def _check_slice(
    table: Table,
    frame: pd.DataFrame,
    workspace_id: str,
    stat_date: dt.date | None,
    period: tuple[str, dt.date] | None = None,
) -> None:
    if list(frame.columns) != table.names:
        raise ValueError(
            f"{table.qualified}: frame columns {list(frame.columns)} differ from the declared "
            f"schema {table.names}; this is a bug in moestats_dagster"
        )
    if len(frame):
        inside = (frame["workspace_id"] == workspace_id).all()
        if stat_date is not None:
            inside &= _only_date(frame["stat_date"], stat_date)
        if period is not None:
            inside &= bool((frame["period"] == period[0]).all())
            inside &= _only_date(frame["period_start"], period[1])
        if not inside:
            where = f"{period[0]} {period[1]}" if period else stat_date
            raise ValueError(
                f"{table.qualified}: rows outside partition {where}|{workspace_id} refused"
            )


def _only_date(column: pd.Series, day: dt.date) -> bool:
    """Every value of `column` falls on `day` (dates or timestamps); only the distinct values are
    looked at (parsing every row cost more than the check itself), and parsed only when they are
    not dates already (the tables' own date columns: parsing cost ~7 ms a table)."""
    values = column.drop_duplicates().tolist()
    if all(type(v) is dt.date for v in values):
        return values == [day]
    return bool((pd.to_datetime(pd.Series(values)).dt.date == day).all())
