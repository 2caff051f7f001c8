"""Flow-linked campaigns of a workspace: found with the Flows API, cached in the lake.

The Stats API answers a Flow's step campaigns only when their ids are named, so before a day
(or a period) is fetched its flow campaigns must be known. `find_flows` reads the cache
(`moestats.flows`, `moestats.flow_campaigns`), asks the Flows API for what changed (one search
call per 100 flows, plus a read of each new or changed flow and of each version not cached),
and stores what changed, in one transaction. A workspace whose key cannot read flows (no v5 key,
401/403, not served) still gets the campaigns of the flows cached before; `flows_available`
(WARN, on `moestats/flows`) says what to ask for.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import duckdb

from moestats_dagster.config import WorkspaceSettings
from moestats_dagster.lakehouse.warehouse import read_slice, replace_slices
from moestats_dagster.model import checks
from moestats_dagster.model.flows import flow_frames, known_flows
from moestats_dagster.model.schemas import FLOW_CAMPAIGNS, FLOWS
from moestats_dagster.moengage import AccessDeniedError, AuthenticationError, RequestFailed
from moestats_dagster.moengage.flows import KnownFlow, campaigns_that_may_send
from moestats_dagster.orchestration.resources import MissingApiKeyError, MoEngageResource

ASK_FOR = (
    "a v5 API key with the Campaigns View permission (campaigns:view; MoEngage: Settings > "
    "Account > API keys) named in campaigns_api_key_env, and MoEngage (support or your CSM) to "
    "enable the Flows API (early access) for this workspace"
)


@dataclass
class FlowsFound:
    """A workspace's flows as known for this run, and what finding them cost."""

    flows: dict[str, KnownFlow] = field(default_factory=dict)
    looked_for: bool = True  # False: `flows: off` or a campaign_ids filter
    unavailable: str | None = None  # why the Flows API could not be asked (then: the cache)
    calls: int = 0
    flows_read: int = 0
    versions_read: int = 0
    stored: bool = False  # the cache was updated

    def campaign_ids(self, first: dt.date, last: dt.date) -> list[str]:
        """The step campaigns that may have sent from `first` to `last`."""
        return campaigns_that_may_send(self.flows.values(), first.isoformat(), last.isoformat())

    @property
    def metadata(self) -> dict[str, object]:
        """For a materialization: what discovery found and cost."""
        if not self.looked_for:
            return {"flow_discovery": "off (flows: off, or a campaign_ids filter)"}
        return {
            "flows": len(self.flows),
            "flow_discovery_calls": self.calls,
            "flows_read": self.flows_read,
            "flow_versions_read": self.versions_read,
            **({"flows_unavailable": self.unavailable} if self.unavailable else {}),
        }


def find_flows(
    moengage: MoEngageResource,
    conn: duckdb.DuckDBPyConnection,
    workspace_id: str,
    *,
    retry_seconds: float,
    log: logging.Logger | None = None,
) -> FlowsFound:
    """The workspace's flows (see the module docstring). Failures a retry may cure (429s past
    the budget, no answer, a malformed answer) raise; refusals (no key, 401, 403, 404) do not:
    they are the cache's flows with `unavailable` saying why."""
    ws = moengage.workspace(workspace_id)
    if not ws.finds_flows:
        return FlowsFound(looked_for=False)
    cached = known_flows(
        read_slice(conn, FLOWS, workspace_id=workspace_id),
        read_slice(conn, FLOW_CAMPAIGNS, workspace_id=workspace_id),
    )
    try:
        with moengage.flows_client(workspace_id, logger=log) as client:
            try:
                found = client.discover(cached, teams=ws.flow_teams)
            finally:
                calls = client.counters.calls
    except (AuthenticationError, AccessDeniedError, MissingApiKeyError) as exc:
        return FlowsFound(cached, unavailable=f"{type(exc).__name__}: {exc}")
    except RequestFailed as exc:
        if getattr(exc, "status", None) != 404:
            raise
        return FlowsFound(cached, unavailable="HTTP 404: the Flows API is not served at this host")
    result = FlowsFound(found.flows, calls=calls, flows_read=found.flows_read,
                        versions_read=found.versions_read)  # fmt: skip
    if found.changed:
        flows, steps = flow_frames(
            found.flows, workspace_id=workspace_id, fetched_at=dt.datetime.now(dt.UTC)
        )
        replace_slices(conn, {FLOWS.name: flows, FLOW_CAMPAIGNS.name: steps},
                       workspace_id=workspace_id, retry_seconds=retry_seconds)  # fmt: skip
        result.stored = True
    return result


def availability(ws: WorkspaceSettings, found: FlowsFound, previous: str | None) -> checks.Outcome:
    """`flows_available`: can flow-linked campaigns be found for this workspace? The same
    reason as last time is marked `already_reported`, so Slack hears it once."""
    if not found.looked_for:
        return checks.Outcome(True, metadata={"summary": "not looked for (flows: off or "
                                              "campaign_ids)", "unavailable": ""})  # fmt: skip
    if found.unavailable is None:
        return checks.Outcome(True, metadata={
            "summary": f"{len(found.flows)} flows found with the Flows API", "unavailable": ""})  # fmt: skip
    reason = found.unavailable.split(":", 1)[0]
    kept = (
        f"; the {len(found.flows)} flows found before are still asked for"
        if found.flows else ""
    )  # fmt: skip
    return checks.Outcome(
        False,
        metadata={
            "summary": f"{ws.id}: flow-linked campaigns cannot be loaded ({found.unavailable})"
            f"{kept}. Their stats come only when their ids are named, so every step of a Flow is "
            f"missing from the stats. Ask for {ASK_FOR}",
            "unavailable": reason,
            "already_reported": previous == reason,
        },
    )
