"""The nightly schedule: each workspace's yesterday after its own local day ended, DST included."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from dagster import AssetKey, DagsterInstance, build_schedule_context, instance_for_test

from moestats_dagster.config import load_settings
from moestats_dagster.orchestration.defs.schedules import (
    CATCH_UP_NIGHTS,
    catch_up_window,
    contiguous,
    nightly_requests,
)
from moestats_dagster.orchestration.lib.partitions import partition_key, partition_timezone
from moestats_dagster.orchestration.lib.retries import RETRY_TAG
from moestats_dagster.orchestration.lib.run_tags import workspace_of
from moestats_dagster_tests.conftest import ALPHA_KEY
from moestats_dagster_tests.helpers import build

BETA_KEY = "sandbox-key-beta"


def _tick(defs, at: dt.datetime, instance: DagsterInstance | None = None):
    schedule = defs.resolve_schedule_def("moestats_nightly")
    context = build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        repository_def=defs.get_repository_def(),
    )
    data = schedule.evaluate_tick(context)
    return data.run_requests or []


def test_a_tick_requests_yesterday_and_the_restatement_window_in_the_workspace_zone(
    sandbox, write_workspaces, database, limiter_dir
):
    path = write_workspaces(
        sandbox,
        {"id": "WS_ALPHA", "api_key": ALPHA_KEY},
        {"id": "WS_BETA", "api_key": BETA_KEY},
        start_date="2024-12-21",
        timezone="Asia/Kolkata",
        restatement_days=3,
        schedule_hour=2,
        catch_up_days=0,
    )
    defs = build(path, database, limiter_dir)
    # 02:00 on the 25th in Kolkata is 20:30 UTC on the 24th: "yesterday" is the 24th.
    requests = _tick(defs, dt.datetime(2024, 12, 24, 20, 30, tzinfo=dt.UTC))
    got = [(_range(r), r.tags["moestats/kind"]) for r in requests]
    assert got == [  # one run per workspace: yesterday and the restatement window before it
        (("2024-12-21|WS_ALPHA", "2024-12-24|WS_ALPHA"), "daily"),  # the 20th: before start_date
        (("2024-12-21|WS_BETA", "2024-12-24|WS_BETA"), "daily"),
    ]
    assert [workspace_of(r.tags) for r in requests] == ["WS_ALPHA", "WS_BETA"]
    assert len({r.run_key for r in requests}) == len(requests)
    # a quarter of an hour earlier, nobody is due: the tick says so instead of running
    schedule = defs.resolve_schedule_def("moestats_nightly")
    early = schedule.evaluate_tick(
        build_schedule_context(
            scheduled_execution_time=dt.datetime(2024, 12, 24, 20, 15, tzinfo=dt.UTC),
            repository_def=defs.get_repository_def(),
        )
    )
    assert not early.run_requests and "02:00 local time" in early.skip_message


def test_restatement_window_follows_the_workspaces_file(sandbox, write_workspaces):
    path = write_workspaces(sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY}, restatement_days=0)
    requests = nightly_requests(load_settings(path), dt.date(2024, 12, 25))
    assert [r.partition_key for r in requests] == ["2024-12-24|WS_ALPHA"]


# Both transitions of 2024 in both zones; schedule_hour 2 sits in the hour that is skipped in
# spring (both zones) and repeated in autumn (New York; Berlin repeats 02:00-03:00).
TRANSITIONS = {
    "spring": (dt.date(2024, 3, 9), dt.date(2024, 4, 2)),
    "autumn": (dt.date(2024, 10, 26), dt.date(2024, 11, 5)),
}


@pytest.mark.parametrize("season", sorted(TRANSITIONS))
def test_each_workspace_gets_its_yesterday_once_per_local_day_across_dst_in_two_zones(
    season, sandbox, write_workspaces, database, limiter_dir
):
    path = write_workspaces(
        sandbox,
        {"id": "WS_ALPHA", "api_key": ALPHA_KEY, "timezone": "America/New_York"},
        {"id": "WS_BETA", "api_key": BETA_KEY, "timezone": "Europe/Berlin"},
        start_date="2024-01-01",
        timezone="UTC",
        restatement_days=0,
        schedule_hour=2,
        catch_up_days=0,
    )
    defs = build(path, database, limiter_dir)
    dates = defs.resolve_job_def("moestats_daily").partitions_def.get_partitions_def_for_dimension(
        "date"
    )
    assert partition_timezone(load_settings(path)) == "Europe/Berlin"  # its days end first
    first, last = TRANSITIONS[season]
    at = dt.datetime.combine(first, dt.time(), dt.UTC)
    fired: list[tuple[str, dt.date, dt.datetime]] = []
    while at < dt.datetime.combine(last, dt.time(), dt.UTC):
        for request in _tick(defs, at):
            day, _, ws = _range(request)[1].partition("|")  # restatement_days 0: one day
            fired.append((ws, dt.date.fromisoformat(day), at))
            # the partition exists when it is asked for (Dagster refuses unknown keys)
            assert dates.end_time_for_partition_key(day) <= at, (ws, day, at)
        at += dt.timedelta(minutes=15)

    zones = {"WS_ALPHA": ZoneInfo("America/New_York"), "WS_BETA": ZoneInfo("Europe/Berlin")}
    for ws, day, tick in fired:
        local = tick.astimezone(zones[ws])
        assert local.date() == day + dt.timedelta(days=1), (ws, day, local)  # its yesterday
        assert dt.time(2) <= local.time() < dt.time(3, 15), (ws, day, local)  # at 02:00 local
    for ws in zones:
        days = [day for w, day, _ in fired if w == ws]
        assert Counter(days).most_common(1)[0][1] == 1, ws  # never twice
        expected_span = (last - first).days - 1
        assert len(days) in (expected_span, expected_span + 1), (ws, len(days))  # never skipped
        assert sorted(days) == [
            days[0] + dt.timedelta(days=n) for n in range(len(days))
        ]  # consecutive: the DST day is not lost


def test_partitions_live_in_the_zone_whose_day_ends_first(sandbox, write_workspaces):
    one = write_workspaces(
        sandbox, {"id": "WS_ALPHA", "api_key": ALPHA_KEY}, timezone="Asia/Kolkata"
    )
    assert partition_timezone(load_settings(one)) == "Asia/Kolkata"
    swapping = write_workspaces(
        sandbox,
        {"id": "WS_ALPHA", "api_key": ALPHA_KEY, "timezone": "Australia/Adelaide"},  # +9:30/+10:30
        {"id": "WS_BETA", "api_key": BETA_KEY, "timezone": "Australia/Brisbane"},  # +10 all year
    )
    # neither is east of the other all year: a fixed zone east of both, whole hours
    assert partition_timezone(load_settings(swapping), year=2024) == "Etc/GMT-11"


@pytest.fixture
def stack():
    with contextlib.ExitStack() as exits:
        yield exits


def _night(at_date: dt.date) -> dt.datetime:
    """The UTC tick at which a UTC workspace with schedule_hour 3 is due."""
    return dt.datetime.combine(at_date, dt.time(3), dt.UTC)


def test_an_outage_heals_on_the_next_night_and_a_failing_day_is_not_retried_forever(
    sandbox, write_workspaces, database, limiter_dir, stack
):
    """Days loaded, a hole and a day that fails on every try (403) in the catch-up window,
    evaluated by the real schedule against a real instance, night after night."""
    today = dt.datetime.now(dt.UTC).date()
    night = today - dt.timedelta(days=12)  # every day asked for is in the past
    path = write_workspaces(
        sandbox,
        {"id": "WS_ALPHA", "api_key": ALPHA_KEY},
        start_date=str(today - dt.timedelta(days=60)),
        restatement_days=1,
        catch_up_days=5,
    )
    defs = build(path, database, limiter_dir)
    daily = defs.resolve_job_def("moestats_daily")
    instance = stack.enter_context(instance_for_test())
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    # the window of that night: the 5 days before yesterday and the 1 restated day
    window = [night - dt.timedelta(days=n) for n in range(7, 2, -1)]
    loaded, failing = {window[0], window[3]}, window[2]
    for day in loaded:
        daily.execute_in_process(
            partition_key=partition_key(day, "WS_ALPHA"), instance=instance, run_config=quiet
        )
    sandbox.app.workspaces["WS_ALPHA"].stats_access = False  # MoEngage turned the API off
    failed = daily.execute_in_process(
        partition_key=partition_key(failing, "WS_ALPHA"),
        instance=instance,
        run_config=quiet,
        raise_on_error=False,
    )
    assert not failed.success
    # a 403 is permanent: the run says so to Dagster's run retries
    assert instance.get_run_by_id(failed.run_id).tags[RETRY_TAG] == "false"

    requests = _tick(defs, _night(night), instance)
    healed = [d for r in requests if r.tags["moestats/kind"] == "catch-up" for d in _days(r)]
    assert healed == [d for d in window if d not in loaded]  # the holes and the failed day
    assert [_days(r) for r in requests if r.tags["moestats/kind"] == "catch-up"] == [
        [window[1], window[2]], [window[4]]]  # runs of consecutive days, oldest first  # fmt: skip
    [daily_run] = [r for r in requests if r.tags["moestats/kind"] == "daily"]
    assert _days(daily_run) == [night - dt.timedelta(days=2), night - dt.timedelta(days=1)]

    # The next nights: the failed day keeps failing; after CATCH_UP_NIGHTS it is left alone
    # (the coverage check names it), while a day that was merely missing is loaded and stays.
    sandbox.app.workspaces["WS_ALPHA"].stats_access = True
    sandbox.app.faults.refuse_days = {failing.isoformat()}  # that day alone stays refused
    asked_for_failing = 0
    for n in range(CATCH_UP_NIGHTS + 2):
        requests = _tick(defs, _night(night + dt.timedelta(days=n)), instance)
        for request in requests:
            days = _days(request)
            if request.tags["moestats/kind"] != "catch-up" or not set(days) & set(window):
                continue
            asked_for_failing += failing in days
            daily.execute_in_process(  # a range runs as the daemon would run it: by its tags
                partition_key=request.partition_key,
                tags=request.tags,
                instance=instance,
                run_config=quiet,
                raise_on_error=False,
            )
    assert asked_for_failing == CATCH_UP_NIGHTS
    materialized = instance.get_materialized_partitions(
        AssetKey(["moestats", "campaign_stats_raw"])
    )
    assert {str(partition_key(d, "WS_ALPHA")) for d in window if d != failing} <= materialized


def _range(request) -> tuple[str, str]:
    """(first key, last key) of a run request: a range, or its one partition."""
    tags = request.tags
    start = tags.get("dagster/asset_partition_range_start", request.partition_key)
    return start, tags.get("dagster/asset_partition_range_end", request.partition_key)


def _days(request) -> list[dt.date]:
    first, last = (dt.date.fromisoformat(k.split("|")[0]) for k in _range(request))
    return [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]


def test_an_outage_of_ninety_days_in_ten_workspaces_is_three_runs_each(sandbox, write_workspaces):
    """Before: one run per workspace x day, 940 runs in one tick for 10 workspaces with
    catch_up_days 90, each paying a process start."""
    ids = [f"WS_{n}" for n in range(10)]
    path = write_workspaces(sandbox, *({"id": ws, "api_key": "k"} for ws in ids),
                            start_date="2024-01-01", restatement_days=3, catch_up_days=90)  # fmt: skip
    settings = load_settings(path)
    today = dt.date(2024, 12, 6)
    missing = {ws: catch_up_window(settings, today) for ws in ids}  # every day missing
    requests = nightly_requests(settings, today, ids, missing)
    per_workspace = Counter(workspace_of(r.tags) for r in requests)
    assert set(per_workspace) == set(ids) and max(per_workspace.values()) <= 3
    for ws in ids:
        asked = sorted(d for r in requests if workspace_of(r.tags) == ws for d in _days(r))
        wanted = sorted([*missing[ws], *(today - dt.timedelta(days=n) for n in range(1, 5))])
        assert asked == wanted  # every day once, none more
        assert all(len(_days(r)) <= 45 for r in requests)


def test_runs_of_days_are_consecutive_and_bounded():
    day = dt.date(2024, 3, 1)
    days = [day + dt.timedelta(days=n) for n in (0, 1, 2, 5, 6, 9)]
    assert contiguous(days, 2) == [[days[0], days[1]], [days[2]], [days[3], days[4]], [days[5]]]
