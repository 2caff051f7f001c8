"""Check logic on hand-built frames: every check passes on good rows and fails on the defect."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from moestats_dagster.model import checks
from moestats_dagster.model.schemas import (
    CAMPAIGN_STATS_RAW,
    FAILURE_BREAKDOWN,
    PERFORMANCE_STATS,
)

DAY = dt.date(2024, 12, 2)


def perf(*rows: dict) -> pd.DataFrame:
    """performance_stats rows; unspecified keys get distinct defaults."""
    full = []
    for i, row in enumerate(rows):
        base = {
            "workspace_id": "W",
            "stat_date": DAY,
            "metric_type": "TOTAL",
            "campaign_id": f"c{i}",
            "entry_index": 0,
            "platform": "EMAIL",
            "locale": "all_locales",
            "variation": "all_variations",
        }
        full.append({**base, **row})
    data = {c: [r.get(c) for r in full] for c in PERFORMANCE_STATS.names}
    return PERFORMANCE_STATS.frame(data, length=len(full))


def test_sent_rate_passes_within_rounding_and_fails_beyond_it():
    good = perf(
        {"attempted": 3, "sent": 1, "sent_rate": 33.33},
        {"attempted": 0, "sent": 0, "sent_rate": 0.0},  # zero denominator expects 0
        {"attempted": 10, "sent": None, "sent_rate": 50.0},  # an operand missing: skipped
    )
    outcome = checks.rate_matches_formula(good, "sent_rate")
    assert outcome.passed and outcome.metadata["rows_checked"] == 2
    bad = perf(
        {"attempted": 3, "sent": 1, "sent_rate": 33.34},
        {"attempted": 0, "sent": 0, "sent_rate": 5.0},
    )
    outcome = checks.rate_matches_formula(bad, "sent_rate")
    assert not outcome.passed and outcome.metadata["rows_failing"] == 2
    assert outcome.rows[["campaign_id", "expected", "reported"]].values.tolist() == [
        ["c0", 33.3333, 33.34],
        ["c1", 0.0, 5.0],
    ]


@pytest.mark.parametrize(
    "rate,good,bad",
    [
        ("failure_rate", {"attempted": 8, "sent": 6, "failure_rate": 25.0}, {"attempted": 8, "sent": 6, "failure_rate": 75.0}),
        ("ctr", {"click": 1, "impression": 8, "ctr": 12.5}, {"click": 1, "impression": 8, "ctr": 1.25}),
    ],
)  # fmt: skip
def test_other_rate_formulas(rate, good, bad):
    assert checks.rate_matches_formula(perf(good), rate).passed
    outcome = checks.rate_matches_formula(perf(bad), rate)
    assert not outcome.passed and outcome.metadata["rows_failing"] == 1


def test_ctr_is_only_checked_where_impressions_exist():
    email = perf({"click": 5, "delivered": 100, "ctr": 5.0})  # no impression column value
    assert checks.rate_matches_formula(email, "ctr").metadata["rows_checked"] == 0


def test_read_rate_on_total_rows_may_use_either_reading():
    block = {"campaign_id": "w1", "platform": "WHATSAPP"}
    frame = perf(
        {**block, "metric_type": "UNIQUE", "read": 30, "delivered": 60, "read_rate": 50.0},
        {**block, "metric_type": "TOTAL", "read": 90, "delivered": 100, "read_rate": 50.0},
    )
    outcome = checks.rate_matches_formula(frame, "read_rate")  # TOTAL row: the unique reading
    assert outcome.passed and outcome.metadata["rows_checked"] == 2
    frame.loc[1, "read_rate"] = 90.0  # TOTAL row: its own counts (90 / 100) — also accepted
    assert checks.rate_matches_formula(frame, "read_rate").passed
    frame.loc[1, "read_rate"] = 70.0  # neither reading: flagged, with both operands shown
    outcome = checks.rate_matches_formula(frame, "read_rate")
    assert not outcome.passed and outcome.metadata["rows_failing"] == 1
    assert outcome.rows.metric_type.tolist() == ["TOTAL"]


def test_read_rate_on_unique_rows_uses_the_unique_counts():
    frame = perf({"metric_type": "UNIQUE", "read": 30, "delivered": 60, "read_rate": 60.0})
    assert not checks.rate_matches_formula(frame, "read_rate").passed


def test_a_day_without_total_campaigns_is_reported_unproven_not_passed():
    raw = pd.DataFrame({"metric_type": ["TOTAL"] * 2, "attribution_type": ["IN_SESSION"] * 2,
                        "campaign_id": ["a", "b"]})  # fmt: skip
    outcome = checks.raw_complete(raw, {("TOTAL", "IN_SESSION"): None})
    assert not outcome.passed and outcome.severity == "WARN"
    assert outcome.metadata["completeness_proven"] is False
    assert outcome.metadata["unproven"] == ["TOTAL/IN_SESSION"]
    duplicated = pd.concat([raw, raw.iloc[:1]])
    outcome = checks.raw_complete(duplicated, {("TOTAL", "IN_SESSION"): None})
    assert not outcome.passed and outcome.severity is None  # a repeat still blocks


def test_keys_unique_and_not_null():
    frame = perf({"campaign_id": "a"}, {"campaign_id": "a"}, {"campaign_id": "b"})
    outcome = checks.keys_unique(frame, PERFORMANCE_STATS)
    assert not outcome.passed and outcome.metadata["rows_failing"] == 2
    assert checks.keys_unique(frame.iloc[1:], PERFORMANCE_STATS).passed
    frame.loc[2, "platform"] = None
    outcome = checks.keys_not_null(frame, PERFORMANCE_STATS)
    assert not outcome.passed and outcome.metadata["null_counts"] == {"platform": 1}
    assert checks.keys_not_null(frame.iloc[:2], PERFORMANCE_STATS).passed


def test_counts_not_negative():
    frame = perf({"sent": 5, "click": -3}, {"sent": 2})
    outcome = checks.counts_not_negative(frame, PERFORMANCE_STATS)
    assert not outcome.passed and outcome.metadata["negative"] == {"click": 1}
    assert outcome.rows.campaign_id.tolist() == ["c0"]
    assert checks.counts_not_negative(frame.iloc[1:], PERFORMANCE_STATS).passed
    failures = FAILURE_BREAKDOWN.frame({"reason": ["x"], "count": [-1]}, length=1)
    assert not checks.counts_not_negative(failures, FAILURE_BREAKDOWN).passed


def test_undocumented_metrics_are_listed_by_name():
    frame = perf({"extra_metrics": json.dumps({"amp_opens": 1})}, {"extra_metrics": None})
    outcome = checks.undocumented_metrics(frame)
    assert not outcome.passed
    assert outcome.metadata["undocumented_keys"] == {
        "amp_opens": {"rows": 1, "e.g. campaign": "c0"}
    }
    assert checks.undocumented_metrics(frame.iloc[1:]).passed


def raw(*rows: tuple[str, str, str, object]) -> pd.DataFrame:
    data = {
        "workspace_id": ["W"] * len(rows),
        "stat_date": [DAY] * len(rows),
        "metric_type": [r[0] for r in rows],
        "attribution_type": [r[1] for r in rows],
        "campaign_id": [r[2] for r in rows],
        "payload": [json.dumps(r[3]) for r in rows],
    }
    return CAMPAIGN_STATS_RAW.frame(data, length=len(rows))


def test_raw_complete_fails_on_missing_repeated_or_unasked_campaigns():
    frame = raw(("TOTAL", "IN_SESSION", "a", []), ("TOTAL", "IN_SESSION", "b", []))
    assert checks.raw_complete(frame, {("TOTAL", "IN_SESSION"): 2}).passed
    assert checks.raw_complete(raw(), {("TOTAL", "IN_SESSION"): 0}).passed  # an empty day
    assert not checks.raw_complete(frame, {("TOTAL", "IN_SESSION"): 3}).passed  # one missing
    repeated = raw(*[("TOTAL", "IN_SESSION", "a", [])] * 2)
    assert not checks.raw_complete(repeated, {("TOTAL", "IN_SESSION"): 1}).passed
    outcome = checks.raw_complete(frame, {("UNIQUE", "IN_SESSION"): 0})
    assert not outcome.passed
    assert outcome.rows.to_dict("records") == [
        {"combination": "TOTAL/IN_SESSION", "problem": "stored but not asked for"}
    ]


def _entry(sent: int, conversions: int) -> list[dict]:
    block = {
        "performance_stats": {"sent": sent},
        "conversion_goal_stats": {"G": {"conversions": conversions}},
    }
    return [
        {
            "platforms": {
                "EMAIL": {"locales": {"all_locales": {"variations": {"all_variations": block}}}}
            }
        }
    ]


def test_identical_across_attribution_ignores_conversions_only():
    same = raw(
        ("TOTAL", "VIEW_THROUGH", "a", _entry(5, 1)), ("TOTAL", "IN_SESSION", "a", _entry(5, 9))
    )
    outcome = checks.identical_across_attribution(same)
    assert outcome.passed and outcome.metadata["campaigns_checked"] == 1
    odd = raw(
        ("TOTAL", "VIEW_THROUGH", "a", _entry(5, 1)), ("TOTAL", "IN_SESSION", "a", _entry(6, 1))
    )
    outcome = checks.identical_across_attribution(odd)
    assert not outcome.passed
    assert outcome.rows.differing_from_first.tolist() == [["IN_SESSION"]]


def _campaigns(parents: dict[str, str | None]) -> pd.DataFrame:
    from moestats_dagster.model.schemas import CAMPAIGNS

    ids = list(parents)
    return CAMPAIGNS.frame(
        {
            "workspace_id": ["W"] * len(ids),
            "campaign_id": ids,
            "parent_campaign_id": [parents[i] for i in ids],
        },  # fmt: skip
        length=len(ids),
    )


def test_no_parent_cycles_finds_loops_of_any_length():
    assert checks.no_parent_cycles(_campaigns({"a": None, "b": "a", "c": "b"})).passed
    outcome = checks.no_parent_cycles(
        _campaigns({"a": "c", "b": "a", "c": "b", "d": "d", "e": "a"})
    )
    assert not outcome.passed and outcome.metadata["cycles"] == 2
    assert sorted(outcome.rows.cycle) == ["a -> c -> b -> a", "d -> d"]


def test_names_present_counts_campaigns_without_a_row_or_a_name():
    frame = _campaigns({"a": None, "b": None, "c": None})
    frame["campaign_name"] = ["Sale", None, " "]
    assert checks.names_present(["a"], frame, 28).passed
    outcome = checks.names_present(["a", "x", "b", "c", "a"], frame, 28)
    assert not outcome.passed and outcome.metadata["missing_ids"] == ["b", "c", "x"]
    assert outcome.metadata["summary"].startswith("3 of 4 campaigns")
