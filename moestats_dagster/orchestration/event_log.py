"""Moved to `moestats_dagster.orchestration.instance.event_log`; this path warns, for one release."""

from moestats_dagster.orchestration._moved import warn_moved
from moestats_dagster.orchestration.instance.event_log import *  # noqa: F403
from moestats_dagster.orchestration.instance.event_log import KeptEngineSqliteEventLogStorage

__all__ = ["KeptEngineSqliteEventLogStorage"]

warn_moved(__name__, "moestats_dagster.orchestration.instance.event_log")
