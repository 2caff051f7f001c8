"""Why a call got no HTTP answer at all, and what the person running us should do about it."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import requests
from urllib3.exceptions import NameResolutionError

from moestats_dagster.moengage.errors import (
    AccessDeniedError,
    AuthenticationError,
    BadRequestError,
    RequestFailed,
    UnreachableError,
    describe_body,
)


@dataclass(frozen=True)
class NoAnswer:
    """A classified connection-level failure."""

    cause: str  # DNS | refused | TLS | proxy | connect timeout | read timeout | deadline | broken
    permanent: bool  # retrying cannot help (DNS, TLS)
    detail: str  # the library's own words, for the curious


def classify(exc: BaseException, *, deadline_fired: bool = False) -> NoAnswer:
    chain = _chain(exc)
    # The innermost OS-level reason ("[Errno 111] Connection refused") says it best.
    os_errors = [e for e in chain if isinstance(e, OSError) and e.errno is not None]
    detail = str(os_errors[-1]) if os_errors else str(exc)
    if deadline_fired:
        return NoAnswer("deadline", False, detail)
    if isinstance(exc, requests.exceptions.SSLError):
        return NoAnswer("TLS", True, detail)
    if isinstance(exc, requests.exceptions.ProxyError):
        return NoAnswer("proxy", False, detail)
    if any(isinstance(e, NameResolutionError | socket.gaierror) for e in chain):
        return NoAnswer("DNS", True, detail)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return NoAnswer("connect timeout", False, detail)
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return NoAnswer("read timeout", False, detail)
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in detail.lower():
        return NoAnswer("refused", False, detail)
    return NoAnswer("broken", False, detail)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 20:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    return seen


def explain(
    failure: NoAnswer, *, host: str, port: int, connect_timeout: float, deadline: float
) -> str:
    """What happened and the fix, in words for the person who runs the pipeline."""
    where = f"{host}:{port}"
    moengage = host.endswith(".moengage.com")
    proxy = "set HTTPS_PROXY (or base_url) if this machine must go through a proxy"
    return {
        "DNS": f"the host name {host} does not resolve from this machine (DNS). Fix: check "
        + (
            "data_center in the workspaces file (01-06 or 101 -> api-XX.moengage.com) and "
            if moengage
            else "base_url in the workspaces file and "
        )
        + f"this machine's DNS; {proxy}",
        "refused": f"{where} refused the connection: nothing listens there. Fix: check base_url "
        "(host and port) or the proxy in HTTPS_PROXY; MoEngage's API listens on 443",
        "TLS": f"the TLS handshake with {where} failed. Fix: a proxy that intercepts TLS needs "
        "its CA certificate in REQUESTS_CA_BUNDLE; check that base_url's scheme (https/http) "
        "matches the server",
        "proxy": f"the proxy in front of {where} failed or refused us. Fix: check HTTPS_PROXY / "
        "HTTP_PROXY and that the proxy may reach MoEngage",
        "connect timeout": f"no connection to {where} within {connect_timeout:.0f} s: an egress "
        f"firewall may be dropping the traffic. Fix: allow outbound HTTPS to {host}, or {proxy}",
        "read timeout": f"{where} accepted the connection but sent nothing for too long. "
        "MoEngage may be degraded: re-run later; if it persists, check the proxy",
        "deadline": f"{where} did not send a complete answer within {deadline:.0f} s (it "
        "stalled, or sent its answer a trickle at a time). Re-run later; if it persists, "
        "check the proxy or gateway in between",
        "broken": f"the connection to {where} broke before an answer arrived. Re-run later; if "
        "it persists, check the network path (proxy, firewall)",
    }[failure.cause]


def unreachable(
    failure: NoAnswer,
    attempts: int,
    *,
    workspace_id: str,
    api_name: str,
    host: str,
    port: int,
    connect_timeout: float,
    deadline: float,
    detail: str,
) -> UnreachableError:
    why = explain(failure, host=host, port=port, connect_timeout=connect_timeout, deadline=deadline)
    return UnreachableError(
        f"workspace {workspace_id}: cannot get an answer from {api_name} at {host}:{port} "
        f"({failure.cause}, {attempts} attempt{'s' if attempts > 1 else ''}): {why}. [{detail}]",
        host=host,
        port=port,
        cause=failure.cause,
        workspace_id=workspace_id,
    )


def refusal(
    status: int,
    *,
    said: str,
    body: dict[str, Any],
    workspace_id: str,
    api_name: str,
    host: str,
    forbidden_fix: str,
    unauthorized_fix: str | None = None,
) -> RequestFailed:
    """The error for an answer that a retry cannot change (4xx other than 429)."""
    ws = workspace_id
    if status == 401:
        return AuthenticationError(
            f"workspace {ws}: 401 Unauthorized from {api_name} ({said}). Fix: "
            + (
                unauthorized_fix
                or "check the workspace id and that the env var holds the Campaign report API "
                "key (Settings > Account > APIs; the Data API key does not work here)"
            ),
            status=status,
            workspace_id=ws,
        )
    if status == 403:
        return AccessDeniedError(
            f"workspace {ws}: 403 Forbidden: {api_name} is not enabled for this workspace "
            f"({said}). Fix: {forbidden_fix}",
            status=status,
            workspace_id=ws,
        )
    if status == 400:
        return BadRequestError(
            f"workspace {ws}: 400 Bad Request from {api_name}: {said}; "
            f"request: {describe_body(body)}",
            body=body,
            api_message=said,
            status=status,
            workspace_id=ws,
        )
    return RequestFailed(
        f"workspace {ws}: unexpected HTTP {status} from {api_name} at {host} ({said}); "
        f"request: {describe_body(body)}",
        status=status,
        workspace_id=ws,
    )
