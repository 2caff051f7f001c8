"""Daily x workspace partitions, from the workspaces file."""

from __future__ import annotations

import datetime as dt
import math
import warnings
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from dagster import (
    AssetKey,
    BackfillPolicy,
    BetaWarning,
    DagsterInstance,
    DailyPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
    StaticPartitionsDefinition,
)

from moestats_dagster.config import Settings

DATE, WORKSPACE = "date", "workspace"

with warnings.catch_warnings():  # a "beta" notice; the mapping is what the lineage means
    warnings.simplefilter("ignore", BetaWarning)
    # A per-workspace asset reads every day of its workspace.
    BY_WORKSPACE = MultiToSingleDimensionPartitionMapping(partition_dimension_name=WORKSPACE)

# The per-workspace assets' backfill policy, and the stats' too: one backfill dialog, one policy
# (no "varying backfill policies" notice).
ONE_PER_RUN = BackfillPolicy.multi_run(max_partitions_per_run=1)


def _offsets(zone: str, year: int) -> list[dt.timedelta]:
    """The zone's UTC offset at noon UTC of every day of a year (DST included)."""
    tz, start = ZoneInfo(zone), dt.datetime(year, 1, 1, 12, tzinfo=dt.UTC)
    return [(start + dt.timedelta(days=n)).astimezone(tz).utcoffset() for n in range(366)]


def partition_timezone(settings: Settings, year: int | None = None) -> str:
    """The zone of the date dimension: the one whose day ends first, so that day D's partition
    exists as soon as any workspace's D has ended (Dagster adds a daily partition when its day
    ends in the partitions' zone).

    With one zone (the usual case) that is the zone itself. With several, it is the configured
    zone that is east of (or level with) every other all year round; when DST makes them swap
    places, a fixed-offset zone (Etc/GMT-N, N whole hours east of UTC) at the largest offset.
    """
    zones = sorted({settings.zone(ws.id) for ws in settings.workspaces})
    if len(zones) == 1:
        return zones[0]
    year = year or dt.date.today().year
    offsets = {z: _offsets(z, year) for z in zones}
    for zone in sorted(zones, key=lambda z: max(offsets[z]), reverse=True):
        if all(
            all(a >= b for a, b in zip(offsets[zone], offsets[other], strict=True))
            for other in zones
        ):
            return zone
    hours = math.ceil(max(max(o) for o in offsets.values()).total_seconds() / 3600)
    return "UTC" if hours == 0 else f"Etc/GMT{-hours:+d}"  # POSIX sign: Etc/GMT-5 is UTC+5


def build_partitions(settings: Settings) -> MultiPartitionsDefinition:
    """Keys read `YYYY-MM-DD|WORKSPACE_ID` (dimensions in name order)."""
    return MultiPartitionsDefinition(
        {
            DATE: DailyPartitionsDefinition(
                start_date=settings.start_date.isoformat(), timezone=partition_timezone(settings)
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


@dataclass(frozen=True)
class RunDay:
    """One day x workspace partition of a stats run, its key parsed once for the whole run."""

    key: str  # `2024-12-22|WS_ALPHA`: also how messages name the partition
    workspace_id: str
    stat_date: dt.date

    @classmethod
    def of(cls, key: str) -> RunDay:
        workspace_id, stat_date = split_partition_key(key)
        return cls(f"{stat_date}|{workspace_id}", workspace_id, stat_date)


class DayNotOver(ValueError):
    """A partition whose day has not ended in its workspace's own time zone: loading it would
    store part of a day as the day. Not retried: the day is loaded once it has ended."""


def refuse_unfinished_day(
    settings: Settings, workspace_id: str, stat_date: dt.date, now: dt.datetime | None = None
) -> None:
    """Raise `DayNotOver` unless `stat_date` has ended in the workspace's time zone. With
    several zones the date dimension follows the easternmost, so a western workspace's today
    can have a partition already (see `partition_timezone`)."""
    zone = settings.zone(workspace_id)
    tz = ZoneInfo(zone)
    now = (now or dt.datetime.now(dt.UTC)).astimezone(tz)
    ends = dt.datetime.combine(stat_date + dt.timedelta(days=1), dt.time(0), tzinfo=tz)
    if now < ends:
        left = ends - now
        hours, minutes = divmod(int(left.total_seconds()) // 60, 60)
        raise DayNotOver(
            f"{stat_date}|{workspace_id}: the day is not over yet in {zone} (it is "
            f"{now:%Y-%m-%d %H:%M} there; the day ends at {ends:%Y-%m-%d %H:%M %z}, in {hours} h "
            f"{minutes:02d} min); nothing was fetched or stored. It is loaded once it has ended: "
            "by the nightly run, or materialize it then"
        )


def loaded_days(instance: DagsterInstance, raw_key: AssetKey, workspace_id: str) -> set[dt.date]:
    """The workspace's days whose raw partition has been materialized (a day the API answered
    with no campaigns is loaded too, though it left no rows)."""
    return {
        day
        for ws, day in map(split_partition_key, instance.get_materialized_partitions(raw_key))
        if ws == workspace_id
    }
