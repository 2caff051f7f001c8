"""Moved to `moestats_dagster.orchestration.instance.run_coordinator` (the plug-in) and
`moestats_dagster.orchestration.lib.run_tags` (what a run's tags say); this path warns, for one
release."""

from moestats_dagster.orchestration._moved import warn_moved
from moestats_dagster.orchestration.instance.run_coordinator import WorkspaceQueuedRunCoordinator
from moestats_dagster.orchestration.lib.run_tags import (
    WORKSPACE_TAG,
    partition_count,
    partition_range,
    where,
    workspace_of,
)

__all__ = [
    "WORKSPACE_TAG",
    "WorkspaceQueuedRunCoordinator",
    "partition_count",
    "partition_range",
    "where",
    "workspace_of",
]

warn_moved(__name__, "moestats_dagster.orchestration.instance.run_coordinator")
