"""Daily x workspace partitions, from the workspaces file."""

from __future__ import annotations

import datetime as dt

from dagster import (
    DailyPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
)

from .config import Settings

DATE, WORKSPACE = "date", "workspace"


def build_partitions(settings: Settings) -> MultiPartitionsDefinition:
    """Keys read `YYYY-MM-DD|WORKSPACE_ID` (dimensions in name order)."""
    return MultiPartitionsDefinition(
        {
            DATE: DailyPartitionsDefinition(
                start_date=settings.start_date.isoformat(), timezone=settings.timezone
            ),
            WORKSPACE: StaticPartitionsDefinition([ws.id for ws in settings.workspaces]),
        }
    )


def build_workspace_partitions(settings: Settings) -> StaticPartitionsDefinition:
    """Per-workspace partitions of the campaign metadata and summary."""
    return StaticPartitionsDefinition([ws.id for ws in settings.workspaces])


def partition_key(stat_date: dt.date, workspace_id: str) -> MultiPartitionKey:
    return MultiPartitionKey({DATE: stat_date.isoformat(), WORKSPACE: workspace_id})


def split_partition_key(key: str) -> tuple[str, dt.date]:
    """(workspace_id, stat_date) of a partition key, whether a MultiPartitionKey or its string."""
    by_dimension = getattr(key, "keys_by_dimension", None)
    if by_dimension is None:
        date_part, _, workspace_id = str(key).partition("|")
        by_dimension = {DATE: date_part, WORKSPACE: workspace_id}
    try:
        return by_dimension[WORKSPACE], dt.date.fromisoformat(by_dimension[DATE])
    except (KeyError, ValueError):
        raise ValueError(
            f"partition key {key!r} is not 'YYYY-MM-DD|WORKSPACE_ID' (e.g. 2024-12-22|WS_ALPHA)"
        ) from None
