"""One authenticated, rate-limited, retried POST to a MoEngage API: the layer every endpoint shares.

Retries use urllib3's `Retry` as the policy (bounded count, exponential backoff with jitter,
Retry-After parsing) but are driven here rather than inside urllib3, so that every attempt, retries
included, passes through the sliding-window limiter: a retried call counts against the workspace's
100 calls/min like any other.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.auth import HTTPBasicAuth
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from .datacenters import host_for
from .errors import (
    AccessDeniedError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    RequestFailed,
    ResponseShapeError,
    RetriesExhaustedError,
    describe_body,
)
from .ratelimit import SlidingWindowLimiter

log = logging.getLogger("moestats_dagster.moengage")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass
class CallCounters:
    """What a sequence of calls cost; reported as asset metadata."""

    calls: int = 0  # HTTP requests sent, retries included
    pages: int = 0  # successful (200) answers
    retries: int = 0
    throttled: int = 0  # 429 answers
    server_errors: int = 0  # 5xx answers and connection errors/timeouts
    seconds: float = 0.0  # wall time inside fetch methods
    campaigns: int = 0

    def as_dict(self) -> dict[str, int | float]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


class Transport:
    """Sends JSON POSTs for one workspace; holds the key privately and never shows it."""

    def __init__(
        self,
        *,
        workspace_id: str,
        api_key: str,
        data_center: str | None = None,
        base_url: str | None = None,
        rate_limit_per_minute: int = 100,
        window_seconds: float = 60.0,
        pool_size: int = 8,
        timeout: tuple[float, float] = (5.0, 60.0),
        max_retries: int = 8,
        backoff_factor: float = 1.0,
        backoff_max: float = 60.0,
        limiter_state_file: str | None = None,
    ) -> None:
        if not workspace_id or not str(workspace_id).strip():
            raise ConfigurationError(
                "workspace_id is empty; copy the Workspace ID from the dashboard"
            )
        if not api_key:
            raise ConfigurationError(
                f"the Campaign report API key for workspace {workspace_id} is empty; "
                "set it in the environment variable the workspaces file names"
            )
        if base_url:
            if not base_url.startswith(("http://", "https://")):
                raise ConfigurationError(
                    f"base_url {base_url!r} must start with http:// or https://"
                )
            self.base_url = base_url.rstrip("/")
        elif data_center is not None:
            self.base_url = host_for(data_center)
        else:
            raise ConfigurationError(f"workspace {workspace_id}: give data_center or base_url")
        self.workspace_id = workspace_id
        self.window_seconds = window_seconds
        self._auth = HTTPBasicAuth(workspace_id, api_key)
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "MOE-APPKEY": workspace_id,
        }
        self._timeout = timeout
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self.limiter = SlidingWindowLimiter(
            rate_limit_per_minute, window_seconds, state_file=limiter_state_file
        )
        self._retry = Retry(
            total=max_retries,
            backoff_factor=backoff_factor,
            backoff_max=backoff_max,
            backoff_jitter=backoff_factor,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=None,
            raise_on_status=False,
        )
        self.counters = CallCounters()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(workspace_id={self.workspace_id!r}, base_url={self.base_url!r})"
        )

    def close(self) -> None:
        self._session.close()

    def count(self, **increments: int | float) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self.counters, name, getattr(self.counters, name) + value)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST `body`, retrying what can succeed later; return the decoded JSON of the 200."""
        url = self.base_url + path
        retry = self._retry.new()
        while True:
            self.limiter.acquire()
            self.count(calls=1)
            try:
                resp = self._session.post(
                    url,
                    data=json.dumps(body),
                    headers=self._headers,
                    auth=self._auth,
                    timeout=self._timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                self.count(server_errors=1)
                retry = self._next(retry, path, body, error=exc, what=type(exc).__name__)
                time.sleep(retry.get_backoff_time())
                continue
            self._follow_rate_headers(resp)
            if resp.status_code == 200:
                self.count(pages=1)
                return self._decode(resp, body)
            if resp.status_code not in RETRY_STATUSES:
                raise self._refusal(resp, body)
            if resp.status_code == 429:
                self.count(throttled=1)
                self.limiter.pause_for(self._throttle_wait(resp))
            else:
                self.count(server_errors=1)
            retry = self._next(retry, path, body, response=resp, what=f"HTTP {resp.status_code}")
            if resp.status_code != 429:
                time.sleep(retry.get_backoff_time())

    def _next(self, retry: Retry, path: str, body: dict, *, what: str, **kw: Any) -> Retry:
        response = kw.pop("response", None)
        try:
            new = retry.increment(
                method="POST", url=path, response=response.raw if response else None, **kw
            )
        except MaxRetryError:
            raise RetriesExhaustedError(
                f"workspace {self.workspace_id}: {path} still failing ({what}) after "
                f"{len(retry.history) + 1} attempts; MoEngage may be down or the workspace "
                f"is being throttled by another client. Re-run later. Request: {describe_body(body)}",
                status=response.status_code if response is not None else None,
                workspace_id=self.workspace_id,
            ) from None
        self.count(retries=1)
        log.warning(
            "workspace %s: %s on %s (offset %s); retry %d",
            self.workspace_id,
            what,
            path,
            body.get("offset", body.get("page")),
            len(new.history),
        )
        return new

    def _throttle_wait(self, resp: requests.Response) -> float:
        """How long a 429 holds every caller back: Retry-After, else the reset header, else a window."""
        retry_after = self._retry.get_retry_after(resp.raw)
        if retry_after is not None:
            return retry_after
        reset_in = self._seconds_to_reset(resp)
        return reset_in if reset_in is not None else self.window_seconds

    def _follow_rate_headers(self, resp: requests.Response) -> None:
        """If the server's window is full while ours is not (another client shares the key), wait."""
        remaining = _header_float(resp, "x-ratelimit-remaining")
        if remaining is None or remaining > 0 or self.limiter.is_full():
            return
        reset_in = self._seconds_to_reset(resp)
        if reset_in is not None:
            self.limiter.pause_for(reset_in)

    def _seconds_to_reset(self, resp: requests.Response) -> float | None:
        """Seconds until `x-ratelimit-reset` (epoch seconds), if it is a plausible time: in the
        future and within a window (+1 s: the header is whole seconds, rounded up)."""
        reset = _header_float(resp, "x-ratelimit-reset")
        if reset is None:
            return None
        wait = reset - time.time()
        return wait if 0 < wait <= self.window_seconds + 1 else None

    def _decode(self, resp: requests.Response, body: dict) -> Any:
        try:
            return resp.json()
        except ValueError:
            snippet = resp.text[:200].replace("\n", " ")
            raise ResponseShapeError(
                f"workspace {self.workspace_id}: HTTP 200 but the body is not JSON "
                f"(content-type {resp.headers.get('content-type')!r}, starts {snippet!r}); "
                f"request: {describe_body(body)}"
            ) from None

    def _refusal(self, resp: requests.Response, body: dict) -> RequestFailed:
        ws = self.workspace_id
        status = resp.status_code
        api_message = _api_message(resp)
        if status == 401:
            return AuthenticationError(
                f"workspace {ws}: 401 Unauthorized ({api_message}); check workspace id and the "
                "Campaign report API key (Settings > Account > APIs)",
                status=status,
                workspace_id=ws,
            )
        if status == 403:
            return AccessDeniedError(
                f"workspace {ws}: 403 Forbidden; Stats API not enabled for this workspace — ask "
                f"MoEngage to enable it ({api_message})",
                status=status,
                workspace_id=ws,
            )
        if status == 400:
            return BadRequestError(
                f"workspace {ws}: 400 Bad Request: {api_message}; request: {describe_body(body)}",
                body=body,
                api_message=api_message,
                status=status,
                workspace_id=ws,
            )
        return RequestFailed(
            f"workspace {ws}: unexpected HTTP {status} ({api_message}); request: {describe_body(body)}",
            status=status,
            workspace_id=ws,
        )


def check_envelope(
    payload: Any, body: dict[str, Any], *, workspace_id: str, api: str, counters: tuple[str, ...]
) -> dict[str, int]:
    """The parts every MoEngage answer shares: an object whose `response_id` is our request_id
    and whose paging counters are non-negative integers. Returns the counters."""
    if not isinstance(payload, dict):
        raise shape_error(f"the body is a {type(payload).__name__}, not an object",
                          body, workspace_id=workspace_id, api=api)  # fmt: skip
    if payload.get("response_id") != body["request_id"]:
        raise shape_error(
            f"response_id {payload.get('response_id')!r} does not match request_id "
            f"{body['request_id']!r}",
            body, workspace_id=workspace_id, api=api,
        )  # fmt: skip
    values = {}
    for key in counters:
        value = payload.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise shape_error(f"{key} is {value!r}, not a non-negative integer",
                              body, workspace_id=workspace_id, api=api)  # fmt: skip
        values[key] = value
    return values


def shape_error(
    what: str, body: dict[str, Any], *, workspace_id: str, api: str
) -> ResponseShapeError:
    return ResponseShapeError(
        f"workspace {workspace_id}: {api} answered 200 but {what}; request: {describe_body(body)}"
    )


def _header_float(resp: requests.Response, name: str) -> float | None:
    try:
        return float(resp.headers[name])
    except (KeyError, ValueError):
        return None


def _api_message(resp: requests.Response) -> str:
    """The error text MoEngage put in the body, whatever its nesting; else the raw text."""
    try:
        payload = resp.json()
    except ValueError:
        return resp.text[:300] or "no body"
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            return str(error.get("message") or error.get("description") or error)
        return str(error)
    return str(payload)[:300]


class ApiClient:
    """What every endpoint's client shares: one Transport, a context manager, the counters."""

    def __init__(self, *, max_workers: int = 8, **transport_options: Any) -> None:
        self._transport = Transport(pool_size=max_workers, **transport_options)
        self.workspace_id = self._transport.workspace_id
        self.base_url = self._transport.base_url
        self.max_workers = max_workers

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(workspace_id={self.workspace_id!r}, base_url={self.base_url!r})"
        )

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._transport.close()

    @property
    def counters(self) -> CallCounters:
        """Calls, pages, retries, 429s, seconds and campaigns since this client was made."""
        return self._transport.counters
