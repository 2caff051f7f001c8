"""MoEngage campaign Stats API -> daily, per-workspace, checked DuckDB warehouse, run from Dagster.

The public API (see the README's stability note):
- `connect()`: the way in for people and notebooks, a read-only connection where
  `moestats.<table>` and the summary views resolve;
- `MoEngageStats`: the Dagster Component (`type: moestats_dagster.MoEngageStats` in a defs.yaml);
- `build_definitions(settings, database=...)` with `load_settings(path)`: the same definitions
  from Python.
"""

from .build import build_definitions
from .component import MoEngageStats
from .config import load_settings
from .query import connect

__all__ = ["MoEngageStats", "build_definitions", "connect", "load_settings"]
