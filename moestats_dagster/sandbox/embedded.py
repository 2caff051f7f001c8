"""The sandbox behind `base_url: sandbox`: one server per process, started on first use."""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Iterable

from moestats_dagster.sandbox.app import DEFAULT_WORKSPACES, Faults, SandboxApp, SandboxWorkspace
from moestats_dagster.sandbox.server import SandboxServer

_lock = threading.Lock()
_servers: dict[tuple[tuple[str, int], ...], SandboxServer] = {}


def sandbox_api_key(workspace_id: str) -> str:
    """The public key the sandbox gives a workspace (it unlocks only synthetic data)."""
    for ws in DEFAULT_WORKSPACES:
        if ws.workspace_id == workspace_id:
            return ws.api_key
    return f"sandbox-key-{workspace_id.lower()}"


def sandbox_campaigns_key(workspace_id: str) -> str | None:
    """The sandbox's Campaigns key (v5) of a bundled workspace, if it has one."""
    for ws in DEFAULT_WORKSPACES:
        if ws.workspace_id == workspace_id:
            return ws.v5_key
    return None


STATE_ENV = "MOESTATS_SANDBOX_STATE"
LATE_WORKSPACES = ("WS_ALPHA",)  # the bundled workspace whose conversions arrive late


def _faults() -> Faults:
    """With `$MOESTATS_SANDBOX_STATE` (a SQLite file the demo sets, shared by every run's
    process), WS_ALPHA's days are first answered before their late conversions are in, as
    MoEngage's are: the demo's reconciliation then finds the month short and heals it. Without
    it each process would give its own first answer, so no answer is early."""
    path = os.environ.get(STATE_ENV, "").strip()
    return Faults(late_conversions=LATE_WORKSPACES, late_state=path) if path else Faults()


def embedded_sandbox_url(workspaces: Iterable[tuple[str, int]]) -> str:
    """URL of this process's sandbox serving `(workspace_id, calls per minute)`."""
    spec = tuple(sorted(workspaces))
    with _lock:
        server = _servers.get(spec)
        if server is None:
            defaults = {w.workspace_id: w for w in DEFAULT_WORKSPACES}
            served = [
                dataclasses.replace(defaults[workspace_id], rate_limit=limit)
                if workspace_id in defaults
                else SandboxWorkspace(workspace_id, sandbox_api_key(workspace_id), rate_limit=limit)
                for workspace_id, limit in spec
            ]
            server = _servers[spec] = SandboxServer(SandboxApp(served, faults=_faults())).start()
        return server.url
