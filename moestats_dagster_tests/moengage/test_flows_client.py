"""The Flows API, as the sandbox serves it and as our client reads it, over real HTTP."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

import pytest
import requests

from moestats_dagster.moengage import StatsClient
from moestats_dagster.moengage.errors import (
    AccessDeniedError,
    AuthenticationError,
    BadRequestError,
    IncompleteDataError,
)
from moestats_dagster.moengage.flows import FlowsClient, campaigns_that_may_send
from moestats_dagster.sandbox import DEFAULT_WORKSPACES
from moestats_dagster.sandbox.flows import flow_campaigns_on, flows_of
from moestats_dagster_tests.conftest import ALPHA_KEY, PATIENCE

V5_KEY = "sandbox-campaigns-key-alpha"
ALPHA = DEFAULT_WORKSPACES[0]
DAY = dt.date(2024, 11, 5)  # before the sandbox's stopped and completed flows stopped


def flows_client(server, workspace="WS_ALPHA", key=V5_KEY, **options) -> FlowsClient:
    return FlowsClient(workspace_id=workspace, api_key=key, base_url=server.url, **options)


def call(server, method, path, key=V5_KEY, **kw):
    token = base64.b64encode(f"WS_ALPHA:{key}".encode()).decode()
    return requests.request(method, server.url + path, headers={"Authorization": f"Basic {token}"},
                            timeout=PATIENCE, **kw)  # fmt: skip


def test_stats_api_answers_flow_campaigns_only_when_named(sandbox):
    flow_ids = {c.campaign_id for c in flow_campaigns_on(ALPHA, DAY)}
    assert flow_ids
    with StatsClient(workspace_id="WS_ALPHA", api_key=ALPHA_KEY, base_url=sandbox.url) as client:
        unnamed = client.fetch_day(stat_date=DAY, metric_type="TOTAL",
                                   attribution_type="VIEW_THROUGH")  # fmt: skip
        named = client.fetch_day(stat_date=DAY, metric_type="TOTAL",
                                 attribution_type="VIEW_THROUGH", campaign_ids=sorted(flow_ids))  # fmt: skip
    assert not flow_ids & set(unnamed.campaigns)  # as MoEngage's spec says
    assert set(named.campaigns) == flow_ids


def test_flows_endpoints_take_the_v5_key_page_by_cursor_and_hide_archived_unless_asked(sandbox):
    assert call(sandbox, "POST", "/v5/flows/search", ALPHA_KEY, json={}).status_code == 401
    listed, cursor = [], None
    while True:
        body = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        data = call(sandbox, "POST", "/v5/flows/search", json=body).json()["data"]
        listed += data["flows"]
        if not data["has_more"]:
            break
        cursor = data["next_cursor"]
    assert len(listed) == 5 and not any(f["archived"] for f in listed)
    everything = call(sandbox, "POST", "/v5/flows/search", json={"include_archived": True})
    assert len(everything.json()["data"]["flows"]) == 6
    flow = flows_of("WS_ALPHA", 6)[0]
    read = call(sandbox, "GET", f"/v5/flows/{flow.flow_id}").json()["data"]
    assert [v["status"] for v in read["versions"]] == ["RETIRED", "LIVE"]
    old = call(
        sandbox, "GET", f"/v5/flows/{flow.flow_id}/versions/{read['versions'][0]['version_id']}"
    )
    assert old.json()["data"]["version_no"] == 1
    assert call(sandbox, "GET", "/v5/flows/nope").status_code == 404
    beta = base64.b64encode(b"WS_BETA:sandbox-campaigns-key-beta").decode()
    no_teams = requests.post(sandbox.url + "/v5/flows/search", json={}, timeout=PATIENCE,
                             headers={"Authorization": f"Basic {beta}"})  # fmt: skip
    assert no_teams.status_code == 400 and "teams" in no_teams.json()["description"]


def test_search_endpoints_name_a_flow_steps_flow(sandbox):
    flow = flows_of("WS_ALPHA", 6)[1]
    step = next(iter(flow.campaigns()))
    token = base64.b64encode(f"WS_ALPHA:{ALPHA_KEY}".encode()).decode()
    found = requests.post(
        sandbox.url + "/core-services/v1/campaigns/search", timeout=PATIENCE,
        json={"request_id": "r", "campaign_fields": {"id": [step]}, "include_child_campaigns": True},
        headers={"Authorization": f"Basic {token}", "MOE-APPKEY": "WS_ALPHA"},
    ).json()  # fmt: skip
    assert [(c["flow_id"], c["flow_name"]) for c in found] == [(flow.flow_id, flow.name)]


def test_discovery_reads_every_version_and_then_only_what_changed(sandbox):
    flows = flows_of("WS_ALPHA", 6)
    with flows_client(sandbox) as client:
        first = client.discover({})
    retired = sum(len(f.versions) - 1 for f in flows)
    assert (first.search_calls, first.flows_read, first.versions_read) == (1, 6, retired)
    every_step = {c for f in flows for c in f.campaigns()}
    found = {s.campaign_id for f in first.flows.values() for _, steps in f.versions.values()
             for s in steps}  # fmt: skip
    assert found == every_step  # retired versions' steps, archived and stopped flows' too
    nba = next(f for f in flows if f.versions[-1].next_best_action)
    live = first.flows[nba.flow_id].versions[nba.versions[-1].version_id][1]
    assert len(live) == len({s.campaign_id for s in live})  # NBA's pointers kept once

    with flows_client(sandbox) as client:
        warm = client.discover(first.flows)
    assert (warm.calls, warm.changed) == (1, False)

    sandbox.app.faults.flow_updated = {flows[0].flow_id: "2026-12-01T00:00:00.000Z"}
    with flows_client(sandbox) as client:
        edited = client.discover(first.flows)
    # the edited flow's default version is read again; its retired version is cached
    assert (edited.calls, edited.flows_read, edited.versions_read) == (2, 1, 0)
    assert edited.flows[flows[0].flow_id].summary.updated_at.startswith("2026-12-01")


def test_a_stopped_flows_steps_are_named_until_the_ledger_shows_them_quiet(sandbox):
    with flows_client(sandbox) as client:
        found = client.discover({}).flows
    flows = flows_of("WS_ALPHA", 6)
    stopped = set(next(f for f in flows if f.status == "STOPPED").campaigns())
    live = set(next(f for f in flows if f.status == "ACTIVE").campaigns())
    before = campaigns_that_may_send(found.values(), "2024-11-05", "2024-11-05")
    after = campaigns_that_may_send(found.values(), "2025-06-01", "2025-06-01")
    assert stopped <= set(before) and stopped <= set(after)  # no guess from updated_at
    quiet = campaigns_that_may_send(found.values(), "2025-06-01", "2025-06-01", stopped | live)
    assert not stopped & set(quiet) and live <= set(quiet)  # a live flow's steps stay named
    assert {c.campaign_id for c in flow_campaigns_on(ALPHA, DAY)} <= set(before)


def test_a_cursor_that_never_advances_fails_instead_of_paging_for_ever(make_sandbox):
    many = dataclasses.replace(ALPHA, flows=250)
    server = make_sandbox(workspaces=[many], flow_cursor="stuck")
    with flows_client(server) as client, pytest.raises(IncompleteDataError, match="twice"):
        client.search()


def test_refusals_name_the_key_or_permission_to_ask_for(make_sandbox):
    server = make_sandbox(workspaces=[dataclasses.replace(ALPHA, flows_access=False),
                                      DEFAULT_WORKSPACES[1]])  # fmt: skip
    with flows_client(server) as client, pytest.raises(AccessDeniedError, match="Flows API"):
        client.discover({})
    unauthorized = flows_client(server, key=ALPHA_KEY)
    with unauthorized, pytest.raises(AuthenticationError, match="campaigns:view"):
        unauthorized.discover({})
    beta = flows_client(server, "WS_BETA", "sandbox-campaigns-key-beta")
    with beta, pytest.raises(BadRequestError, match="flow_teams"):
        beta.discover({})
    with flows_client(server, "WS_BETA", "sandbox-campaigns-key-beta") as client:
        assert len(client.discover({}, teams=["Growth"]).flows) == 3


def test_flows_calls_keep_to_ten_a_second_too(make_sandbox):
    """The Flows API allows 10 calls a second besides 100 a minute: with the window scaled to
    6 s, its second is 0.1 s, and no 0.1 s of arrivals may hold more than 10 calls."""
    server = make_sandbox(workspaces=[dataclasses.replace(ALPHA, flows=40)], window_seconds=6)
    with flows_client(server, window_seconds=6) as client:
        client.discover({})
    arrivals = sorted(c.at for c in server.app.calls)
    assert len(arrivals) > 20
    assert all(arrivals[i + 10] - arrivals[i] >= 0.1 for i in range(len(arrivals) - 10))
    assert server.app.statuses() == {200: len(arrivals)}
