"""No half-days: a partition whose day has not ended in its workspace's own time zone is refused."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from dagster import DagsterInstance

from moestats_dagster.config import load_settings
from moestats_dagster.orchestration.lib.partitions import (
    DayNotOver,
    build_partitions,
    partition_key,
    refuse_unfinished_day,
)
from moestats_dagster_tests.conftest import ALPHA_KEY
from moestats_dagster_tests.helpers import build, run_partition, slice_of

EAST, WEST = "Pacific/Kiritimati", "Pacific/Pago_Pago"  # UTC+14 and UTC-11


def two_zones(sandbox, write_workspaces):
    return write_workspaces(
        sandbox,
        {"id": "WS_ALPHA", "api_key": ALPHA_KEY, "timezone": EAST},
        {"id": "WS_BETA", "api_key": "sandbox-key-beta", "timezone": WEST},
    )


def test_a_western_workspaces_today_has_a_partition_but_is_refused_with_nothing_fetched(
    sandbox, write_workspaces, database, limiter_dir
):
    path = two_zones(sandbox, write_workspaces)
    settings = load_settings(path)
    today_west = dt.datetime.now(ZoneInfo(WEST)).date()
    key = str(partition_key(today_west, "WS_BETA"))
    partitions = build_partitions(settings)
    assert key in partitions.get_partition_keys()  # the date dimension follows the east
    defs = build(path, database, limiter_dir)
    result = run_partition(defs, today_west, "WS_BETA", instance=DagsterInstance.ephemeral(),
                           raise_on_error=False)  # fmt: skip
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.event_specific_data.error.message
    assert "not over yet in Pacific/Pago_Pago" in message and "nothing was fetched" in message
    assert not [c for c in sandbox.app.calls if c.workspace_id == "WS_BETA"]
    assert slice_of(database, "campaign_stats_raw", today_west, "WS_BETA").empty
    # the eastern workspace's yesterday has ended: it loads
    yesterday_east = dt.datetime.now(ZoneInfo(EAST)).date() - dt.timedelta(days=1)
    assert run_partition(defs, yesterday_east, "WS_ALPHA").success


@pytest.mark.parametrize(
    ("zone", "now", "day", "over"),
    [
        (WEST, "2026-12-06T15:32:00+00:00", "2026-12-06", False),  # 04:32 in Pago Pago
        (WEST, "2026-12-07T11:00:00+00:00", "2026-12-06", True),  # just after its midnight
        (EAST, "2026-12-06T09:59:00+00:00", "2026-12-06", False),  # 23:59 in Kiritimati
        (EAST, "2026-12-06T10:00:00+00:00", "2026-12-06", True),
    ],
)
def test_a_day_ends_at_midnight_in_its_workspaces_zone(
    sandbox, write_workspaces, zone, now, day, over
):
    settings = load_settings(two_zones(sandbox, write_workspaces))
    workspace = "WS_ALPHA" if zone == EAST else "WS_BETA"
    moment = dt.datetime.fromisoformat(now)
    if over:
        refuse_unfinished_day(settings, workspace, dt.date.fromisoformat(day), moment)
    else:
        with pytest.raises(DayNotOver, match=f"not over yet in {zone}"):
            refuse_unfinished_day(settings, workspace, dt.date.fromisoformat(day), moment)
