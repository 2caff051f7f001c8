"""MoEngage campaign Stats API -> daily, per-workspace, checked DuckDB warehouse, run from Dagster.

`moestats_dagster.connect()` is the way in for people and notebooks: a read-only connection
where `moestats.<table>` and the summary views resolve.
"""

from .query import connect

__all__ = ["connect"]
