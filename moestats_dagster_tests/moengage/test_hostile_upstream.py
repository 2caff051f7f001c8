"""A hostile network or gateway: every failure is bounded, fast, named, and keeps the key secret.

Each test talks HTTP to the sandbox (or to a closed port) over a real loopback socket. Time bounds
here are generous ceilings that only a hang would cross; the figures are in docs/client.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import os
import socket
import threading
import time

import pytest

from moestats_dagster.model.frames import raw_frame
from moestats_dagster.model.normalize import MalformedPayloadError, normalize_partition
from moestats_dagster.moengage import (
    AccessDeniedError,
    ConfigurationError,
    IncompleteDataError,
    RequestFailed,
    ResponseShapeError,
    StatsClient,
    UnreachableError,
)
from moestats_dagster.moengage.ratelimit import (
    STATE_DIR_ENV,
    SlidingWindowLimiter,
    default_state_dir,
)
from moestats_dagster.sandbox.generator import campaigns_on
from moestats_dagster_tests.conftest import ALPHA_KEY, MULTI_PAGE_DAY, SMALL_DAY

ALPHA_TOKEN = base64.b64encode(f"WS_ALPHA:{ALPHA_KEY}".encode()).decode()


def client_for(base_url: str, **kw) -> StatsClient:
    kw.setdefault("backoff_factor", 0.01)
    return StatsClient(workspace_id="WS_ALPHA", api_key=ALPHA_KEY, base_url=base_url, **kw)


def fetch_one(client: StatsClient, day: dt.date = SMALL_DAY):
    return client.fetch_day(stat_date=day, metric_type="TOTAL", attribution_type="IN_SESSION")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(fn):
    started = time.monotonic()
    try:
        fn()
    finally:
        timed.seconds = time.monotonic() - started


# -- no answer at all ---------------------------------------------------------------------------


def test_a_refused_connection_fails_in_seconds_naming_host_port_cause_and_fix():
    port = closed_port()
    with client_for(f"http://127.0.0.1:{port}") as client, pytest.raises(UnreachableError) as info:
        timed(lambda: fetch_one(client))
    error = info.value
    assert (error.host, error.port, error.cause) == ("127.0.0.1", port, "refused")
    assert "Fix: check base_url" in str(error) and "HTTPS_PROXY" in str(error)
    assert client.counters.calls == 3  # the call and its two connection retries, no more
    assert timed.seconds < 20


def test_an_unresolvable_host_fails_at_once_and_points_at_data_center():
    with (
        client_for("https://api-01.moestats-unresolvable.invalid") as client,
        pytest.raises(UnreachableError) as info,
    ):
        timed(lambda: fetch_one(client))
    assert info.value.cause == "DNS" and info.value.port == 443
    assert "does not resolve" in str(info.value) and "DNS" in str(info.value)
    assert client.counters.calls == 1  # DNS failures are not retried
    assert timed.seconds < 20


def test_a_data_center_host_that_does_not_resolve_names_the_data_center_fix():
    with (
        StatsClient(workspace_id="WS_ALPHA", api_key=ALPHA_KEY, data_center="101") as client,
        pytest.raises(UnreachableError) as info,
    ):
        fetch_one(client)
    assert "api-101.moengage.com:443" in str(info.value)
    assert "check data_center in the workspaces file" in str(info.value)


def test_a_silent_server_is_given_up_on_after_the_read_timeouts(make_sandbox):
    server = make_sandbox(silent_seconds=30)
    with (
        client_for(server.url, timeout=(1.0, 0.5), connection_retries=1) as client,
        pytest.raises(UnreachableError, match="sent nothing for too long"),
    ):
        timed(lambda: fetch_one(client))
    assert client.counters.calls == 2
    assert timed.seconds < 10  # 2 x 0.5 s, not 30 s


def test_a_trickling_body_is_cut_at_the_call_deadline(make_sandbox):
    server = make_sandbox(trickle_bytes_per_second=20)  # a body of kilobytes: minutes
    with (
        client_for(server.url, call_deadline_seconds=1.0, connection_retries=0) as client,
        pytest.raises(UnreachableError) as info,
    ):
        timed(lambda: fetch_one(client))
    assert info.value.cause == "deadline"
    assert "did not send a complete answer within 1 s" in str(info.value)
    assert timed.seconds < 10


def test_a_body_trickling_with_no_length_is_reported_as_the_deadline_not_as_bad_json(
    make_sandbox,
):
    # Before: the body cut at the deadline ended "cleanly" and was reported as "not JSON".
    server = make_sandbox(trickle_bytes_per_second=1, trickle_without_length=True)
    with (
        client_for(server.url, call_deadline_seconds=1.0, connection_retries=0) as client,
        pytest.raises(UnreachableError) as info,
    ):
        fetch_one(client)
    assert info.value.cause == "deadline" and "not JSON" not in str(info.value)
    assert "did not send a complete answer within 1 s" in str(info.value)


def test_json_nested_beyond_any_answer_is_a_named_shape_error(make_sandbox):
    # Before: a raw RecursionError naming nothing.
    server = make_sandbox(deep_json=100_000)
    with client_for(server.url) as client, pytest.raises(ResponseShapeError) as info:
        fetch_one(client)
    message = str(info.value)
    assert "workspace WS_ALPHA" in message and "nested deeper than 1024 levels" in message
    assert str(SMALL_DAY) in message  # the request names the day


def test_the_first_permanent_failure_stops_the_calls_in_flight(make_sandbox):
    server = make_sandbox(silent_seconds=20)  # every call hangs
    client = client_for(server.url, timeout=(1.0, 30.0), call_deadline_seconds=60.0)
    boom = RequestFailed("workspace WS_ALPHA: another page failed for good")
    threading.Timer(0.5, client._transport.cancel, args=(boom,)).start()
    with client, pytest.raises(Exception) as info:
        timed(lambda: client.fetch_days(
            stat_date=MULTI_PAGE_DAY,
            combinations=[("TOTAL", a) for a in ("IN_SESSION", "VIEW_THROUGH", "CLICK_THROUGH")],
        ))  # fmt: skip
    assert "another page failed for good" in str(info.value)
    assert timed.seconds < 5  # cut at once, not after the 20 s silence or a 30 s timeout


def test_retries_stop_when_the_run_retry_budget_is_used_up(make_sandbox):
    server = make_sandbox(fail_first=1000)  # MoEngage answering 500 without end
    with (
        client_for(server.url, max_retries=100, backoff_factor=0.2, retry_budget_seconds=2.0) as c,
        pytest.raises(RequestFailed, match="retry budget of 2 s is used up"),
    ):
        timed(lambda: fetch_one(c))
    assert timed.seconds < 10 and c.counters.calls < 100


# -- 429s and shared rate-limit state -----------------------------------------------------------


def test_a_huge_retry_after_is_capped_logged_and_kept_out_of_shared_state(
    make_sandbox, tmp_path, caplog
):
    server = make_sandbox(throttle_burst=1, retry_after="100000", window_seconds=2.0)
    state = tmp_path / "state" / "ws.json"
    caplog.set_level(logging.WARNING, "moestats_dagster.moengage")
    with client_for(server.url, window_seconds=2.0, limiter_state_file=str(state)) as client:
        timed(lambda: fetch_one(client))  # the 429, then a wait of the cap (2 windows), then 200
        assert client.counters.throttled == 1
    assert timed.seconds < 10
    assert "asking to wait 100000 s (Retry-After); waiting 4 s, the cap" in caplog.text
    paused_until = json.loads(state.read_text())["paused_until"]
    assert paused_until <= time.time() + 4


def test_a_pause_left_in_shared_state_expires_instead_of_stalling_later_runs(tmp_path):
    state = tmp_path / "state" / "ws.json"
    state.parent.mkdir(mode=0o700)
    state.write_text(
        json.dumps({"sent": [time.time() + 3600] * 5, "paused_until": time.time() + 6 * 3600})
    )
    limiter = SlidingWindowLimiter(100, window_seconds=1.0, state_file=state)
    waits: list[float] = []
    timed(lambda: limiter.acquire(on_wait=lambda s, why: waits.append(s)))
    assert timed.seconds < 5 and max(waits) <= 2.0  # capped at two windows, and visible
    assert json.loads(state.read_text())["paused_until"] <= time.time() + 2.0


def test_the_state_file_is_never_followed_through_a_symlink(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (folder / "ws.json").symlink_to(victim)
    limiter = SlidingWindowLimiter(10, window_seconds=1.0, state_file=folder / "ws.json")
    with pytest.raises(ConfigurationError, match="is a symlink; refusing to follow it"):
        limiter.acquire()
    assert victim.read_text() == "keep me"


def test_a_state_folder_others_may_write_to_is_refused(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)
    with pytest.raises(ConfigurationError, match="writable by other users"):
        SlidingWindowLimiter(10, state_file=folder / "ws.json")


def test_rate_windows_live_in_a_per_user_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_state_dir() == tmp_path / "xdg" / "moestats"
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "explicit"))
    assert default_state_dir() == tmp_path / "explicit"


# -- answers that lie about their size ----------------------------------------------------------


def test_an_inflated_total_fails_at_the_first_short_page_after_a_few_calls(make_sandbox):
    server = make_sandbox(overreport_total=15)
    with client_for(server.url) as client, pytest.raises(IncompleteDataError) as info:
        fetch_one(client, MULTI_PAGE_DAY)
    assert "over-reports total_campaigns" in str(info.value)
    assert client.counters.calls <= 1 + client.max_workers  # not ceil(total / 10) planned up front


@pytest.mark.parametrize("inflation", [100_000, 2**63])
def test_an_absurd_total_is_refused_before_any_paging(make_sandbox, inflation):
    server = make_sandbox(overreport_total=inflation)
    with client_for(server.url) as client, pytest.raises(IncompleteDataError) as info:
        fetch_one(client, MULTI_PAGE_DAY)
    assert "above the 50,000 campaigns one day may hold" in str(info.value)
    assert "max_campaigns_per_day" in str(info.value)
    assert client.counters.calls == 1


def test_answers_without_page_counters_are_paged_by_total_campaigns(make_sandbox):
    server = make_sandbox(counters="no_pages")
    with client_for(server.url) as client:
        day = fetch_one(client, MULTI_PAGE_DAY)
    assert day.proven and len(day.campaigns) == len(campaigns_on("WS_ALPHA", MULTI_PAGE_DAY))


def test_answers_without_any_totals_stop_on_a_short_page_and_say_unproven(make_sandbox):
    server = make_sandbox(counters="none")
    expected = campaigns_on("WS_ALPHA", MULTI_PAGE_DAY)
    with client_for(server.url) as client:
        day = fetch_one(client, MULTI_PAGE_DAY)
        assert client.counters.pages == len(expected) // 10 + 1  # stopped on the short page
    assert not day.proven and day.total_campaigns is None
    assert list(day.campaigns) == [c.campaign_id for c in expected]


# -- what comes back in bodies ------------------------------------------------------------------


def test_the_key_never_leaves_even_when_a_gateway_echoes_it(make_sandbox, caplog):
    server = make_sandbox(echo_auth=True, fail_first=2)
    caplog.set_level(logging.DEBUG)
    with client_for(server.url, max_retries=1) as client, pytest.raises(RequestFailed) as info:
        fetch_one(client)
    with client_for(server.url) as client, pytest.raises(RequestFailed) as bad:
        client.fetch_page(stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="NOPE")
    for text in (str(info.value), repr(info.value), str(bad.value), caplog.text):
        assert "request headers: Authorization: Basic ***" in text or text is caplog.text
        assert ALPHA_KEY not in text and ALPHA_TOKEN not in text
        assert ALPHA_TOKEN.rstrip("=") not in text


def test_a_long_error_body_is_quoted_capped(make_sandbox):
    server = make_sandbox()
    server.app.route(
        "/core-services/v1/campaign-stats",
        lambda ws, body: (_ for _ in ()).throw(__import__(
            "moestats_dagster.sandbox.app", fromlist=["HttpError"]).HttpError(400, "x" * 50_000)),
        access="stats_access",
    )  # fmt: skip
    with client_for(server.url) as client, pytest.raises(RequestFailed) as info:
        fetch_one(client)
    assert len(str(info.value)) < 1500 and "more characters" in str(info.value)


def test_nan_in_an_answer_fails_naming_campaign_and_path(make_sandbox):
    server = make_sandbox(defects={"nan_rate"})
    with client_for(server.url) as client, pytest.raises(ResponseShapeError) as info:
        client.fetch_day(stat_date=SMALL_DAY, metric_type="TOTAL", attribution_type="IN_SESSION")
    message = str(info.value)
    assert ".performance_stats.ctr = NaN, which is not a number" in message
    assert "campaign " in message and "nothing was written" in message


def test_a_count_beyond_bigint_fails_naming_campaign_and_path(make_sandbox):
    server = make_sandbox(defects={"huge_count"})
    with client_for(server.url) as client:
        day = fetch_one(client)
    raw = raw_frame([day], workspace_id="WS_ALPHA", stat_date=SMALL_DAY,
                    fetched_at=dt.datetime.now(dt.UTC))  # fmt: skip
    rows = raw[["metric_type", "attribution_type", "campaign_id", "payload"]].itertuples(
        index=False, name=None
    )
    with pytest.raises(MalformedPayloadError) as info:
        normalize_partition(rows, workspace_id="WS_ALPHA", stat_date=SMALL_DAY,
                            attribution_order=["IN_SESSION"])  # fmt: skip
    assert ".performance_stats.click = " in str(info.value)
    assert "does not fit in a BIGINT count (overflow)" in str(info.value)
    assert str(info.value).startswith("campaign ")


def test_a_403_names_what_to_ask_moengage_for(sandbox):
    with (
        StatsClient(
            workspace_id="WS_NO_STATS", api_key="sandbox-key-no-stats", base_url=sandbox.url
        ) as client,  # fmt: skip
        pytest.raises(AccessDeniedError, match="ask MoEngage"),
    ):
        fetch_one(client)
