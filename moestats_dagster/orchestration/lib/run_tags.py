"""What a run's tags say: its workspace, its partition range and how many days it holds, in
words for people (Slack alerts, the demo's progress bar) and for the run queue's limits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from dagster._core.storage.dagster_run import DagsterRun

WORKSPACE_TAG = "moestats/workspace"


def partition_range(tags: Mapping[str, str]) -> tuple[str | None, str | None]:
    """First and last partition key of a run: one key for a single-partition run, the range of
    a backfill's run."""
    single = tags.get("dagster/partition")
    return (
        tags.get("dagster/asset_partition_range_start", single),
        tags.get("dagster/asset_partition_range_end", single),
    )


def workspace_of(tags: Mapping[str, str]) -> str | None:
    """The workspace a run fetches, from its partition tags (keys read `date|workspace`)."""
    if tags.get("dagster/partition/workspace"):
        return tags["dagster/partition/workspace"]
    start, end = partition_range(tags)
    if not start or not end:
        return None
    if "|" not in start:  # a per-workspace asset (campaign metadata): the key is the workspace
        return start if start == end else None
    first, last = start.partition("|")[2], end.partition("|")[2]
    return first if first == last else None


def partition_count(tags: Mapping[str, str]) -> int:
    """How many day x workspace partitions a run holds: 1, or the days of a backfill's range of
    one workspace (0 for a run without partitions)."""
    start, end = partition_range(tags)
    if not start or not end:
        return 0
    if "|" not in start or start == end:
        return 1
    first, last = (dt.date.fromisoformat(k.partition("|")[0]) for k in (start, end))
    return (last - first).days + 1


def where(run: DagsterRun) -> str:
    """'WS_ALPHA, 2024-12-05' from a run's partition tags (single runs, backfill ranges and
    per-workspace runs alike); the job name when the run has no partition."""
    start, end = partition_range(run.tags)
    if not start:
        return f"job {run.job_name}"
    if "|" not in start:  # per-workspace assets: the key is the workspace
        return start if start == end else f"{start} to {end}"
    day, _, workspace = start.partition("|")
    last_day, _, last_workspace = (end or start).partition("|")
    days = day if day == last_day else f"{day} to {last_day}"
    workspaces = workspace if workspace == last_workspace else f"{workspace}..{last_workspace}"
    return f"{workspaces}, {days}"
