"""The sandbox: a WSGI emulator of MoEngage's campaign Stats API, with fault and defect injection."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any
from urllib.parse import parse_qsl

from moestats_dagster.moengage.client import (  # the API's own values
    ATTRIBUTION_TYPES,
    METRIC_TYPES,
    STATS_PATH,
)
from moestats_dagster.sandbox import defects as defect_rules
from moestats_dagster.sandbox import late
from moestats_dagster.sandbox.flows import flow_campaigns_on, flow_tail_on
from moestats_dagster.sandbox.generator import campaign_entries, campaigns_on
from moestats_dagster.sandbox.protocol import (  # noqa: F401 (names this module has always offered)
    DEFAULT_WORKSPACES,
    PAGINATION_MODES,
    Call,
    Faults,
    HttpError,
    SandboxWorkspace,
    basic_credentials,
    is_int,
)
from moestats_dagster.sandbox.ranges import combine, returning_share


class SandboxApp:
    """WSGI app. Thread-safe; one instance per server."""

    def __init__(
        self,
        workspaces: Iterable[SandboxWorkspace] = DEFAULT_WORKSPACES,
        *,
        window_seconds: float = 60.0,
        faults: Faults | None = None,
    ) -> None:
        self.workspaces = {w.workspace_id: w for w in workspaces}
        self.window_seconds = window_seconds
        self.faults = faults or Faults()
        self.calls: list[Call] = []
        self.keys_seen: dict[str, list[tuple[str, str | None]]] = {}  # path -> (key, extra)
        self._windows: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()
        self._routes: dict[str, Callable[[SandboxWorkspace, dict[str, Any]], Any]] = {
            STATS_PATH: self._campaign_stats,
        }
        self._access = {STATS_PATH: "stats_access"}
        self._authenticators: dict[str, Callable[[dict[str, Any]], SandboxWorkspace]] = {}
        self._windows_of: dict[str, str] = {}  # path -> the rate window it counts against
        # GET endpoints with the path's tail as an argument: prefix -> handler(ws, tail, query)
        self._get_routes: dict[str, Callable[[SandboxWorkspace, str, dict[str, str]], Any]] = {}
        self._request = threading.local()
        self._given: late.AnswersGiven | None = None  # made on first use (faults may change)
        from moestats_dagster.sandbox.flows import (
            serve_flows,  # the other endpoints build on this module
        )
        from moestats_dagster.sandbox.meta import serve_meta
        from moestats_dagster.sandbox.search import serve_search, v5_authenticator

        serve_meta(self)
        serve_search(self)
        serve_flows(self, v5_authenticator(self, "/v5/flows"))

    def route(
        self,
        path: str,
        handler: Callable[[SandboxWorkspace, dict[str, Any]], Any],
        access: str,
        authenticate: Callable[[dict[str, Any]], SandboxWorkspace] | None = None,
        window: str | None = None,
    ) -> None:
        """Serve another endpoint with the same limits and faults; `access` names the workspace
        flag that enables it, `authenticate` replaces the Campaign report key's check, `window`
        names the rate window it shares with other paths (default its own)."""
        self._routes[path] = handler
        self._access[path] = access
        self._windows_of[path] = window or path
        if authenticate is not None:
            self._authenticators[path] = authenticate

    def route_get(
        self,
        prefix: str,
        handler: Callable[[SandboxWorkspace, str, dict[str, str]], Any],
        access: str,
        authenticate: Callable[[dict[str, Any]], SandboxWorkspace],
        window: str,
    ) -> None:
        """Serve GET requests under `prefix`; the handler gets the path after it and the query."""
        self._get_routes[prefix] = handler
        self._access[prefix] = access
        self._windows_of[prefix] = window
        self._authenticators[prefix] = authenticate

    def header(self, name: str) -> str | None:
        """A header of the request being handled (in this thread)."""
        environ = getattr(self._request, "environ", None) or {}
        return environ.get("HTTP_" + name.upper().replace("-", "_"))

    def statuses(self, workspace_id: str | None = None) -> dict[int, int]:
        """How many answers of each status were sent (optionally for one workspace)."""
        out: dict[int, int] = defaultdict(int)
        with self._lock:
            for call in self.calls:
                if workspace_id is None or call.workspace_id == workspace_id:
                    out[call.status] += 1
        return dict(out)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if self.faults.transit_seconds and self._take("transit_calls"):
            time.sleep(self.faults.transit_seconds)
        arrived = time.monotonic()
        path = environ.get("PATH_INFO", "")
        headers: dict[str, str] = {}
        workspace_id = ""
        try:
            if path == "/_sandbox/calls" and environ["REQUEST_METHOD"] == "GET":
                with self._lock:
                    arrivals = [[c.at, c.workspace_id, c.status] for c in self.calls]
                body = {"statuses": self.statuses(), "arrivals": arrivals}
                return _respond(start_response, 200, body, {})
            method = environ["REQUEST_METHOD"]
            route, call = self._resolve(method, path, environ)
            if self.faults.silent_seconds:
                time.sleep(self.faults.silent_seconds)
            self._inject_before(path)
            workspace = self._authenticators.get(route, self._authenticate)(environ)
            workspace_id = workspace.workspace_id
            self._admit(workspace, self._windows_of.get(route, route), arrived, headers)
            if not getattr(workspace, self._access[route]):
                raise HttpError(
                    403
                )  # MoEngage: {"title": "Forbidden Request", "description": null}
            self._request.environ = environ  # for handlers that read a header
            payload = call(workspace)
            if self._take("malformed"):
                status = 200
                self._record(arrived, workspace_id, path, status)
                start_response("200 OK", [("Content-Type", "text/html"), *headers.items()])
                return [b"<html><body>502 upstream timed out</body></html>"]
            if self.faults.echo_auth_in_200 and isinstance(payload, dict):
                payload = {**payload, "debug": {"authorization": environ.get("HTTP_AUTHORIZATION")}}
            return self._finish(start_response, arrived, workspace_id, path, 200, payload, headers)
        except HttpError as exc:
            body = None if exc.status == 429 else error_body(exc.status, exc.message)
            if body is not None and self.faults.echo_auth:  # a gateway quoting what it got
                body["description"] = (
                    f"{body['description'] or ''} (request headers: Authorization: "
                    f"{environ.get('HTTP_AUTHORIZATION')}, MOE-APPKEY: "
                    f"{environ.get('HTTP_MOE_APPKEY')})"
                )
            if exc.status == 429 and self.faults.retry_after is not None:
                headers["Retry-After"] = self.faults.retry_after
            return self._finish(
                start_response, arrived, workspace_id, path, exc.status, body, headers
            )

    def _finish(self, start_response, arrived, workspace_id, path, status, body, headers):
        if self.faults.latency_seconds:
            time.sleep(self.faults.latency_seconds)
        self._record(arrived, workspace_id, path, status)
        rate = self.faults.trickle_bytes_per_second
        if rate and status == 200:
            length = not self.faults.trickle_without_length
            return _trickle(start_response, body, headers, rate, length)
        if self.faults.deep_json and status == 200:
            raw = b"[" * self.faults.deep_json + b"]" * self.faults.deep_json
            start_response("200 OK", [("Content-Type", "application/json"), *headers.items()])
            return [raw]
        return _respond(start_response, status, body, headers)

    def _resolve(self, method: str, path: str, environ: dict[str, Any]):
        """(the route's key, a call taking the workspace) for a request, or 404."""
        if method == "POST" and path in self._routes:
            handler = self._routes[path]
            return path, lambda ws: handler(ws, _json_body(environ))
        if method == "GET":
            for prefix, get in self._get_routes.items():
                if path.startswith(prefix) and len(path) > len(prefix):
                    tail = path[len(prefix) :]
                    query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
                    return prefix, partial(_get, get, tail, query)
        raise HttpError(404, f"no such endpoint: {method} {path}")

    def _answers_given(self) -> late.AnswersGiven:
        with self._lock:
            if self._given is None:
                self._given = late.AnswersGiven(self.faults.late_state)
            return self._given

    def _record(self, arrived: float, workspace_id: str, path: str, status: int) -> None:
        with self._lock:
            self.calls.append(Call(arrived, workspace_id, path, status))

    def _take(self, fault: str) -> bool:
        """Consume one unit of a counted fault, if any is left."""
        with self._lock:
            left = getattr(self.faults, fault)
            if left > 0:
                setattr(self.faults, fault, left - 1)
                return True
            return False

    def _inject_before(self, path: str) -> None:
        with self._lock:
            broken = self.faults.fail_after == 0
            if self.faults.fail_after:
                self.faults.fail_after -= 1
        if broken or self._take("fail_first"):
            raise HttpError(500, "Internal server error (injected)")
        if self._take("throttle_burst"):
            raise HttpError(429)

    def _authenticate(self, environ: dict[str, Any]) -> SandboxWorkspace:
        appkey = environ.get("HTTP_MOE_APPKEY")
        if not appkey:
            raise HttpError(401, "MOE-APPKEY missing in Authentication Header")
        username, key = basic_credentials(environ)
        workspace = self.workspaces.get(username)
        if workspace is None or workspace.api_key != key or appkey != username:
            raise HttpError(401, "Invalid identity information found.")
        return workspace

    def _admit(
        self, workspace: SandboxWorkspace, path: str, now: float, headers: dict[str, str]
    ) -> None:
        """Sliding-window limit per workspace and endpoint (`path`: the window's name); fills
        the x-ratelimit-* headers."""
        limit, window = workspace.rate_limit, self.window_seconds
        with self._lock:
            sent = self._windows[(workspace.workspace_id, path)]
            while sent and sent[0] <= now - window:
                sent.popleft()
            admitted = len(sent) < limit
            if admitted:
                sent.append(now)
            reset = time.time() + (sent[0] + window - now if sent else 0)
            headers["x-ratelimit-limit"] = str(limit)
            headers["x-ratelimit-remaining"] = str(limit - len(sent))
            headers["x-ratelimit-reset"] = str(math.ceil(reset))
        if not admitted:
            raise HttpError(429)

    def _campaign_stats(self, workspace: SandboxWorkspace, body: dict[str, Any]) -> dict[str, Any]:
        req = validate_stats_body(body)
        start, end = req["start_date"], req["end_date"]
        if start.isoformat() in self.faults.refuse_days:  # a day MoEngage will not serve
            raise HttpError(403)
        days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
        ran: dict[str, list[dt.date]] = {}  # campaign id -> the days of the range it ran on
        tail: set[tuple[str, dt.date]] = set()  # (step, day) answering after its flow stopped
        by_id = {}
        for day in days:
            for c in campaigns_on(
                workspace.workspace_id, day, workspace.universe, workspace.campaigns_per_day
            ):
                by_id[c.campaign_id] = c
                ran.setdefault(c.campaign_id, []).append(day)
        if req["campaign_ids"] is not None:
            # Flow-linked campaigns are answered only when named (the API's published spec);
            # a named one that did not send in the range is simply absent.
            for day in days:
                for c in flow_campaigns_on(workspace, day):
                    by_id[c.campaign_id] = c
                    ran.setdefault(c.campaign_id, []).append(day)
                for c in flow_tail_on(workspace, day):  # a stopped flow's steps, still answering
                    by_id[c.campaign_id] = c
                    ran.setdefault(c.campaign_id, []).append(day)
                    tail.add((c.campaign_id, day))
        campaigns = [by_id[k] for k in sorted(by_id)]
        if req["campaign_ids"] is not None:
            campaigns = [c for c in campaigns if c.campaign_id in set(req["campaign_ids"])]
        limit, offset, total = req["limit"], req["offset"], len(campaigns)
        mode = self.faults.pagination
        skip = offset * limit if mode == "page_index" else offset
        page = campaigns[skip : skip + limit]
        if mode == "drop_campaign" and skip > 0 and page:
            page = page[:-1]
        if mode == "repeat_campaign" and skip > 0 and page:
            page = [campaigns[skip - 1], *page[1:]]
        data = {}
        early: set[str] = set()  # campaigns whose day is answered for the first time
        if workspace.workspace_id in self.faults.late_conversions and len(days) == 1:
            early = self._answers_given().first_of(
                (workspace.workspace_id, start, req["metric_type"], req["attribution_type"],
                 c.campaign_id) for c in page
            )  # fmt: skip
        for campaign in page:
            per_day = []
            for day in ran[campaign.campaign_id]:
                if self.faults.sends_drop_on == day.isoformat():  # a paused journey
                    day_campaign = dataclasses.replace(campaign, scale=max(1, campaign.scale // 10))
                else:
                    day_campaign = campaign
                entries = campaign_entries(
                    workspace.workspace_id,
                    day_campaign,
                    day.isoformat(),
                    req["metric_type"],
                    req["attribution_type"],
                )
                if (campaign.campaign_id, day) in tail:
                    entries = late.after_stop(entries)
                if campaign.campaign_id in early and late.is_late(
                    workspace.workspace_id, campaign.campaign_id
                ):
                    entries = late.early(entries)
                per_day.append(entries)
            share = returning_share(workspace.workspace_id, campaign.campaign_id)
            entries = combine(per_day, req["metric_type"], share)
            if self.faults.range_inconsistent and len(days) > 1:
                entries = late.range_drift(entries)
            data[campaign.campaign_id] = defect_rules.apply(
                self.faults.defects, campaigns, campaign, entries, req["attribution_type"]
            )
        total += self.faults.overreport_total
        answer = {
            "response_id": req["request_id"],
            "total_campaigns": total,
            "current_page": skip // limit + 1,
            "total_pages": math.ceil(total / limit),
            "data": data,
        }
        if self.faults.counters in ("no_pages", "none"):
            del answer["current_page"], answer["total_pages"]
        if self.faults.counters == "none":
            del answer["total_campaigns"]
        return answer


def _get(handler, tail: str, query: dict[str, str], workspace: SandboxWorkspace) -> Any:
    return handler(workspace, tail, query)


def validate_stats_body(body: dict[str, Any]) -> dict[str, Any]:
    """Validate a Stats API body as the API does; raise 400 naming the field."""
    request_id = body.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip():
        raise HttpError(400, "request_id is mandatory and must be a non-empty string")
    dates = {}
    for name in ("start_date", "end_date"):
        value = body.get(name)
        if value is None:
            raise HttpError(400, f"{name} is mandatory (YYYY-MM-DD)")
        try:
            if not isinstance(value, str) or len(value) != 10:
                raise ValueError
            dates[name] = dt.date.fromisoformat(value)
        except ValueError:
            raise HttpError(400, f"{name} {value!r} is not a date in YYYY-MM-DD format") from None
    if dates["end_date"] < dates["start_date"]:
        raise HttpError(400, "end_date must not be before start_date")
    if (dates["end_date"] - dates["start_date"]).days > 30:
        raise HttpError(400, "end_date - start_date must not exceed 30 days")
    if body.get("attribution_type") not in ATTRIBUTION_TYPES:
        raise HttpError(400, f"attribution_type must be one of {', '.join(ATTRIBUTION_TYPES)}")
    if body.get("metric_type") not in METRIC_TYPES:
        raise HttpError(400, "metric_type must be TOTAL or UNIQUE")
    limit, offset = body.get("limit", 10), body.get("offset", 0)
    if not is_int(limit) or not 1 <= limit <= 10:
        raise HttpError(400, f"limit {limit!r} must be an integer from 1 to 10")
    if not is_int(offset) or offset < 0:
        raise HttpError(400, f"offset {offset!r} must be an integer >= 0")
    ids = body.get("campaign_ids")
    if ids is not None:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise HttpError(400, "campaign_ids must be an array of strings")
        if len(ids) > 10:
            raise HttpError(400, f"campaign_ids has {len(ids)} ids; at most 10 per call")
        if len(set(ids)) != len(ids):
            raise HttpError(400, "campaign_ids contains duplicates")
    return {
        "request_id": request_id,
        **dates,
        "attribution_type": body["attribution_type"],
        "metric_type": body["metric_type"],
        "limit": limit,
        "offset": offset,
        "campaign_ids": ids or None,
    }


def _json_body(environ: dict[str, Any]) -> dict[str, Any]:
    if "application/json" not in environ.get("CONTENT_TYPE", ""):
        raise HttpError(400, "Content-Type must be application/json")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"null")
    except ValueError:
        raise HttpError(400, "request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HttpError(400, "request body must be a JSON object")
    return body


TITLES = {400: "Bad Request", 401: "Authentication required", 403: "Forbidden Request",
          404: "Not Found", 500: "Internal Server Error"}  # fmt: skip


def error_body(status: int, description: str | None) -> dict[str, Any]:
    """MoEngage's published error body: title, description (may be null), code."""
    body: dict[str, Any] = {"title": TITLES.get(status, "Error"), "description": description}
    if status not in (401, 403):  # the published 401/403 examples carry no code
        body["code"] = f"E{status}"
    return body


REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
REASONS |= {429: "Too Many Requests", 500: "Internal Server Error"}


def _trickle(start_response, body: Any, headers: dict[str, str], rate: float, length: bool = True):
    """Send the body `rate` bytes a second, for at most 10 minutes (a stalling gateway); without
    a Content-Length, the client can only tell the end by the connection closing."""
    raw = json.dumps(body).encode()
    head = [("Content-Type", "application/json"), *headers.items()]
    start_response("200 OK", [("Content-Length", str(len(raw))), *head] if length else head)

    def drip():
        stop = time.monotonic() + 600
        for i in range(len(raw)):
            if time.monotonic() > stop:
                return
            yield raw[i : i + 1]
            time.sleep(1 / rate)

    return drip()


def _respond(start_response, status: int, body: Any, headers: dict[str, str]) -> list[bytes]:
    raw = b"" if body is None else json.dumps(body).encode()
    head = [("Content-Length", str(len(raw))), *headers.items()]
    if body is not None:
        head.append(("Content-Type", "application/json"))
    start_response(f"{status} {REASONS.get(status, 'Error')}", head)
    return [raw]
