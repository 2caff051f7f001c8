"""The sandbox behaves as the Stats API page says (raw HTTP, no client)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections import Counter

import pytest
import requests

from moestats_dagster.sandbox.app import STATS_PATH
from moestats_dagster.sandbox.generator import (
    ATTRIBUTION_FACTOR,
    METRICS,
    PLATFORMS,
    campaign_entries,
    campaigns_on,
    make_campaign,
)
from moestats_dagster_tests.conftest import (
    ALPHA_KEY,
    EMPTY_DAY,
    MULTI_PAGE_DAY,
    PATIENCE,
    SMALL_DAY,
)


def auth_headers(workspace="WS_ALPHA", key=ALPHA_KEY, appkey=True):
    token = base64.b64encode(f"{workspace}:{key}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    if appkey:
        headers["MOE-APPKEY"] = workspace
    return headers


def body(**overrides):
    base = {
        "request_id": "r1",
        "start_date": SMALL_DAY.isoformat(),
        "end_date": SMALL_DAY.isoformat(),
        "attribution_type": "VIEW_THROUGH",
        "metric_type": "TOTAL",
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def post(server, payload=None, headers=None, raw=None):
    return requests.post(
        server.url + STATS_PATH,
        data=raw if raw is not None else json.dumps(payload if payload is not None else body()),
        headers=headers if headers is not None else auth_headers(),
        timeout=PATIENCE,
    )


def test_answer_has_the_documented_envelope_and_nesting(sandbox):
    resp = post(sandbox, body(request_id="abc", offset=40))
    assert resp.status_code == 200
    page = resp.json()
    assert page["response_id"] == "abc"
    # SMALL_DAY has 10 campaigns: offset 40 skips past them all
    assert (page["total_campaigns"], page["current_page"], page["total_pages"]) == (10, 5, 1)
    page = post(sandbox).json()
    cid, entries = next(iter(page["data"].items()))
    assert len(cid) == 24 and isinstance(entries, list)
    platform = next(iter(entries[0]["platforms"].values()))
    variations = platform["locales"]["all_locales"]["variations"]
    assert set(variations["all_variations"]) == {
        "performance_stats",
        "conversion_goal_stats",
        "delivery_funnel",
        "failure_breakdown",
    }


@pytest.mark.parametrize(
    "headers,message",
    [
        (auth_headers(appkey=False), "MOE-APPKEY missing in Authentication Header"),
        (auth_headers(key="wrong"), "Invalid identity information found."),
        ({"MOE-APPKEY": "WS_ALPHA", "Content-Type": "application/json"}, "Authorization"),
    ],
)
def test_bad_credentials_get_401_with_a_json_error(sandbox, headers, message):
    resp = post(sandbox, headers=headers)
    assert resp.status_code == 401 and message in resp.json()["description"]
    assert resp.json()["title"] == "Authentication required"


def test_workspace_without_stats_access_gets_403(sandbox):
    resp = post(sandbox, headers=auth_headers("WS_NO_STATS", "sandbox-key-no-stats"))
    assert resp.status_code == 403


@pytest.mark.parametrize(
    "payload,field",
    [
        (body(request_id=None), "request_id"),
        (body(start_date=None), "start_date"),
        (body(end_date="2024/12/02"), "end_date"),
        (body(start_date="2024-12-05", end_date="2024-12-01"), "end_date"),
        (body(start_date="2024-11-01", end_date="2024-12-02"), "30 days"),
        (body(attribution_type="LAST_CLICK"), "attribution_type"),
        (body(metric_type="SUM"), "metric_type"),
        (body(limit=11), "limit"),
        (body(limit=0), "limit"),
        (body(offset=-1), "offset"),
        (body(campaign_ids=[str(i) for i in range(11)]), "campaign_ids"),
        (body(campaign_ids=["a", "a"]), "duplicates"),
    ],
)
def test_invalid_bodies_get_400_naming_the_field(sandbox, payload, field):
    resp = post(sandbox, payload)
    assert resp.status_code == 400 and field in resp.json()["description"]
    assert resp.json()["title"] == "Bad Request" and resp.json()["code"] == "E400"


def test_non_json_content_type_or_body_gets_400(sandbox):
    assert post(sandbox, raw="{not json").status_code == 400
    headers = {**auth_headers(), "Content-Type": "text/plain"}
    assert post(sandbox, headers=headers).status_code == 400


def test_rate_limit_answers_429_without_body_and_sends_headers(make_sandbox):
    from moestats_dagster.sandbox.app import SandboxWorkspace

    server = make_sandbox(workspaces=[SandboxWorkspace("WS_ALPHA", ALPHA_KEY, rate_limit=3)])
    answers = [post(server) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert [a.headers["x-ratelimit-remaining"] for a in answers] == ["2", "1", "0", "0"]
    assert answers[3].content == b"" and answers[3].headers["x-ratelimit-limit"] == "3"
    assert int(answers[3].headers["x-ratelimit-reset"]) > dt.datetime.now().timestamp()


def test_calendar_has_empty_days_and_multi_page_days():
    assert campaigns_on("WS_ALPHA", EMPTY_DAY) == []
    assert len(campaigns_on("WS_ALPHA", MULTI_PAGE_DAY)) > 20
    sizes = [
        len(campaigns_on("WS_ALPHA", dt.date(2024, 1, 1) + dt.timedelta(d))) for d in range(90)
    ]
    assert sizes.count(0) >= 3 and sum(s > 20 for s in sizes) >= 5


def test_every_channel_appears_with_its_documented_metrics():
    campaigns = [make_campaign("WS_ALPHA", i) for i in range(400)]
    assert {c.channel for c in campaigns} == set(PLATFORMS)
    for c in campaigns[:80]:
        for entry in campaign_entries("WS_ALPHA", c, "2024-12-01", "TOTAL", "VIEW_THROUGH"):
            for platform in entry["platforms"].values():
                block = platform["locales"]["all_locales"]["variations"]["all_variations"]
                assert tuple(block["performance_stats"]) == METRICS[c.channel]


def test_shapes_include_locales_variations_control_groups_and_multi_entry():
    campaigns = [make_campaign("WS_ALPHA", i) for i in range(80)]
    assert any(len(c.locales) > 1 for c in campaigns)
    assert any(len(c.variations) > 1 for c in campaigns)
    assert any(c.control_groups for c in campaigns)
    assert any(c.entries > 1 for c in campaigns)
    assert any(" " in g for c in campaigns for g in c.goals)


def _blocks(entries):
    for entry in entries:
        for platform in entry["platforms"].values():
            for locale in platform["locales"].values():
                yield from locale["variations"].items()


def test_unique_never_exceeds_total_and_rates_follow_their_formulas():
    for i in range(60):
        c = make_campaign("WS_ALPHA", i)
        total = campaign_entries("WS_ALPHA", c, "2024-12-01", "TOTAL", "VIEW_THROUGH")
        unique = campaign_entries("WS_ALPHA", c, "2024-12-01", "UNIQUE", "VIEW_THROUGH")
        for (name, t), (_, u) in zip(_blocks(total), _blocks(unique), strict=True):
            if "performance_stats" not in t:
                continue
            tp, up = t["performance_stats"], u["performance_stats"]
            for key, value in tp.items():
                if isinstance(value, int):
                    assert up[key] <= value, (c.campaign_id, name, key)
            if tp.get("attempted") and "sent_rate" in tp:
                assert tp["sent_rate"] == round(tp["sent"] / tp["attempted"] * 100, 2)
            if tp.get("impression") and "ctr" in tp:
                assert tp["ctr"] == round(tp["click"] / tp["impression"] * 100, 2)


def test_attribution_changes_conversions_only():
    changed = Counter()
    for i in range(40):
        c = make_campaign("WS_BETA", i)
        view = campaign_entries("WS_BETA", c, "2024-12-01", "TOTAL", "VIEW_THROUGH")
        for attribution in ATTRIBUTION_FACTOR:
            other = campaign_entries("WS_BETA", c, "2024-12-01", "TOTAL", attribution)
            for (_, a), (_, b) in zip(_blocks(view), _blocks(other), strict=True):
                for key in ("performance_stats", "delivery_funnel", "failure_breakdown"):
                    assert a.get(key) == b.get(key)
                changed[attribution] += a["conversion_goal_stats"] != b["conversion_goal_stats"]
    assert changed["VIEW_THROUGH"] == 0
    assert all(changed[a] > 0 for a in ATTRIBUTION_FACTOR if a != "VIEW_THROUGH")


def test_data_is_deterministic():
    c = make_campaign("WS_ALPHA", 5)
    assert campaign_entries("WS_ALPHA", c, "2024-12-01", "UNIQUE", "IN_SESSION") == (
        campaign_entries("WS_ALPHA", c, "2024-12-01", "UNIQUE", "IN_SESSION")
    )
    assert campaigns_on("WS_ALPHA", SMALL_DAY) == campaigns_on("WS_ALPHA", SMALL_DAY)


def test_defect_injection_corrupts_exactly_one_campaign(make_sandbox):
    clean = post(make_sandbox()).json()["data"]
    dirty = post(make_sandbox(defects={"wrong_sent_rate"})).json()["data"]
    differing = [cid for cid in clean if clean[cid] != dirty[cid]]
    assert len(differing) == 1


def test_run_processes_share_the_embedded_sandboxs_rate_window(tmp_path):
    """Every run process starts its own embedded sandbox on a new port; their clients must
    still count against one window per workspace, as runs against MoEngage do."""
    import subprocess
    import sys

    probe = (
        "from moestats_dagster.config import bundled_workspaces_file as f, load_settings\n"
        "from moestats_dagster.orchestration.lib.resources import MoEngageResource as R\n"
        "o = R.for_settings(load_settings(f()))._options('WS_ALPHA', 'stats')\n"
        "print(o['base_url'], o['limiter_state_file'])\n"
    )
    seen = [
        subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
        ).stdout.split()  # fmt: skip
        for _ in range(2)
    ]
    (url_a, state_a), (url_b, state_b) = seen
    assert url_a != url_b  # two processes, two sandboxes
    assert state_a == state_b  # one window
