"""What the sandbox's app and its endpoint modules (meta, search) share: the workspaces it
knows, the faults to inject, the calls it records, and how a request is refused or
authenticated. No routing here, so the endpoint modules import it without importing the app."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

PAGINATION_MODES = ("offset", "page_index", "drop_campaign", "repeat_campaign")


@dataclass
class SandboxWorkspace:
    """A workspace the sandbox knows: its credentials, access and limits."""

    workspace_id: str
    api_key: str
    stats_access: bool = True  # False: the Stats API answers 403 (not enabled by MoEngage)
    meta_access: bool = True  # False: Campaign Meta answers 403 (Early Access, not enabled)
    search_access: bool = True  # False: v1/campaigns/search answers 403 (not enabled)
    v5_key: str | None = None  # the Campaigns key v5/campaigns/search takes; None: no such key
    v5_access: bool = True  # False: that key lacks the Campaigns View permission (403)
    flows: int = 0  # flows (Flows API, v5 key); their step campaigns answer only when named
    flow_steps: int | None = None  # steps of every flow's live version (default: 2 or 3)
    flows_access: bool = True  # False: the Flows API (early access) answers 403
    flow_teams: tuple[str, ...] = ()  # the account's teams: flows/search needs `teams` (400)
    rate_limit: int = 100  # calls per window, per endpoint
    universe: int = 80  # campaigns that may run on a day
    campaigns_per_day: int | None = None  # fixed count instead of the varied daily mix


# The bundled workspaces (their keys are public: they unlock only synthetic data).
DEFAULT_WORKSPACES = (
    SandboxWorkspace(
        "WS_ALPHA", "sandbox-key-alpha", v5_key="sandbox-campaigns-key-alpha", flows=6
    ),
    SandboxWorkspace(
        "WS_BETA",
        "sandbox-key-beta",
        v5_key="sandbox-campaigns-key-beta",
        flows=3,
        flow_teams=("Growth",),
    ),  # fmt: skip
    SandboxWorkspace("WS_GAMMA", "sandbox-key-gamma", universe=40),
    SandboxWorkspace("WS_NO_STATS", "sandbox-key-no-stats", stats_access=False),
    SandboxWorkspace("WS_NO_META", "sandbox-key-no-meta", meta_access=False),
    # the usual account: neither Early Access API, no Campaigns key
    SandboxWorkspace("WS_NO_NAMES", "sandbox-key-no-names", meta_access=False, search_access=False),
)


@dataclass
class Faults:
    """Misbehaviour to inject; counters count down as calls consume them."""

    latency_seconds: float = 0.0
    fail_first: int = 0  # the next N calls answer 500
    fail_after: int | None = None  # after N more calls, every call answers 500
    throttle_burst: int = 0  # the next N calls answer 429, whatever the window says
    malformed: int = 0  # the next N successful calls answer 200 with a non-JSON body
    pagination: str = "offset"  # see PAGINATION_MODES
    defects: set[str] = field(default_factory=set)  # see defects.DEFECTS
    counters: str = "all"  # all | no_pages (no current_page/total_pages) | none (no totals either)
    overreport_total: int = 0  # added to total_campaigns (a server that promises too much)
    retry_after: str | None = None  # Retry-After header sent with every 429
    echo_auth: bool = False  # error bodies quote the request's Authorization header (a gateway)
    echo_auth_in_200: bool = False  # 200 answers carry the Authorization header (a debug proxy)
    silent_seconds: float = 0.0  # every call waits this long before answering anything
    transit_seconds: float = 0.0  # the next `transit_calls` calls arrive this late (a slow
    transit_calls: int = 0  # network or a loaded client: sent on time, counted on arrival)
    trickle_bytes_per_second: float = 0.0  # bodies are sent this slowly (0 = at once)
    trickle_without_length: bool = False  # ... with no Content-Length (the end is the close)
    deep_json: int = 0  # 200 answers are JSON arrays nested this deep (a hostile gateway)
    meta_envelope: bool = False  # campaigns/meta answers inside an envelope object
    sends_drop_on: str | None = None  # YYYY-MM-DD: every campaign sends 90 % less that day
    refuse_days: set[str] = field(default_factory=set)  # YYYY-MM-DD: the Stats API answers 403
    flow_cursor: str = "ok"  # flows/search paging: ok | stuck (next_cursor never advances)
    flow_updated: dict[str, str] = field(default_factory=dict)  # flow_id -> a newer updated_at
    late_conversions: tuple[str, ...] = ()  # workspaces whose days' first answers are early
    late_state: str | None = None  # SQLite file remembering the answers given (else memory)
    range_inconsistent: bool = False  # range answers disagree with the sum of their days


@dataclass(frozen=True)
class Call:
    """One request the sandbox answered, for tests and benchmarks to inspect."""

    at: float  # time.monotonic() at arrival
    workspace_id: str
    path: str
    status: int


class HttpError(Exception):
    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def basic_credentials(environ: dict[str, Any]) -> tuple[str, str]:
    """(username, key) of a request's Basic auth; 401 when there is none or it is not Base64."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if not auth.startswith("Basic "):
        raise HttpError(401, "Authorization header missing or not Basic")
    try:
        username, _, key = base64.b64decode(auth[6:], validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise HttpError(401, "Authorization header is not valid Base64") from None
    return username, key


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Host(Protocol):
    """What an endpoint module sees of the app that serves it (app.SandboxApp is one)."""

    workspaces: dict[str, SandboxWorkspace]
    faults: Faults
    keys_seen: dict[str, list[tuple[str, str | None]]]

    def route(
        self,
        path: str,
        handler: Callable[[SandboxWorkspace, dict[str, Any]], Any],
        access: str,
        authenticate: Callable[[dict[str, Any]], SandboxWorkspace] | None = None,
        window: str | None = None,
    ) -> None: ...

    def route_get(
        self,
        prefix: str,
        handler: Callable[[SandboxWorkspace, str, dict[str, str]], Any],
        access: str,
        authenticate: Callable[[dict[str, Any]], SandboxWorkspace],
        window: str,
    ) -> None: ...

    def header(self, name: str) -> str | None: ...
