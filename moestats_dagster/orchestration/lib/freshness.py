"""The daily deadline and the days a workspace is missing: what the coverage asset, the
freshness policy and the doctor reason with (plain functions of the settings and dates)."""

import datetime as dt
import re
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from dagster import FreshnessPolicy

from moestats_dagster.config import Settings

DEADLINE_DELAY_HOURS = 6  # after the nightly run starts, room for retries and a slow API


def deadline_hour(settings: Settings) -> int:
    return (settings.schedule_hour + DEADLINE_DELAY_HOURS) % 24


def deadline_cron(settings: Settings) -> str:
    return f"0 {deadline_hour(settings)} * * *"


def freshness_policy(settings: Settings) -> FreshnessPolicy:
    """Stale when nothing was materialized in the 24 h before the daily deadline.

    Dagster evaluates freshness per asset, not per partition; the coverage checks name the
    workspaces whose yesterday is missing.
    """
    return FreshnessPolicy.cron(
        deadline_cron=deadline_cron(settings),
        lower_bound_delta=dt.timedelta(hours=24),
        timezone=settings.timezone,
    )


def due_day(settings: Settings, workspace_id: str, now: dt.datetime) -> dt.date:
    """The latest day of a workspace whose deadline has passed: its local yesterday from
    `schedule_hour` + 6 h local time on, the day before until then."""
    local = now.astimezone(ZoneInfo(settings.zone(workspace_id)))
    shifted = local - dt.timedelta(hours=settings.schedule_hour + DEADLINE_DELAY_HOURS)
    return shifted.date() - dt.timedelta(days=1)


def missing_ranges(
    start: dt.date, end: dt.date, loaded: Iterable[dt.date]
) -> list[tuple[dt.date, dt.date]]:
    """The days from `start` to `end` (inclusive) not in `loaded`, as (first, last) ranges."""
    have = set(loaded)
    ranges: list[tuple[dt.date, dt.date]] = []
    day = start
    while day <= end:
        if day not in have:
            if ranges and ranges[-1][1] == day - dt.timedelta(days=1):
                ranges[-1] = (ranges[-1][0], day)
            else:
                ranges.append((day, day))
        day += dt.timedelta(days=1)
    return ranges


def missing_check_name(workspace_id: str, taken: set[str] | None = None) -> str:
    """`no_days_missing_<workspace>`: check names allow letters, digits and '_' only."""
    name = "no_days_missing_" + re.sub(r"[^A-Za-z0-9_]", "_", workspace_id)
    while taken is not None and name in taken:  # WS-A and WS.A would otherwise collide
        name += "_"
    return name


def backfill_command(workspace_id: str, first: dt.date, last: dt.date) -> str:
    return f"moestats backfill --workspace {workspace_id} --from {first} --to {last}"
