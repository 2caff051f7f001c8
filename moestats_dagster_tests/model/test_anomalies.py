"""Business anomaly checks: the pure band, and a sandbox day whose sends dropped 90 %."""

from __future__ import annotations

import datetime as dt

from dagster import DagsterInstance

from moestats_dagster.model.anomalies import band, judge
from moestats_dagster.sandbox.app import SandboxWorkspace
from moestats_dagster_tests.conftest import ALPHA_KEY
from moestats_dagster_tests.helpers import build, run_partition

MONDAY = dt.date(2024, 11, 25)


def _weekly(days: int, weekday_level: float = 1000.0, weekend_level: float = 200.0) -> dict:
    """`days` days before MONDAY: busy weekdays, quiet weekends, a little noise."""
    out = {}
    for n in range(1, days + 1):
        day = MONDAY - dt.timedelta(days=n)
        level = weekend_level if day.weekday() >= 5 else weekday_level
        out[day] = level * (1 + ((n * 37) % 11 - 5) / 100)  # ±5 %
    return out


def test_the_band_is_weekday_aware_and_robust_to_one_bad_day():
    history = _weekly(28)
    sunday = MONDAY - dt.timedelta(days=1)
    quiet_sunday = band("sent", sunday, 210.0, {d: v for d, v in history.items() if d < sunday})
    assert quiet_sunday.inside  # a weekend is compared with weekends, not with Mondays
    busy_monday = band("sent", MONDAY, 990.0, history)
    assert busy_monday.inside and 900 < busy_monday.expected < 1100
    history[MONDAY - dt.timedelta(days=7)] = 10.0  # last Monday broke
    assert band("sent", MONDAY, 990.0, history).inside  # one bad day does not widen the band
    dropped = band("sent", MONDAY, 100.0, history)
    assert not dropped.inside and dropped.describe().startswith("sent 100 is below its usual range")


def test_short_history_is_not_judged():
    outcome = judge(MONDAY, MONDAY + dt.timedelta(days=1), 3, {"sent": 1.0}, {"sent": _weekly(13)})
    assert outcome.passed and outcome.metadata["judged"] == []
    assert "13 of the last 28 days loaded, 14 needed" in outcome.metadata["summary"]


def test_conversions_wait_for_the_restatement_window_and_repeats_are_flagged():
    history = {"sent": _weekly(28), "conversions": _weekly(28)}
    low = {"sent": 90.0, "conversions": 5.0}
    nightly = judge(MONDAY, MONDAY + dt.timedelta(days=1), 3, low, history)
    assert not nightly.passed and nightly.metadata["judged"] == ["sent"]  # conversions still young
    assert nightly.metadata["already_reported"] is False
    restated = judge(MONDAY, MONDAY + dt.timedelta(days=2), 3, low, history)
    assert not restated.passed and restated.metadata["already_reported"] is True  # no new alert
    settled = judge(MONDAY, MONDAY + dt.timedelta(days=4), 3, low, history)
    assert settled.metadata["judged"] == ["sent", "conversions"]
    assert settled.metadata["already_reported"] is False  # conversions are news
    assert "conversions 5 is below" in settled.metadata["summary"]


def test_a_day_whose_sends_dropped_90_percent_warns_naming_metric_value_and_band(
    make_sandbox, write_workspaces, database, limiter_dir
):
    drop = dt.date(2024, 11, 16)
    server = make_sandbox(
        workspaces=[SandboxWorkspace("WS_ALPHA", ALPHA_KEY, campaigns_per_day=8)],
        window_seconds=1.0,
        sends_drop_on=drop.isoformat(),
    )
    small = {"attribution_types": ["CLICK_THROUGH"], "metric_types": ["TOTAL"]}
    path = write_workspaces(server, {"id": "WS_ALPHA", "api_key": ALPHA_KEY, **small})
    defs = build(path, database, limiter_dir)
    instance = DagsterInstance.ephemeral()
    verdicts = {}
    for n in range(16, -1, -1):  # 16 ordinary days, then the drop
        day = drop - dt.timedelta(days=n)
        result = run_partition(defs, day, "WS_ALPHA", instance)
        [check] = [
            e for e in result.get_asset_check_evaluations()
            if e.check_name == "headline_numbers_within_usual_range"
        ]  # fmt: skip
        verdicts[day] = check
    early = verdicts[drop - dt.timedelta(days=16)]
    assert early.passed and "not judged" in early.metadata["summary"].value  # no flood
    ordinary = [v for d, v in verdicts.items() if d != drop and v.metadata["judged"].value]
    assert ordinary and all(v.passed for v in ordinary)  # the usual ups and downs stay quiet
    dropped = verdicts[drop]
    assert not dropped.passed and dropped.severity.value == "WARN"
    summary = dropped.metadata["summary"].value
    assert "sent" in summary and "below its usual range" in summary and "delivered" in summary
    sent = dropped.metadata["sent"].value
    assert sent["value"] < sent["low"] < sent["expected"] and sent["value"] < sent["expected"] * 0.2
