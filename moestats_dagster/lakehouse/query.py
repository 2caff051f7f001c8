"""One way in for people: a read-only connection to the warehouse, and `moestats query`.

A reader holds a DuckLake snapshot, not a lock: a notebook may keep its connection for hours and
runs still publish; each new query sees the latest published partitions.

Read-only means the connection cannot change the lake, attach anything, or touch files outside
it — whatever SQL it is given. Two layers, because neither alone is enough (each gap measured):
- DuckDB's own settings: the lake attached READ_ONLY (no INSERT/DELETE on its tables),
  `enable_external_access = false` with only the lake's data folder allowed (no `read_csv` of
  /etc/shadow, no `COPY … TO` elsewhere), then `lock_configuration` so no SET can undo that.
- A statement gate of ours, since DuckDB offers none: with the settings above, `COPY … TO` into
  the lake's own folder still overwrites a Parquet file (making the lake unreadable), and the
  sqlite/postgres extensions that the catalog needs still `ATTACH` a catalog writable or run
  `postgres_execute`. So only single SELECT statements (SELECT, FROM, WITH, VALUES, DESCRIBE,
  SHOW, SUMMARIZE) pass, and none that calls a function reaching past DuckDB's file checks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from moestats_dagster.lakehouse.lake import Lake, lake_path, sql_string
from moestats_dagster.lakehouse.lake import connect as _connect

# Functions that reach storage past DuckDB's file-access settings (the catalog's own extensions),
# run SQL text of their own that the gate would not have seen (query, query_table), or read the
# environment or the object store's credentials (getenv: MOESTATS_POSTGRES_URL holds a password;
# duckdb_secrets: the bucket's key id).
_REFUSED_PREFIXES = ("sqlite_", "postgres_", "query")
_REFUSED_EXACT = {"getenv", "ducklake_add_data_files", "duckdb_secrets", "which_secret"}


class QueryRefused(ValueError):
    """A statement a read-only connection does not run; the message says why and what to do."""


def connect(path: str | Path | None = None) -> ReadOnlyConnection:
    """A read-only connection to the warehouse, whatever its storage: `moestats.<table>`
    (`moestats.performance_stats`, …) and the views `moestats.campaign_daily_summary` and
    `moestats.parent_campaign_daily_summary` resolve. `path`: the lake folder (default
    $MOESTATS_LAKE_PATH, else data/lake; the catalog in PostgreSQL when MOESTATS_POSTGRES_URL
    is set).

    It runs SELECT statements only (`execute`, `sql`, then `fetchall`/`fetchdf`/`df`/`arrow`/
    `pl`), reads nothing outside the lake, and cannot write, attach or change its settings."""
    lake = Lake.from_env(path or lake_path())
    conn = _connect(lake, read_only=True)
    try:
        conn.execute(f"SET allowed_directories = [{sql_string(lake.data_path)}]")
        conn.execute("SET enable_external_access = false")
        conn.execute("SET lock_configuration = true")
    except BaseException:
        conn.close()
        raise
    return ReadOnlyConnection(conn, lake)


def check_statement(sql: str) -> None:
    """Raise `QueryRefused` unless `sql` is one SELECT that calls no refused function."""
    statements = duckdb.extract_statements(sql)  # a syntax error: DuckDB's own words
    if len(statements) != 1:
        raise QueryRefused(
            f"one statement at a time, please ({len(statements)} given); run them one by one"
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryRefused(
            f"{kind.name} statements are refused: this connection is read-only (SELECT, FROM, "
            "WITH, DESCRIBE, SHOW, SUMMARIZE). To change the warehouse, run the Dagster jobs; to "
            "export a result, fetch it (e.g. .df()) and write it from Python"
        )
    with duckdb.connect(":memory:") as parser:  # its own: the gate never touches the reader's
        tree = json.loads(parser.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    if tree.get("error"):
        raise QueryRefused(f"this statement cannot be checked ({tree.get('error_message')})")
    for name in _function_names(tree):
        lowered = name.lower()
        if lowered in _REFUSED_EXACT or lowered.startswith(_REFUSED_PREFIXES):
            raise QueryRefused(
                f"{name}() is refused: it reaches past the read-only lake (other databases, "
                "files, or SQL of its own). Query moestats.<table> and the summary views"
            )


def _function_names(node: Any) -> Iterator[str]:
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            name = item.get("function_name")
            if isinstance(name, str):
                yield name
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


# What a relation from `sql()` offers: its result and its shape. Its other methods write files or
# tables (write_parquet, to_table, …) or take SQL text of their own (query, filter, project, …)
# that the gate would not see — for those, write the SQL and run it through `sql()`.
_RELATION_READERS = {
    "df", "to_df", "fetchdf", "fetchall", "fetchone", "fetchmany", "fetchnumpy", "arrow",
    "fetch_arrow_table", "to_arrow_table", "pl", "show", "columns", "types", "dtypes", "shape",
    "limit",
}  # fmt: skip


class ReadOnlyRelation:
    """A DuckDB relation that can be read, not written or extended with SQL text."""

    def __init__(self, relation: duckdb.DuckDBPyRelation) -> None:
        self._relation = relation

    def __getattr__(self, name: str) -> Any:
        if name not in _RELATION_READERS:
            raise QueryRefused(
                f"{name} is not available on a read-only relation (only reading: "
                f"{', '.join(sorted(_RELATION_READERS))}); put the step in the SQL, or fetch the "
                "result (.df(), .arrow()) and continue in Python"
            )
        attr = getattr(self._relation, name)
        if name != "limit":
            return attr
        return lambda *args, **kwargs: ReadOnlyRelation(attr(*args, **kwargs))

    def __repr__(self) -> str:
        return repr(self._relation)

    def __len__(self) -> int:
        return len(self._relation)


class ReadOnlyConnection:
    """What `connect()` returns: DuckDB's connection API for reading (`execute`, `sql`, the
    `fetch*` family, `df`, `arrow`, `pl`, `description`, `close`, a context manager)."""

    _FETCH = ("fetchall", "fetchone", "fetchmany", "fetchdf", "fetch_df", "df", "fetchnumpy",
              "fetch_arrow_table", "arrow", "pl", "fetch_record_batch")  # fmt: skip

    def __init__(self, conn: duckdb.DuckDBPyConnection, lake: Lake) -> None:
        self._conn = conn
        self.lake = lake

    def execute(self, sql: str, parameters: Any = None) -> ReadOnlyConnection:
        check_statement(sql)
        self._conn.execute(sql, parameters)
        return self

    def sql(self, sql: str, params: Any = None) -> ReadOnlyRelation:
        check_statement(sql)
        return ReadOnlyRelation(self._conn.sql(sql, params=params))

    query = sql

    @property
    def description(self) -> Any:
        return self._conn.description

    def __getattr__(self, name: str) -> Any:
        if name in self._FETCH:
            return getattr(self._conn, name)
        raise AttributeError(
            f"{name} is not available on a read-only warehouse connection (execute, sql and the "
            "fetch methods are)"
        )

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> ReadOnlyConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReadOnlyConnection({self.lake.describe()})"


def run_query(sql: str, *, as_json: bool = False, max_rows: int = 200) -> str:
    """The result of one SQL statement as text: a table for people, or JSON for scripts."""
    conn = connect()
    try:
        cursor = conn.execute(sql)
        if cursor.description is None:
            return ""
        columns = [d[0] for d in cursor.description]
        rows = cursor.fetchall() if as_json else cursor.fetchmany(max_rows + 1)
    finally:
        conn.close()
    if as_json:
        return json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=_plain)
    from tabulate import tabulate

    shown = rows[:max_rows]
    text = tabulate(shown, headers=columns, tablefmt="simple", missingval="NULL")
    if len(rows) > max_rows:
        text += f"\n… more than {max_rows} rows: add a LIMIT, or use --json for all of them"
    return text


def _plain(value: object) -> object:
    """JSON for what DuckDB returns beyond JSON's types (dates, decimals, non-finite floats)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)
