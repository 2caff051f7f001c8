"""Flow-linked campaigns of a workspace: found with the Flows API, cached in the lake.

The Stats API answers a Flow's step campaigns only when their ids are named, so before a day
(or a period) is fetched its flow campaigns must be known. `find_flows` reads the cache
(`moestats.flows`, `moestats.flow_campaigns`), asks the Flows API for what changed (one search
call per 100 flows, plus a read of each new or changed flow and of each version not cached),
and stores what changed, in one transaction. A workspace whose key cannot read flows (no v5 key,
401/403, not served) falls back to campaign search: every campaign listed with its children,
whose flow-node rows carry `flow_id` and `flow_name` (no versions, stages or labels; ⌈campaigns /
15⌉ calls, so at most once a day), on top of the flows cached before; `flows_available` (WARN,
on `moestats/flows`) says what to ask for. `run_flows` is a run's discovery, once per run and
never repeated by a retry within the hour of the same failure.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field

import duckdb
from dagster import AssetExecutionContext, DagsterEventType, Failure

from moestats_dagster.config import WorkspaceSettings
from moestats_dagster.lakehouse.ledger import quiet_steps
from moestats_dagster.lakehouse.warehouse import read_slice, replace_slices
from moestats_dagster.model import checks
from moestats_dagster.model.flows import flow_frames, known_flows
from moestats_dagster.model.schemas import FLOW_CAMPAIGNS, FLOWS
from moestats_dagster.moengage import MoEngageError
from moestats_dagster.moengage.flows import (
    FlowStep,
    FlowSummary,
    FlowVersion,
    KnownFlow,
    campaigns_that_may_send,
    text_field,
)
from moestats_dagster.orchestration.lib.campaign_sources import (
    ENDPOINTS,
    first_answer,
    refused,
    sources,
)
from moestats_dagster.orchestration.lib.resources import (
    MissingApiKeyError,
    MoEngageResource,
    WarehouseResource,
)

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
    fallback: str | None = None  # how flows were found instead (campaign search), if they were
    calls: int = 0
    flows_read: int = 0
    versions_read: int = 0
    stored: bool = False  # the cache was updated
    quiet: set[str] = field(default_factory=set)  # steps the ledger shows quiet (not named)

    def campaign_ids(self, first: dt.date, last: dt.date) -> list[str]:
        """The step campaigns that may answer from `first` to `last`: every step of every
        flow published by then, less the quiet steps of flows that send nothing new."""
        return campaigns_that_may_send(
            self.flows.values(), first.isoformat(), last.isoformat(), self.quiet
        )

    def flow_of(self) -> dict[str, str]:
        """Each step campaign's flow (the first that lists it)."""
        out: dict[str, str] = {}
        for flow_id, flow in self.flows.items():
            for _, steps in flow.versions.values():
                for step in steps:
                    out.setdefault(step.campaign_id, flow_id)
        return out

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
            "flow_steps_quiet": len(self.quiet),
            **({"flows_unavailable": self.unavailable} if self.unavailable else {}),
            **({"flows_found_by": self.fallback} if self.fallback else {}),
        }


def find_flows(
    moengage: MoEngageResource,
    conn: duckdb.DuckDBPyConnection,
    workspace_id: str,
    *,
    before: dt.date,
    retry_seconds: float,
    log: logging.Logger | None = None,
) -> FlowsFound:
    """The workspace's flows (see the module docstring), with the steps the ledger shows quiet
    before `before` (the run's first day). Failures a retry may cure (429s past the budget, no
    answer, a malformed answer) raise; refusals (no key, 401, 403, 404) do not: they are the
    cache's flows with `unavailable` saying why."""
    ws = moengage.workspace(workspace_id)
    if not ws.finds_flows:
        return FlowsFound(looked_for=False)
    found = _find(moengage, conn, ws, retry_seconds, log)
    found.quiet = quiet_steps(conn, workspace_id, before, ws.flow_quiet_days)
    return found


def _find(
    moengage: MoEngageResource,
    conn: duckdb.DuckDBPyConnection,
    ws: WorkspaceSettings,
    retry_seconds: float,
    log: logging.Logger | None,
) -> FlowsFound:
    workspace_id = ws.id
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
    except (MoEngageError, MissingApiKeyError) as exc:
        why = refused(exc, "the Flows API")
        if why is None:
            raise
        return _fallback(moengage, conn, ws, cached, why, retry_seconds, log)
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


SEARCHED = "campaign-search"  # the version id of the steps campaign search found
SEARCH_EVERY = dt.timedelta(hours=20)  # campaign search lists every campaign: once a day


def _fallback(
    moengage: MoEngageResource,
    conn: duckdb.DuckDBPyConnection,
    ws: WorkspaceSettings,
    cached: dict[str, KnownFlow],
    why: str,
    retry_seconds: float,
    log: logging.Logger | None,
) -> FlowsFound:
    """Flows found through campaign search, when the Flows API cannot be asked: the flow-node
    rows (`flow_id`, `flow_name`) of every campaign listed with its children. Refreshed at most
    once a day; the campaign metadata sources are tried in their usual order."""
    now = dt.datetime.now(dt.UTC)
    searched = [f for f in cached.values() if SEARCHED in f.versions]
    if searched and all(f.read_at and now - f.read_at < SEARCH_EVERY for f in searched):
        return FlowsFound(cached, unavailable=why, fallback="campaign search (read today)")
    source, listed, tried, calls = first_answer(
        moengage, ws.id, sources(ws, None), lambda client: client.every_campaign(), log
    )
    if source is None:
        refusals = ", ".join(f"{ENDPOINTS[s]}: {r.split(':', 1)[0]}" for s, r in tried.items())
        return FlowsFound(cached, unavailable=why + (f"; campaign search: {refusals}"
                                                     if refusals else ""), calls=calls)  # fmt: skip
    found = _flows_listed(listed, now)
    merged = dict(cached)
    for flow_id, flow in found.items():
        old = merged.get(flow_id)
        if old is None or set(old.versions) <= {SEARCHED}:
            merged[flow_id] = flow
        else:  # versions read from the Flows API before: the listing adds its steps
            old.versions[SEARCHED] = flow.versions[SEARCHED]
    flows, steps = flow_frames(merged, workspace_id=ws.id, fetched_at=now)
    replace_slices(conn, {FLOWS.name: flows, FLOW_CAMPAIGNS.name: steps},
                   workspace_id=ws.id, retry_seconds=retry_seconds)  # fmt: skip
    via = f"{ENDPOINTS[source]} (campaign search: {len(found)} flows, no versions)"
    return FlowsFound(merged, unavailable=why, fallback=via, calls=calls, stored=True)


def _flows_listed(listed: list[dict], now: dt.datetime) -> dict[str, KnownFlow]:
    """Flows as campaign search shows them: the campaigns that name a flow, by flow."""
    flows: dict[str, KnownFlow] = {}
    version = FlowVersion(SEARCHED, None, "listed by campaign search", None)
    steps: dict[str, list[FlowStep]] = {}
    names: dict[str, str | None] = {}
    for found in listed:
        flow_id = found.get("flow_id")
        if not isinstance(flow_id, str) or not flow_id.strip():
            continue
        details = found.get("basic_details") if isinstance(found.get("basic_details"), dict) else {}
        name = details.get("name", found.get("campaign_name"))
        steps.setdefault(flow_id, []).append(
            FlowStep(
                str(found["campaign_id"]),
                text_field(found.get("channel")),
                text_field(name),
                None,
                None,
                "campaign search",
            )  # fmt: skip
        )
        names.setdefault(flow_id, text_field(found.get("flow_name")))
    for flow_id, flow_steps in steps.items():
        summary = FlowSummary(flow_id, names[flow_id], None, None, None, None, (), None, None,
                              None, None)  # fmt: skip
        flows[flow_id] = KnownFlow(summary, {SEARCHED: (version, tuple(flow_steps))}, now)
    return flows


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
    if found.fallback:
        kept = (f"; {len(found.flows)} flows were found through {found.fallback} instead, "
                "which misses the steps of versions it does not list")  # fmt: skip
    else:
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


def run_flows(
    context: AssetExecutionContext,
    moengage: MoEngageResource,
    warehouse: WarehouseResource,
    conn: duckdb.DuckDBPyConnection,
    workspace_id: str,
    where: str,
    first: dt.date,
) -> FlowsFound:
    """The workspace's flows for a run whose first day is `first` (flow_sources.find_flows),
    a failure worded for `where`."""
    earlier = _discovery_failed_before(context, workspace_id)
    if earlier is not None:
        raise Failure(description=f"{where}: {earlier}", allow_retries=False)
    try:
        found = find_flows(moengage, conn, workspace_id, before=first, log=context.log,
                           retry_seconds=warehouse.retry_seconds)  # fmt: skip
    except MoEngageError as exc:
        raise Failure(
            description=f"{where}: {DISCOVERY_FAILED} {exc}",
            metadata={"error": type(exc).__name__},
        ) from None
    if found.unavailable:
        instead = f"; found through {found.fallback} instead" if found.fallback else ""
        context.log.warning(f"{workspace_id}: the Flows API cannot be asked ({found.unavailable})"
                            f"{instead}; see the check flows_available")  # fmt: skip
    elif found.looked_for:
        context.log.info(f"{workspace_id}: {len(found.flows)} flows ({found.calls} Flows API "
                         f"calls, {found.flows_read} flows read)")  # fmt: skip
    if found.quiet:
        context.log.info(f"{workspace_id}: {len(found.quiet)} step campaigns of flows that send "
                         "nothing new are no longer named: the ledger shows each answering "
                         "nothing on flow_quiet_days days asked in a row")  # fmt: skip
    return found


DISCOVERY_FAILED = ("nothing was published, the previous slices are kept. Finding the "
                    "workspace's flow-linked campaigns failed:")  # fmt: skip
DISCOVERY_MEMORY = dt.timedelta(hours=1)


def _discovery_failed_before(context: AssetExecutionContext, workspace_id: str) -> str | None:
    """When this run retries one (`dagster/parent_run_id`) whose discovery of this workspace's
    flows failed less than an hour ago, that failure, worded so: a discovery that just failed
    (an endless Flows API costs minutes) is not asked again by the retry."""
    parent = context.run.tags.get("dagster/parent_run_id")
    if not parent:
        return None
    since = (dt.datetime.now(dt.UTC) - DISCOVERY_MEMORY).timestamp()
    for record in context.instance.all_logs(parent, of_type=DagsterEventType.STEP_FAILURE):
        data = record.dagster_event.step_failure_data if record.dagster_event else None
        said = getattr(data.user_failure_data, "description", None) if data else None
        text = said or (data.error.message if data and data.error else "")
        if record.timestamp >= since and DISCOVERY_FAILED in text and f"|{workspace_id}:" in text:
            cause = re.split(r"; \d{4}-\d{2}-\d{2}\|", text.split(DISCOVERY_FAILED, 1)[1])[0]
            return (
                "nothing was published, the previous slices are kept. Finding the workspace's "
                f"flow-linked campaigns failed in run {parent[:8]} less than an hour ago, so "
                f"this retry does not ask again (the next run does): {cause.strip()}"
            )
    return None
