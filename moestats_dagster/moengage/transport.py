"""One authenticated, rate-limited, retried POST to a MoEngage API: the layer every endpoint shares.

Retries use urllib3's `Retry` as the policy (bounded count, exponential backoff with jitter,
Retry-After parsing) but are driven here rather than inside urllib3, so that every attempt, retries
included, passes through the sliding-window limiter: a retried call counts against the workspace's
100 calls/min like any other.

Every wait is bounded: a call has a total deadline (`deadline.py`), connection-level failures get
few retries (DNS and TLS none), a run has a wall-clock retry budget, Retry-After is capped, and the
first permanent failure stops every other call of the client at once.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.auth import HTTPBasicAuth
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from moestats_dagster.moengage.answers import (
    NonFiniteNumber,
    TooDeep,
    campaign_of,
    decode_json,
    describe_error_body,
    header_float,
    retry_after,
)
from moestats_dagster.moengage.datacenters import host_for
from moestats_dagster.moengage.deadline import Deadline, DeadlineAdapter
from moestats_dagster.moengage.errors import (
    ConfigurationError,
    CredentialsEchoedError,
    MoEngageError,
    NonFiniteNumberError,
    Redactor,
    RequestFailed,
    ResponseShapeError,
    RetriesExhaustedError,
    UnreachableError,
    describe_body,
)
from moestats_dagster.moengage.failures import NoAnswer, classify, refusal, unreachable
from moestats_dagster.moengage.ratelimit import SlidingWindowLimiter
from moestats_dagster.moengage.stopper import Stopper

log = logging.getLogger("moestats_dagster.moengage")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_BODY_BYTES = 64 << 20  # no answer of 10 campaigns comes near; a bigger one is refused
WAIT_SHOWN_SECONDS = 5.0  # waits at least this long are logged, so people see why a run idles


@dataclass
class CallCounters:
    """What a sequence of calls cost; reported as asset metadata."""

    calls: int = 0  # HTTP requests sent, retries included
    pages: int = 0  # successful (200) answers
    retries: int = 0
    throttled: int = 0  # 429 answers
    server_errors: int = 0  # 5xx answers and connection errors/timeouts
    seconds: float = 0.0  # wall time inside fetch methods
    waited: float = 0.0  # seconds spent waiting for the rate window or a pause
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
        api_name: str = "the Stats API",
        forbidden_fix: str = "ask MoEngage to enable it for this workspace",
        unauthorized_fix: str | None = None,
        idempotency_keys: bool = False,
        rate_limit_per_minute: int = 100,
        calls_per_second: int | None = None,
        window_seconds: float = 60.0,
        pool_size: int = 8,
        timeout: tuple[float, float] = (5.0, 20.0),
        call_deadline_seconds: float = 30.0,
        max_retries: int = 8,
        connection_retries: int = 2,
        retry_budget_seconds: float = 300.0,
        max_wait_seconds: float | None = None,
        backoff_factor: float = 1.0,
        backoff_max: float = 30.0,
        limiter_state_file: str | None = None,
        limiter_store: Any = None,
        logger: Any = None,
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
            parts = urlsplit(base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigurationError(
                    f"base_url {base_url!r} must be http(s)://host[:port], e.g. "
                    "https://proxy.example.com:8443"
                )
            self.base_url = base_url.rstrip("/")
        elif data_center is not None:
            self.base_url = host_for(data_center)
        else:
            raise ConfigurationError(f"workspace {workspace_id}: give data_center or base_url")
        url = urlsplit(self.base_url)
        self.host = url.hostname or ""
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.workspace_id = workspace_id
        self.api_name = api_name
        self.forbidden_fix = forbidden_fix
        self.unauthorized_fix = unauthorized_fix
        # v5 APIs: a fresh Idempotency-Key per request (a reused one replays the first answer);
        # the retries of one request keep its key, as idempotency means.
        self._idempotency_keys = idempotency_keys
        self.window_seconds = window_seconds
        self.redact = Redactor(workspace_id, api_key)
        self.log = logger or log
        self._auth = HTTPBasicAuth(workspace_id, api_key)
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "MOE-APPKEY": workspace_id,
        }
        self._timeout = timeout
        self._call_deadline = call_deadline_seconds
        self._connection_retries = connection_retries
        self._max_wait = max_wait_seconds if max_wait_seconds is not None else 2 * window_seconds
        self._session = requests.Session()
        adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self.limiter = SlidingWindowLimiter(
            rate_limit_per_minute,
            window_seconds,
            state_file=limiter_state_file,
            store=limiter_store,
            max_pause_seconds=self._max_wait,
        )
        # A second limit some APIs set (the Flows API: 10/s besides 100/min), in this process:
        # a second of the window's scale (window_seconds / 60).
        self._burst = (
            SlidingWindowLimiter(calls_per_second, window_seconds / 60.0, margin_seconds=0.0)
            if calls_per_second
            else None
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
        self.rate_headers: dict[str, str] = {}  # x-ratelimit-* of the last answer
        self._lock = threading.Lock()
        self._budget = retry_budget_seconds
        self._budget_ends: float | None = None  # wall clock: the first failure + the budget
        self._stopper = Stopper(workspace_id)
        self._last_wait_log = 0.0

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

    def cancel(self, failure: BaseException | None = None) -> None:
        """Stop every call of this client now: waits end, in-flight calls are cut."""
        self._stopper.stop(failure)

    def root_cause(self, exc: BaseException) -> BaseException:
        return self._stopper.root_cause(exc)

    def _fail(self, exc: BaseException) -> BaseException:
        self._stopper.stop(exc)
        return exc

    # -- the call ---------------------------------------------------------------------------

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST `body`, retrying what can succeed later; return the decoded JSON of the 200."""
        return self.request("POST", path, body)

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET `path` (with query `params`), retried like a POST; the decoded JSON of the 200.
        Errors and retries name the request by its path and `params`."""
        return self.request("GET", path, dict(params or {}))

    def request(self, method: str, path: str, body: dict[str, Any]) -> Any:
        try:
            return self._post(path, body, method)
        except MoEngageError as exc:
            # The one place every error leaves through: no key, in any form, goes further.
            exc.args = tuple(self.redact(a, limit=None) if isinstance(a, str) else a
                             for a in exc.args)  # fmt: skip
            raise

    def _post(self, path: str, body: dict[str, Any], method: str = "POST") -> Any:
        url = self.base_url + path
        retry = self._retry.new()
        no_answer = 0
        headers = (
            {**self._headers, "Idempotency-Key": str(uuid.uuid4())}
            if self._idempotency_keys
            else self._headers
        )
        while True:
            self._stopper.check()
            sent_at = self.limiter.acquire(self._stopper.event, self._on_wait)
            burst_at = self._burst.acquire(self._stopper.event) if self._burst else None
            self._stopper.check()
            self.count(calls=1)
            started = time.monotonic()
            try:
                try:
                    resp = self._send(url, body, headers, method)
                finally:  # the server counted the call by now, whenever it arrived
                    self.limiter.settle(sent_at)
                    if self._burst and burst_at is not None:
                        self._burst.settle(burst_at)
            except _NoAnswerError as exc:
                self._stopper.check()  # cut short by cancel(): not a failure of its own
                self.count(server_errors=1)
                no_answer += 1
                failure = exc.failure
                if failure.permanent or no_answer > self._connection_retries:
                    raise self._fail(self._unreachable(failure, no_answer)) from None
                retry = self._next(
                    retry, path, body, error=exc, what=f"no answer ({failure.cause})"
                )
                self._backoff(retry, started, path)
                continue
            self._follow_rate_headers(resp)
            if resp.status_code == 200:
                self.count(pages=1)
                if self.redact.found_in(resp.content):
                    raise self._fail(self._echoed())
                return self._decode(resp, body)
            if resp.status_code not in RETRY_STATUSES:
                raise self._fail(self._refusal(resp, body))
            if resp.status_code == 429:
                self.count(throttled=1)
                wait = self._throttle_wait(resp)
                self._spend(wait, started, path, "HTTP 429")
                self.limiter.pause_for(wait)
            else:
                self.count(server_errors=1)
            retry = self._next(retry, path, body, response=resp, what=f"HTTP {resp.status_code}")
            if resp.status_code != 429:
                self._backoff(retry, started, path)

    def _send(
        self, url: str, body: dict[str, Any], headers: dict[str, str], method: str = "POST"
    ) -> requests.Response:
        """One attempt, whole answer read within the call deadline and size cap. A GET sends
        `body` as its query."""
        deadline = Deadline(self._call_deadline)
        self._stopper.track(deadline)
        payload = {"params": body} if method == "GET" else {"data": json.dumps(body)}
        try:
            with deadline.running():
                resp = self._session.request(
                    method,
                    url,
                    headers=headers,
                    auth=self._auth,
                    timeout=self._timeout,
                    stream=True,
                    **payload,
                )
                chunks, size = [], 0
                for chunk in resp.iter_content(1 << 16):
                    size += len(chunk)
                    if size > MAX_BODY_BYTES:
                        resp.close()
                        raise self._fail(
                            ResponseShapeError(
                                f"workspace {self.workspace_id}: {self.api_name} sent an answer "
                                f"over {MAX_BODY_BYTES >> 20} MiB from {url}; refused (no page "
                                "of 10 campaigns is that large). Report it to MoEngage."
                            )
                        )
                    chunks.append(chunk)
                if deadline.fired:  # the socket was shut mid-body: a cut answer, not a bad one
                    raise requests.exceptions.ConnectionError(
                        f"the call deadline ({self._call_deadline:g} s) passed after {size} bytes"
                    )
                resp._content = b"".join(chunks)
                return resp
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:  # fmt: skip
            raise _NoAnswerError(classify(exc, deadline_fired=deadline.fired)) from None
        finally:
            self._stopper.untrack(deadline)

    # -- retries, budget, waits --------------------------------------------------------------

    def _next(self, retry: Retry, path: str, body: dict, *, what: str, **kw: Any) -> Retry:
        response = kw.pop("response", None)
        try:
            new = retry.increment(
                method="POST", url=path, response=response.raw if response else None, **kw
            )
        except MaxRetryError:
            raise self._fail(
                RetriesExhaustedError(
                    f"workspace {self.workspace_id}: {self.api_name} at {self.host} still failing "
                    f"({what}) after {len(retry.history) + 1} attempts; MoEngage may be degraded "
                    "or another client is using this workspace's rate limit. Re-run later. "
                    f"Last answer: {self._last_body(response)}. Request: {describe_body(body)}",
                    status=response.status_code if response is not None else None,
                    workspace_id=self.workspace_id,
                )
            ) from None
        self.count(retries=1)
        self._say(
            f"workspace {self.workspace_id}: {what} from {self.host} on {path} "
            f"(offset {body.get('offset', body.get('page'))}); retry {len(new.history)}"
        )
        return new

    def _backoff(self, retry: Retry, started: float, path: str) -> None:
        pause = retry.get_backoff_time()
        self._spend(pause, started, path, "retries")
        if pause > 0 and self._stopper.event.wait(pause):
            self._stopper.check()

    def _spend(self, wait: float, started: float, path: str, what: str) -> None:
        """Retries of a run must be over within `retry_budget_seconds` of the start of its first
        failed attempt, wall clock, however many threads are retrying: fail rather than wait
        past that."""
        now = time.monotonic()
        with self._lock:
            if self._budget_ends is None:
                self._budget_ends = started + self._budget
            left = self._budget_ends - now - wait
        if left < 0:
            raise self._fail(
                RetriesExhaustedError(
                    f"workspace {self.workspace_id}: {self.api_name} at {self.host} kept failing "
                    f"({what} on {path}): this run's retry budget of {self._budget:.0f} s is "
                    "used up. MoEngage may be degraded or another client is using this "
                    "workspace's rate limit; re-run later.",
                    workspace_id=self.workspace_id,
                )
            )

    def _on_wait(self, seconds: float, reason: str) -> None:
        self.count(waited=seconds)
        now = time.monotonic()
        if seconds < WAIT_SHOWN_SECONDS or now - self._last_wait_log < WAIT_SHOWN_SECONDS:
            return
        self._last_wait_log = now
        why = (
            f"for {self.workspace_id}'s {self.limiter.limit} calls per "
            f"{self.limiter.window:.0f} s (the window is shared by every run of this workspace "
            "on this host)"
            if reason == "window"
            else f"because MoEngage said {self.workspace_id}'s rate window is full"
        )
        self._say(f"waiting {seconds:.0f} s {why}")

    def _say(self, message: str) -> None:
        self.log.warning(self.redact(message, limit=None))

    def _throttle_wait(self, resp: requests.Response) -> float:
        """How long a 429 holds every caller back: Retry-After, else the reset header, else a
        window; never more than the cap, and what was asked is logged when it is more."""
        asked = retry_after(resp, self._retry)
        source = "Retry-After"
        if asked is None:
            asked, source = self._seconds_to_reset(resp), "x-ratelimit-reset"
        if asked is None:
            return self.window_seconds
        if asked > self._max_wait:
            self._say(
                f"workspace {self.workspace_id}: {self.host} answered 429 asking to wait "
                f"{asked:.0f} s ({source}); waiting {self._max_wait:.0f} s, the cap"
            )
            return self._max_wait
        return max(0.0, asked)

    def _follow_rate_headers(self, resp: requests.Response) -> None:
        """If the server's window is full while ours is not (another client shares the key), wait."""
        self.rate_headers = {
            k.lower(): self.redact(v, limit=40)
            for k, v in resp.headers.items()
            if k.lower().startswith("x-ratelimit-")
        }
        remaining = header_float(resp, "x-ratelimit-remaining")
        if remaining is None or remaining > 0 or self.limiter.is_full():
            return
        reset_in = self._seconds_to_reset(resp)
        if reset_in is not None:
            self.limiter.pause_for(reset_in)

    def _seconds_to_reset(self, resp: requests.Response) -> float | None:
        """Seconds until `x-ratelimit-reset` (epoch seconds), if it is a plausible time: in the
        future and within a window (+1 s: the header is whole seconds, rounded up)."""
        reset = header_float(resp, "x-ratelimit-reset")
        if reset is None:
            return None
        wait = reset - time.time()
        return wait if 0 < wait <= self.window_seconds + 1 else None

    # -- answers -----------------------------------------------------------------------------

    def _decode(self, resp: requests.Response, body: dict) -> Any:
        try:
            return decode_json(resp.content)
        except NonFiniteNumber as exc:
            campaign = campaign_of(exc.path)
            raise self._fail(
                NonFiniteNumberError(
                    f"workspace {self.workspace_id}: "
                    + (f"campaign {campaign}: " if campaign else "")
                    + f"{self.api_name} answered {exc.path} = {exc.token}, which is not a number "
                    "(JSON has no NaN or Infinity, and it must not be stored as one); nothing "
                    "was written for this partition. Re-run; if it persists, report it to "
                    f"MoEngage. Request: {describe_body(body)}"
                )
            ) from None
        except TooDeep as exc:
            raise self._fail(
                ResponseShapeError(
                    f"workspace {self.workspace_id}: {self.api_name} at {self.host} answered "
                    f"HTTP 200 with JSON {exc} (MoEngage's answers nest about ten); refused "
                    "unparsed, nothing was written for this partition. A gateway or proxy may be "
                    f"answering instead of MoEngage. Request: {describe_body(body)}"
                )
            ) from None
        except ValueError:
            raise self._fail(
                ResponseShapeError(
                    f"workspace {self.workspace_id}: {self.api_name} at {self.host} answered "
                    f"HTTP 200 but the body is not JSON ({self._last_body(resp)}); a gateway "
                    f"or proxy may be answering instead of MoEngage. Request: {describe_body(body)}"
                )
            ) from None

    def _echoed(self) -> CredentialsEchoedError:
        return CredentialsEchoedError(
            f"workspace {self.workspace_id}: the answer from {self.host} ({self.api_name}) "
            "contains your API credentials; a proxy or gateway between us and MoEngage is "
            "echoing them. Nothing of this answer was stored. Fix: remove the proxy or its "
            "debug/echo setting (base_url, HTTPS_PROXY), then rotate the key in MoEngage "
            "(Settings > Account > APIs), since it has been sent back in clear"
        )

    def _last_body(self, resp: requests.Response | None) -> str:
        if resp is None:
            return "no answer"
        content = resp.content if resp._content is not False else b""
        return self.redact(describe_error_body(content[:4096], resp.headers.get("content-type")))

    def _refusal(self, resp: requests.Response, body: dict) -> RequestFailed:
        return refusal(
            resp.status_code,
            said=self._last_body(resp),
            body=body,
            workspace_id=self.workspace_id,
            api_name=self.api_name,
            host=self.host,
            forbidden_fix=self.forbidden_fix,
            unauthorized_fix=self.unauthorized_fix,
        )

    def _unreachable(self, failure: NoAnswer, attempts: int) -> UnreachableError:
        return unreachable(
            failure,
            attempts,
            workspace_id=self.workspace_id,
            api_name=self.api_name,
            host=self.host,
            port=self.port,
            connect_timeout=self._timeout[0],
            deadline=self._call_deadline,
            detail=self.redact(failure.detail, limit=200),
        )


class _NoAnswerError(Exception):
    def __init__(self, failure: NoAnswer) -> None:
        super().__init__(failure.detail)
        self.failure = failure
