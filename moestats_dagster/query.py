"""One way in for people: a read-only connection to the warehouse, and `moestats query`.

A reader holds a DuckLake snapshot, not a lock: a notebook may keep its connection for hours and
runs still publish; each new query sees the latest published partitions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb

from .config import lake_path
from .warehouse import Lake
from .warehouse import connect as _connect


def connect(path: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A read-only DuckDB connection to the warehouse, whatever its storage: `moestats.<table>`
    (`moestats.performance_stats`, …) and the views `moestats.campaign_daily_summary` and
    `moestats.parent_campaign_daily_summary` resolve. `path`: the lake folder (default
    $MOESTATS_LAKE_PATH, else data/lake; the catalog in PostgreSQL when MOESTATS_POSTGRES_URL
    is set)."""
    return _connect(Lake.from_env(path or lake_path()), read_only=True)


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
