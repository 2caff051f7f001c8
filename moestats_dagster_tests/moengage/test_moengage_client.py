"""The Stats API client against the sandbox over a real loopback socket."""

from __future__ import annotations

import json
import logging
import traceback
from concurrent.futures import ThreadPoolExecutor

import pytest

from moestats_dagster.moengage import (
    AccessDeniedError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    IncompleteDataError,
    ResponseShapeError,
    RetriesExhaustedError,
    StatsClient,
    UnreachableError,
    normalize_data_center,
)
from moestats_dagster.sandbox.app import SandboxWorkspace
from moestats_dagster.sandbox.generator import campaign_entries, campaigns_on
from moestats_dagster_tests.conftest import ALPHA_KEY, EMPTY_DAY, MULTI_PAGE_DAY, SMALL_DAY


def client_for(server, key: str = ALPHA_KEY, workspace: str = "WS_ALPHA", **kw) -> StatsClient:
    kw.setdefault("backoff_factor", 0.01)
    return StatsClient(workspace_id=workspace, api_key=key, base_url=server.url, **kw)


def test_day_across_several_pages_returns_every_campaign_verbatim(sandbox):
    expected = campaigns_on("WS_ALPHA", MULTI_PAGE_DAY)
    assert len(expected) > 30  # 4+ pages
    with client_for(sandbox) as client:
        day = client.fetch_day(
            stat_date=MULTI_PAGE_DAY, metric_type="TOTAL", attribution_type="VIEW_THROUGH"
        )
        assert client.counters.pages == -(-len(expected) // 10)
    assert day.total_campaigns == len(expected)
    assert list(day.campaigns) == [c.campaign_id for c in expected]
    for campaign in expected:
        assert json.loads(day.campaigns[campaign.campaign_id]) == campaign_entries(
            "WS_ALPHA", campaign, MULTI_PAGE_DAY.isoformat(), "TOTAL", "VIEW_THROUGH"
        )


def test_empty_day_is_one_call_and_no_campaigns(sandbox):
    with client_for(sandbox) as client:
        days = client.fetch_days(
            stat_date=EMPTY_DAY, combinations=[("TOTAL", "VIEW_THROUGH"), ("UNIQUE", "IN_SESSION")]
        )
        assert client.counters.calls == 2
    assert [(d.total_campaigns, d.campaigns) for d in days] == [(0, {}), (0, {})]


def test_campaign_ids_are_asked_ten_at_a_time(make_sandbox):
    server = make_sandbox(
        workspaces=[SandboxWorkspace("WS_ALPHA", ALPHA_KEY, universe=40, campaigns_per_day=30)]
    )
    wanted = [c.campaign_id for c in campaigns_on("WS_ALPHA", SMALL_DAY, 40, 30)][:25]
    with client_for(server) as client:
        day = client.fetch_day(
            stat_date=SMALL_DAY,
            metric_type="UNIQUE",
            attribution_type="CLICK_THROUGH",
            campaign_ids=wanted + wanted[:3],  # repeats are asked once
        )
        assert client.counters.calls == 3  # 10 + 10 + 5 ids; the sandbox refuses > 10
    assert sorted(day.campaigns) == sorted(wanted)
    assert day.total_campaigns == 25


@pytest.mark.parametrize("mode", ["page_index", "drop_campaign", "repeat_campaign"])
def test_paging_that_misbehaves_is_refused_not_returned_partial(make_sandbox, mode):
    server = make_sandbox(pagination=mode)
    with client_for(server) as client, pytest.raises(IncompleteDataError) as info:
        client.fetch_day(
            stat_date=MULTI_PAGE_DAY, metric_type="TOTAL", attribution_type="VIEW_THROUGH"
        )
    assert "WS_ALPHA" in str(info.value) and "2024-12-03" in str(info.value)


def test_calls_that_arrive_late_still_count_against_the_window_from_their_answer(make_sandbox):
    """Three calls sent at once reach the server 0.5 s late (a slow network, a loaded machine);
    counting them from when they were sent, the fourth would arrive inside the server's window
    with all three and get a 429. Counted from their answers, it waits long enough."""
    server = make_sandbox(
        workspaces=[SandboxWorkspace("WS_ALPHA", ALPHA_KEY, rate_limit=3, universe=200,
                                     campaigns_per_day=150)],
        window_seconds=1.0, transit_seconds=0.5, transit_calls=3,
    )  # fmt: skip
    with client_for(server, rate_limit_per_minute=3, window_seconds=1.0, max_retries=0) as client:

        def page(offset: int):
            return client.fetch_page(stat_date=SMALL_DAY, metric_type="TOTAL",
                                     attribution_type="VIEW_THROUGH", offset=offset)  # fmt: skip

        with ThreadPoolExecutor(3) as pool:
            assert len(list(pool.map(page, [0, 10, 20]))) == 3
        page(30)
    assert server.app.statuses() == {200: 4}


def test_150_calls_at_a_scaled_down_limit_get_no_429(make_sandbox):
    # 75 calls per 2 s stands for 100 per minute; 150 calls need three windows.
    server = make_sandbox(
        workspaces=[
            SandboxWorkspace(
                "WS_ALPHA", ALPHA_KEY, rate_limit=75, universe=200, campaigns_per_day=150
            )
        ],
        window_seconds=2.0,
    )
    with client_for(server, rate_limit_per_minute=75, window_seconds=2.0) as client:
        days = client.fetch_days(
            stat_date=SMALL_DAY,
            combinations=[
                ("TOTAL", "VIEW_THROUGH"),
                ("UNIQUE", "VIEW_THROUGH"),
                ("TOTAL", "IN_SESSION"),
            ],
        )
        assert client.counters.calls == 45
        more = [
            client.fetch_page(
                stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="CLICK_THROUGH", offset=o
            )
            for o in range(0, 1050, 10)
        ]
        assert client.counters.calls == 150
        assert client.counters.throttled == 0
    assert all(d.total_campaigns == 150 for d in days) and len(more) == 105
    assert server.app.statuses() == {200: 150}
    arrivals = sorted(c.at for c in server.app.calls)
    assert max(sum(1 for t in arrivals if s <= t < s + 2.0) for s in arrivals) <= 75


def test_injected_500s_and_a_429_burst_are_ridden_out(make_sandbox):
    server = make_sandbox(fail_first=3, throttle_burst=2, window_seconds=0.5)
    with client_for(server, window_seconds=0.5) as client:
        day = client.fetch_day(
            stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="IN_SESSION"
        )
        counters = client.counters
    assert day.total_campaigns == 10
    assert (counters.server_errors, counters.throttled, counters.retries) == (3, 2, 5)
    assert counters.calls == 6 and counters.pages == 1


def test_retries_are_bounded(make_sandbox):
    server = make_sandbox(fail_first=100)
    with client_for(server, max_retries=3) as client, pytest.raises(RetriesExhaustedError) as info:
        client.fetch_day(stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="IN_SESSION")
    assert client.counters.calls == 4
    assert "HTTP 500" in str(info.value) and "4 attempts" in str(info.value)


def test_wrong_key_fails_fast_with_401_advice(sandbox):
    with client_for(sandbox, key="not-the-key") as client, pytest.raises(AuthenticationError) as e:
        client.fetch_day(stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="IN_SESSION")
    assert client.counters.calls == 1
    message = str(e.value)
    assert (
        "check the workspace id and that the env var holds the Campaign report API key" in message
    )
    assert 'title="Authentication required"' in message  # MoEngage's error body, all three keys
    assert 'description="Invalid identity information found."' in message
    assert "code=null" in message


def test_workspace_without_stats_access_fails_fast_with_403_advice(sandbox):
    with (
        client_for(sandbox, key="sandbox-key-no-stats", workspace="WS_NO_STATS") as client,
        pytest.raises(AccessDeniedError) as e,
    ):
        client.fetch_day(stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="IN_SESSION")
    assert client.counters.calls == 1
    assert "the Stats API is not enabled for this workspace" in str(e.value)
    assert "ask MoEngage (support or your CSM) to enable the Stats API" in str(e.value)
    assert 'title="Forbidden Request", description=null' in str(e.value)


def test_bad_request_carries_the_api_message_and_the_body(sandbox):
    with client_for(sandbox) as client, pytest.raises(BadRequestError) as e:
        client.fetch_page(
            stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="IN_SESSION", offset=-10
        )
    assert client.counters.calls == 1
    assert "offset -10 must be an integer >= 0" in e.value.api_message
    assert e.value.body["offset"] == -10 and '"offset":-10' in str(e.value)


def test_non_json_200_is_an_error_naming_what_was_wrong(make_sandbox):
    server = make_sandbox(malformed=1)
    with client_for(server) as client, pytest.raises(ResponseShapeError) as e:
        client.fetch_day(stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="IN_SESSION")
    assert "not JSON" in str(e.value) and "text/html" in str(e.value)


@pytest.mark.parametrize("given,canonical", [("1", "01"), ("01", "01"), (6, "06"), ("101", "101")])
def test_data_center_allowlist_accepts_known_values(given, canonical):
    assert normalize_data_center(given) == canonical
    client = StatsClient(workspace_id="W", api_key="k", data_center=given)
    assert client.base_url == f"https://api-{canonical}.moengage.com"


@pytest.mark.parametrize("bad", ["7", "00", "01.evil.com", "api-01", "", "1;rm"])
def test_data_center_outside_the_allowlist_is_refused(bad):
    with pytest.raises(ConfigurationError) as e:
        StatsClient(workspace_id="W", api_key="k", data_center=bad)
    assert "01, 02, 03, 04, 05, 06, 101" in str(e.value)


def test_api_key_never_appears_in_logs_errors_or_reprs(make_sandbox, caplog):
    secret = "sEcReT-KEY-123"
    server = make_sandbox(
        workspaces=[SandboxWorkspace("WS_ALPHA", secret)], fail_first=2, window_seconds=0.5
    )
    caplog.set_level(logging.DEBUG)
    texts = []
    with client_for(server, key=secret) as client:
        client.fetch_day(stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="IN_SESSION")
        texts += [repr(client), repr(client._transport), str(vars(client))]
    for bad_key, error in [("wrong", AuthenticationError), (secret, BadRequestError)]:
        with client_for(server, key=bad_key) as client, pytest.raises(error) as e:
            client.fetch_page(
                stat_date=SMALL_DAY, metric_type="X", attribution_type="IN_SESSION", offset=0
            )
        texts += [str(e.value), repr(e.value), "".join(traceback.format_exception(e.value))]
    texts += [r.getMessage() for r in caplog.records]
    assert any("retry" in t for t in texts)  # the retries were logged ...
    assert not [t for t in texts if secret in t]  # ... without the key


def test_a_full_window_reported_by_the_server_is_waited_for(make_sandbox):
    # Another client (its own limiter) has used 9 of the 10 calls of the window: our first call
    # is answered 200 with x-ratelimit-remaining 0, and our next call waits for the reset.
    server = make_sandbox(
        workspaces=[SandboxWorkspace("WS_ALPHA", ALPHA_KEY, rate_limit=10)], window_seconds=2.0
    )
    with client_for(server, rate_limit_per_minute=10, window_seconds=2.0) as other:
        for _ in range(9):
            other.fetch_page(
                stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="IN_SESSION"
            )
    with client_for(server, rate_limit_per_minute=10, window_seconds=2.0) as client:
        for _ in range(2):
            client.fetch_page(
                stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="IN_SESSION"
            )
        assert client.counters.throttled == 0
    assert server.app.statuses() == {200: 11}
    arrivals = sorted(c.at for c in server.app.calls)
    assert arrivals[-1] - arrivals[0] >= 2.0  # the 11th call left the first call's window


def test_every_request_has_a_timeout(make_sandbox):
    server = make_sandbox(latency_seconds=1.0)
    with (
        client_for(server, timeout=(1.0, 0.2), connection_retries=1) as client,
        pytest.raises(UnreachableError, match="read timeout") as info,
    ):
        client.fetch_page(stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="IN_SESSION")
    assert client.counters.calls == 2 and client.counters.server_errors == 2
    assert info.value.cause == "read timeout" and info.value.port == server.port
