"""The lake proven against MoEngage's own totals: `moestats/reconciliation` asks the month's range
of the sandbox over HTTP, compares it campaign by campaign with the sum of the days in the lake,
and the heal sensor re-fetches a month that differs until it matches; a stopped flow's steps that
keep answering are loaded, and a step is dropped only on the ledger's evidence."""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import DagsterInstance, MultiPartitionKey, build_sensor_context, materialize

from moestats_dagster.lakehouse.ledger import quiet_steps
from moestats_dagster.lakehouse.warehouse import connection, read_slice, table_name
from moestats_dagster.model.schemas import (
    ANSWERS,
    CAMPAIGN_DAILY_SUMMARY,
    PERFORMANCE_STATS,
    RECONCILIATION,
)
from moestats_dagster.orchestration.defs.reconciliation import heal_plan, months_due
from moestats_dagster.report.data import build_report
from moestats_dagster.sandbox import DEFAULT_WORKSPACES
from moestats_dagster.sandbox.flows import STOPPED_ON, flow_tail_on, flows_of
from moestats_dagster_tests.conftest import ALPHA_KEY
from moestats_dagster_tests.helpers import build, run_partition

MONTH = dt.date(2024, 12, 1)
DAYS = [dt.date(2024, 12, 29), dt.date(2024, 12, 30), dt.date(2024, 12, 31)]
ALPHA = {"id": "WS_ALPHA", "api_key": ALPHA_KEY, "flows": "auto",
         "campaigns_api_key_env": "TEST_V5_WS_ALPHA"}  # fmt: skip


FEW = {"attribution_types": ["IN_SESSION", "CLICK_THROUGH"], "metric_types": ["TOTAL"]}


def defs_for(write_workspaces, server, monkeypatch, database, limiter_dir, start="2024-12-29",
             **options):  # fmt: skip
    monkeypatch.setenv("TEST_V5_WS_ALPHA", "sandbox-campaigns-key-alpha")
    path = write_workspaces(server, {**ALPHA, **options}, start_date=start)
    return build(path, database, limiter_dir)


def reconcile(defs, instance, month=MONTH):
    [asset] = [a for a in defs.assets if any(k.path[-1] == "reconciliation" for k in a.keys)]
    key = MultiPartitionKey({"period": month.isoformat(), "workspace": "WS_ALPHA"})
    result = materialize([asset], partition_key=key, resources=defs.resources, instance=instance)
    [check] = result.get_asset_check_evaluations()
    return result, check


def tick(defs, instance, cursor=None):
    """One evaluation of the heal sensor, as the daemon makes it."""
    sensor = next(s for s in defs.sensors if s.name == "moestats_heal")
    context = build_sensor_context(instance=instance, resources=defs.resources, cursor=cursor,
                                   definitions=defs)  # fmt: skip
    return sensor.evaluate_tick(context)


def report_lines(database) -> list[str]:
    """What the workspace's report says of its reconciliation."""
    with connection(database) as conn:
        report = build_report(conn, table_name(conn, CAMPAIGN_DAILY_SUMMARY), "WS_ALPHA",
                              "TOTAL", "IN_SESSION", reconciled=True)  # fmt: skip
    return report.reconciled_lines


def rows(database):
    with connection(database) as conn:
        return read_slice(conn, RECONCILIATION, workspace_id="WS_ALPHA", period=("month", MONTH))


def test_a_month_loaded_whole_matches_at_the_first_try(
    sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    # every attribution type (reconciliation asks TOTAL only: UNIQUE days would cost calls)
    defs = defs_for(write_workspaces, sandbox, monkeypatch, database, limiter_dir,
                    metric_types=["TOTAL"])  # fmt: skip
    instance = DagsterInstance.ephemeral()
    for day in DAYS:
        run_partition(defs, day, "WS_ALPHA", instance)
    before = sandbox.app.statuses().get(429, 0)
    result, check = reconcile(defs, instance)
    assert check.passed, check.metadata
    table = rows(database)
    assert len(table) and set(table.status) == {"match"}
    assert {"sent", "delivered", "clicks", "impressions", "conversions", "revenue"} <= set(
        table.metric
    )
    # every configured attribution type, flow steps included
    assert set(table.attribution_type) - {""} == {
        "VIEW_THROUGH", "CLICK_THROUGH", "IN_SESSION", "TOTAL_CONVERSIONS", "CLICK_CONVERSIONS"
    }  # fmt: skip
    steps = {c for f in flows_of("WS_ALPHA", 6) for c in f.campaigns()}
    assert steps & set(table.campaign_id)
    assert sandbox.app.statuses().get(429, 0) == before  # waits before the limit, never after
    meta = result.asset_materializations_for_node("moestats__reconciliation")[0].metadata
    assert meta["match"].value == len(table) and meta["api_calls"].value >= 5
    assert report_lines(database) == [
        "Reconciled with MoEngage up to December 2024: every campaign's days add up to "
        "MoEngage's own month totals."
    ]


def test_late_conversions_are_found_short_healed_without_anyone_acting_and_then_match(
    make_sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    server = make_sandbox(late_conversions=("WS_ALPHA",))
    defs = defs_for(write_workspaces, server, monkeypatch, database, limiter_dir, **FEW)
    instance = DagsterInstance.ephemeral()
    for day in DAYS:  # each day's first answer: its late conversions not in yet
        run_partition(defs, day, "WS_ALPHA", instance)

    _, check = reconcile(defs, instance)
    table = rows(database)
    assert not check.passed
    short = table[table.status == "lake_short"]
    assert len(short) and set(short.metric) <= {"conversions", "revenue"}
    assert "lake_short" in check.metadata["summary"].text
    assert check.metadata["first_differences"].value  # the differences named
    [line] = report_lines(database)
    assert line.startswith("Not reconciled: December 2024: ") and line.endswith("(lake_short).")

    # The heal sensor launches the month's days at once, as one range, kind heal.
    first = tick(defs, instance)
    [heal] = first.run_requests
    assert heal.tags["moestats/kind"] == "heal" and heal.job_name == "moestats_daily"
    assert heal.tags["dagster/asset_partition_range_start"] == "2024-12-29|WS_ALPHA"
    assert heal.tags["dagster/asset_partition_range_end"] == "2024-12-31|WS_ALPHA"
    again = tick(defs, instance, first.cursor)  # the next tick: no day twice in a day
    assert not again.run_requests

    for day in DAYS:  # the launched days run (their later answers carry every conversion)
        run_partition(defs, day, "WS_ALPHA", instance)
    [reconcile_again] = tick(defs, instance, again.cursor).run_requests
    assert reconcile_again.job_name == "moestats_reconcile"
    _, check = reconcile(defs, instance)
    assert check.passed, check.metadata
    assert set(rows(database).status) == {"match"}


def test_a_difference_that_survives_a_refetch_of_every_day_is_moengages(
    make_sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    server = make_sandbox(range_inconsistent=True)  # its range never equals its days
    defs = defs_for(write_workspaces, server, monkeypatch, database, limiter_dir, **FEW)
    instance = DagsterInstance.ephemeral()
    for day in DAYS:
        run_partition(defs, day, "WS_ALPHA", instance)
    _, check = reconcile(defs, instance)
    assert "lake_short" in set(rows(database).status)
    for day in DAYS:
        run_partition(defs, day, "WS_ALPHA", instance)
    _, check = reconcile(defs, instance)
    table = rows(database)
    assert "api_inconsistent" in set(table.status) and "lake_short" not in set(table.status)
    assert not check.passed and "api_inconsistent" in check.metadata["summary"].text
    assert not tick(defs, instance).run_requests  # not re-fetched again


def test_a_stopped_flows_steps_that_answer_after_it_ended_are_loaded_with_the_apis_values(
    sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    day = STOPPED_ON["STOPPED"] + dt.timedelta(days=2)
    ws = DEFAULT_WORKSPACES[0]
    tail = {c.campaign_id for c in flow_tail_on(ws, day)}
    stopped = {c for f in flows_of("WS_ALPHA", 6) if f.status == "STOPPED" for c in f.campaigns()}
    assert tail & stopped  # the sandbox's stopped flow still answers that day
    defs = defs_for(write_workspaces, sandbox, monkeypatch, database, limiter_dir, "2024-11-01",
                    **FEW)  # fmt: skip
    run_partition(defs, day, "WS_ALPHA")
    with connection(database) as conn:
        perf = read_slice(conn, PERFORMANCE_STATS, workspace_id="WS_ALPHA", stat_date=day)
        ledger = read_slice(conn, ANSWERS, workspace_id="WS_ALPHA", stat_date=day)
    after = perf[perf.campaign_id.isin(tail & stopped)]
    assert len(after) and (after.sent.fillna(0) == 0).all() and (after.click > 0).any()
    named = ledger[ledger.asked_as == "named"]
    assert set(named[named.answered].campaign_id) >= tail & stopped
    assert (ledger.campaign_id == "").sum() == 1  # the day's own row


def test_a_step_is_dropped_only_after_answering_nothing_on_flow_quiet_days_days(
    sandbox, write_workspaces, monkeypatch, database, limiter_dir
):
    defs = defs_for(write_workspaces, sandbox, monkeypatch, database, limiter_dir, "2024-11-01",
                    **FEW)  # fmt: skip
    stopped = {c for f in flows_of("WS_ALPHA", 6) if f.status == "STOPPED" for c in f.campaigns()}
    first_quiet = STOPPED_ON["STOPPED"] + dt.timedelta(days=12)  # past the sandbox's tail
    for n in range(3):
        run_partition(defs, first_quiet + dt.timedelta(days=n), "WS_ALPHA")
    with connection(database) as conn:
        after_two = quiet_steps(conn, "WS_ALPHA", first_quiet + dt.timedelta(days=2), 2)
        after_three = quiet_steps(conn, "WS_ALPHA", first_quiet + dt.timedelta(days=3), 3)
        not_yet = quiet_steps(conn, "WS_ALPHA", first_quiet + dt.timedelta(days=3), 4)
    assert stopped <= after_two and stopped <= after_three and not stopped & not_yet


def test_heal_plan_caps_days_per_workspace_and_never_repeats_a_day():
    month, at = dt.date(2024, 12, 1), dt.datetime(2025, 1, 2)
    differing = {("A", month): (at, month, dt.date(2024, 12, 31))}
    fetched = {("A", month): {dt.date(2024, 12, d): dt.datetime(2025, 1, 1) for d in range(1, 32)}}
    launch, again = heal_plan(differing, fetched, {}, 10)
    assert launch == {"A": [dt.date(2024, 12, d) for d in range(1, 11)]} and not again
    launch, _ = heal_plan(differing, fetched, {"A": set(launch["A"])}, 25)
    assert launch == {"A": [dt.date(2024, 12, d) for d in range(11, 26)]}
    refetched = {("A", month): {d: dt.datetime(2025, 1, 3) for d in fetched[("A", month)]}}
    assert heal_plan(differing, refetched, {}, 10) == ({}, [("A", month)])


def test_the_cadence_is_the_running_month_weekly_and_a_closed_month_twice():
    from moestats_dagster.config.settings import Settings

    settings = Settings(start_date=dt.date(2024, 1, 1),
                        workspaces=[{"id": "W", "base_url": "sandbox"}])  # fmt: skip
    monday = dt.date(2026, 12, 7)
    assert months_due(settings, monday) == [dt.date(2026, 12, 1)]
    assert months_due(settings, dt.date(2026, 12, 8)) == []
    assert months_due(settings, dt.date(2026, 12, 5)) == [dt.date(2026, 10, 1),
                                                         dt.date(2026, 11, 1)]  # fmt: skip


def test_moestats_reconcile_prints_the_table_and_heals_by_hand(
    make_sandbox, write_workspaces, monkeypatch, database, limiter_dir, tmp_path, capsys
):
    from moestats_dagster.operations.cli import main

    server = make_sandbox(late_conversions=("WS_ALPHA",))
    defs = defs_for(write_workspaces, server, monkeypatch, database, limiter_dir, **FEW)
    for day in DAYS:
        run_partition(defs, day, "WS_ALPHA")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("MOESTATS_LAKE_PATH", database)
    monkeypatch.setenv("MOESTATS_WORKSPACES_FILE", str(tmp_path / "workspaces.yaml"))
    assert main(["reconcile", "--month", "2024-12"]) == 1
    out = capsys.readouterr().out
    assert "WS_ALPHA 2024-12: match" in out and "lake_short" in out and "(lake_short)" in out
    assert main(["reconcile", "--workspace", "WS_ALPHA", "--month", "2024-12", "--heal"]) == 0
    out = capsys.readouterr().out
    healed = out.split("again")[-1]
    assert "fetching its 3 days again" in out and "match" in healed and "lake_short" not in healed
    main(["doctor"])  # reads the same reconciliation: shown, never fatal
    assert "Reconciliation with MoEngage (moestats reconcile): WS_ALPHA matches to 2024-12" in (
        capsys.readouterr().out
    )
    with pytest.raises(SystemExit) as info:
        main(["reconcile", "--month", "December"])
    assert info.value.code == 2 and "is not YYYY-MM" in capsys.readouterr().err
