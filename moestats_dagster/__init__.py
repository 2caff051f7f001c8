"""MoEngage campaign Stats API -> daily, per-workspace, checked DuckDB warehouse, run from Dagster.

The public API (see the README's stability note):
- `connect()`: the way in for people and notebooks, a read-only connection where
  `moestats.<table>` and the summary views resolve;
- `MoEngageStats`: the Dagster Component (`type: moestats_dagster.MoEngageStats` in a defs.yaml);
- `build_definitions(settings, database=...)` with `load_settings(path)`: the same definitions
  from Python.

They are imported on first use (PEP 562): `import moestats_dagster.lakehouse.warehouse` in a notebook, a
`moestats query` or a test's worker process does not pay for importing Dagster (seconds).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from moestats_dagster.config import load_settings
    from moestats_dagster.lakehouse.query import connect
    from moestats_dagster.orchestration.build import build_definitions
    from moestats_dagster.orchestration.component import MoEngageStats

__all__ = ["MoEngageStats", "build_definitions", "connect", "load_settings"]
_EXPORTS = {
    "MoEngageStats": ".orchestration.component",
    "build_definitions": ".orchestration.build",
    "connect": ".lakehouse.query",
    "load_settings": ".config",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'moestats_dagster' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
