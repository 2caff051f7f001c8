"""`moestats doctor`: one cheap probe per workspace, and what to fix.

For each workspace: is the host reachable, are the credentials accepted, is the Stats API
enabled, is Campaign Meta (Early Access) enabled, does MoEngage send rate-limit headers. One Stats
call (a page of yesterday) and one Campaign Meta call each, through the same limiter as runs,
without retries. Runs from the shell (`moestats doctor`) and from the UI (job `moestats_doctor`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from tabulate import tabulate

from .config import WorkspaceSettings
from .moengage import (
    AccessDeniedError,
    AuthenticationError,
    MoEngageError,
    RequestFailed,
    UnreachableError,
)
from .resources import MissingApiKeyError, MoEngageResource

CHECKS = ("host reachable", "credentials", "Stats API access", "Campaign Meta access",
          "rate-limit headers")  # fmt: skip
SYMBOLS = {"ok": "✓", "fail": "✗", "warn": "!", "skip": "–"}
# A probe fails fast: no retries, short deadlines. It says what is wrong; a run rides things out.
PROBE = {"max_retries": 0, "connection_retries": 0, "call_deadline_seconds": 15.0,
         "retry_budget_seconds": 30.0}  # fmt: skip


@dataclass(frozen=True)
class Finding:
    workspace: str
    check: str
    status: str  # ok | fail | warn | skip
    detail: str


def diagnose(resource: MoEngageResource, workspace_ids: list[str] | None = None) -> list[Finding]:
    settings = resource.settings()
    chosen = workspace_ids or [ws.id for ws in settings.workspaces]
    findings: list[Finding] = []
    for workspace_id in chosen:
        findings += diagnose_workspace(  # "yesterday" in the workspace's own time zone
            resource, settings.workspace(workspace_id), settings.zone(workspace_id)
        )
    return findings


def diagnose_workspace(
    resource: MoEngageResource, ws: WorkspaceSettings, timezone: str
) -> list[Finding]:
    results: dict[str, tuple[str, str]] = {}
    try:
        client = resource.client(ws.id, **PROBE)
    except (MissingApiKeyError, MoEngageError) as exc:
        results["credentials"] = ("fail", str(exc))
        return _findings(ws.id, results)
    yesterday = dt.datetime.now(ZoneInfo(timezone)).date() - dt.timedelta(days=1)
    where = f"{client._transport.host}:{client._transport.port}"
    with client:
        try:
            client.fetch_page(
                stat_date=yesterday,
                metric_type=ws.metric_types[0],
                attribution_type=ws.attribution_types[0],
            )
        except UnreachableError as exc:
            results["host reachable"] = ("fail", str(exc))
            return _findings(ws.id, results)
        except AuthenticationError as exc:
            results["host reachable"] = ("ok", f"{where} answered")
            results["credentials"] = ("fail", str(exc))
            return _findings(ws.id, results)
        except AccessDeniedError as exc:
            results["host reachable"] = ("ok", f"{where} answered")
            results["credentials"] = ("ok", "accepted")
            results["Stats API access"] = ("fail", str(exc))
        except (RequestFailed, MoEngageError) as exc:
            results["host reachable"] = ("ok", f"{where} answered")
            results["Stats API access"] = ("fail", str(exc))
        else:
            results["host reachable"] = ("ok", f"{where} answered")
            results["credentials"] = ("ok", "accepted")
            results["Stats API access"] = ("ok", f"a page of {yesterday} came back")
        headers = client.rate_headers
    if headers:
        shown = ", ".join(
            f"{k.removeprefix('x-ratelimit-')} {v}" for k, v in sorted(headers.items())
        )
        results["rate-limit headers"] = ("ok", shown)
    else:
        results["rate-limit headers"] = (
            "warn",
            "none in the answer; the limiter still keeps to rate_limit_per_minute "
            f"({ws.rate_limit_per_minute}/min) — set it if MoEngage gave this workspace another",
        )
    if results.get("credentials", ("",))[0] == "ok":
        results["Campaign Meta access"] = _probe_meta(resource, ws)
    return _findings(ws.id, results)


def _probe_meta(resource: MoEngageResource, ws: WorkspaceSettings) -> tuple[str, str]:
    try:
        with resource.meta_client(ws.id, **PROBE) as meta:
            meta.probe()
    except AccessDeniedError as exc:
        return "fail", str(exc)
    except MoEngageError as exc:
        return "fail", str(exc)
    return "ok", "a page of campaigns came back"


def _findings(workspace_id: str, results: dict[str, tuple[str, str]]) -> list[Finding]:
    return [
        Finding(workspace_id, check, *results.get(check, ("skip", "not tried: fix the ✗ above")))
        for check in CHECKS
    ]


def render(findings: list[Finding], tablefmt: str = "simple") -> str:
    rows = [(f.workspace, f.check, SYMBOLS[f.status], _wrap(f.detail)) for f in findings]
    return tabulate(rows, headers=("workspace", "check", "", "detail / fix"), tablefmt=tablefmt)


def _wrap(text: str, width: int = 100) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def failed(findings: list[Finding]) -> bool:
    return any(f.status == "fail" for f in findings)
