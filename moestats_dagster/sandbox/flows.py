"""The sandbox's Flows API (v5, early access) and the flow-linked campaigns it describes.

As MoEngage documents it (facts.md, "Flow-linked campaigns"):

- `POST /v5/flows/search`: the workspace's v5 key (`v5_key`; the Campaign report key gets 401),
  body `{limit 1..100, cursor, status[], include_archived, teams[], ...}`, answer
  `{response_id, type: "flow", data: {flows, has_more, next_cursor}}`, most recently updated
  first; archived flows only with `include_archived: true`; a workspace with `flow_teams` answers
  400 without `teams`.
- `GET /v5/flows/{flow_id}` (`?version_no=N`, default the last published version) and
  `GET /v5/flows/{flow_id}/versions/{version_id}`: `data.versions[]` and `data.structure.nodes[]`,
  ACTION nodes with `config.campaign_id`, a next-best-action node listing `config.channels[]`.
- One rate window for every Flows endpoint of a workspace; 403 without `flows_access`.

The flows of a workspace are a pure function of its id and `flows` count. Their step campaigns
are not in the campaign universe that an unnamed Stats API call pages through: the Stats API
answers them only when their ids are named (app.py), as its published spec says.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from moestats_dagster.sandbox.generator import Campaign, make_campaign, seeded
from moestats_dagster.sandbox.late import answers_after_stop
from moestats_dagster.sandbox.protocol import Host, HttpError, SandboxWorkspace, is_int

SEARCH_PATH = "/v5/flows/search"
FLOW_PREFIX = "/v5/flows/"
WINDOW = "/v5/flows"  # every Flows endpoint counts against one window
FLOW_INDEX_BASE = 1_000_000  # flow step campaigns' indexes: far above any campaign universe
FLOW_THEMES = ("Welcome Series", "Abandoned Cart", "Win-back", "Re-engagement", "Onboarding",
               "Post-purchase", "Birthday", "Browse Abandonment")  # fmt: skip
STATUSES = ("DRAFT", "ACTIVE", "SCHEDULED", "PAUSED", "STOPPED", "COMPLETED", "RETIRED",
            "UNDER_REVIEW", "REJECTED")  # fmt: skip
CREATED = dt.datetime(2023, 1, 10, 9, 30)
# Flows that stopped sending: stats exist for the days before (history loads must find them).
STOPPED_ON = {"STOPPED": dt.date(2024, 12, 1), "COMPLETED": dt.date(2024, 11, 20)}


@dataclass(frozen=True)
class FlowVersion:
    version_id: str
    version_no: int
    version_name: str
    status: str  # LIVE or RETIRED (a retired version still sends to the users inside it)
    steps: tuple[Campaign, ...]
    next_best_action: bool  # an NBA node choosing between the first two steps


@dataclass(frozen=True)
class Flow:
    index: int
    flow_id: str
    name: str
    status: str
    archived: bool
    delivery_type: str
    versions: tuple[FlowVersion, ...]
    updated_at: dt.datetime

    @property
    def stopped_on(self) -> dt.date | None:
        return STOPPED_ON.get(self.status)

    def campaigns(self) -> dict[str, Campaign]:
        """Every step campaign of every version, by id."""
        return {c.campaign_id: c for v in self.versions for c in v.steps}


def _hex(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:24]


def _step(workspace_id: str, flow: int, step: int) -> Campaign:
    campaign = make_campaign(workspace_id, FLOW_INDEX_BASE + flow * 100 + step)
    return dataclasses.replace(campaign, parent_index=None)


@lru_cache(maxsize=64)
def flows_of(workspace_id: str, count: int, steps_each: int | None = None) -> tuple[Flow, ...]:
    """The workspace's flows: every 6th stopped, every 6th (from the 6th) completed and archived,
    one in six paused; even flows have a retired first version whose last step the live
    version replaced; every third (from the 2nd) has a next-best-action node."""
    flows = []
    for i in range(count):
        status, archived = ("ACTIVE", False)
        if i % 6 == 3:
            status = "STOPPED"
        elif i % 6 == 5:
            status, archived = "COMPLETED", True
        elif i % 6 == 2:
            status = "PAUSED"
        steps = tuple(_step(workspace_id, i, s) for s in range(steps_each or 2 + i % 2))
        versions = []
        if i % 2 == 0:  # a first version, retired, whose last step the live one replaced
            retired = (*steps[:-1], _step(workspace_id, i, 9))
            versions.append(FlowVersion(_hex(workspace_id, i, 1), 1, "Version 1", "RETIRED",
                                        retired, False))  # fmt: skip
        live_no = len(versions) + 1
        versions.append(FlowVersion(_hex(workspace_id, i, live_no), live_no, f"Version {live_no}",
                                    "LIVE", steps, i % 3 == 1))  # fmt: skip
        stopped = STOPPED_ON.get(status)
        updated = (
            dt.datetime.combine(stopped, dt.time(8))
            if stopped
            else CREATED + dt.timedelta(days=30 * live_no + i)
        )
        flows.append(
            Flow(
                i,
                _hex(workspace_id, "flow", i),
                f"{FLOW_THEMES[i % len(FLOW_THEMES)]} #{i}",
                status,
                archived,
                "EVENT_TRIGGERED" if i % 4 else "ONE_TIME",
                tuple(versions),
                updated,
            )  # fmt: skip
        )
    return tuple(flows)


def _flows(workspace: SandboxWorkspace) -> tuple[Flow, ...]:
    return flows_of(workspace.workspace_id, workspace.flows, workspace.flow_steps)


def flow_campaigns_on(workspace: SandboxWorkspace, day: dt.date) -> list[Campaign]:
    """The flow step campaigns that sent on `day` (a retired version's steps too, less often)."""
    sent = []
    for flow in _flows(workspace):
        if flow.stopped_on is not None and day >= flow.stopped_on:
            continue
        retired_only = set(flow.campaigns()) - {c.campaign_id for c in flow.versions[-1].steps}
        for campaign_id, campaign in flow.campaigns().items():
            share = 0.5 if campaign_id in retired_only else 0.8
            if seeded(workspace.workspace_id, "flow-send", campaign_id, day).random() < share:
                sent.append(campaign)
    return sorted(sent, key=lambda c: c.campaign_id)


def flow_tail_on(workspace: SandboxWorkspace, day: dt.date) -> list[Campaign]:
    """The steps of flows stopped before `day` that still answer on it: people click and
    convert on what they got before the stop (sandbox/late.py)."""
    tail = []
    for flow in _flows(workspace):
        if flow.stopped_on is None or day < flow.stopped_on:
            continue
        for campaign_id, campaign in flow.campaigns().items():
            if answers_after_stop(workspace.workspace_id, campaign_id, day, flow.stopped_on):
                tail.append(campaign)
    return sorted(tail, key=lambda c: c.campaign_id)


def flow_of_campaign(workspace: SandboxWorkspace) -> dict[str, tuple[Flow, Campaign]]:
    """Every flow step campaign's id -> (its flow, the campaign)."""
    return {
        cid: (flow, campaign)
        for flow in _flows(workspace)
        for cid, campaign in flow.campaigns().items()
    }


def flow_fields(workspace: SandboxWorkspace, found: dict[str, Any]) -> dict[str, Any]:
    """A metadata object of a flow step campaign gets its flow (`flow_id`, `flow_name`) and the
    step's name, as MoEngage's campaign search and Campaign Meta answer them."""
    step = flow_of_campaign(workspace).get(found["campaign_id"])
    if step is not None:
        flow, campaign = step
        found["flow_id"], found["flow_name"] = flow.flow_id, flow.name
        if "basic_details" in found:
            found["basic_details"] = {**found["basic_details"], "name": step_name(flow, campaign)}
        else:
            found["campaign_name"] = step_name(flow, campaign)
    return found


def step_name(flow: Flow, campaign: Campaign) -> str:
    step = campaign.index % 100
    return (
        f"{flow.name} · {f'step {step + 1}' if step < 9 else 'old last step'} ({campaign.channel})"
    )


def _iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def summary(flow: Flow) -> dict[str, Any]:
    """A flow as `flows/search` lists it."""
    return {
        "flow_id": flow.flow_id,
        "name": flow.name,
        "status": flow.status,
        "archived": flow.archived,
        "delivery_type": flow.delivery_type,
        "active_version_name": flow.versions[-1].version_name,
        "tags": ["lifecycle"] if flow.index % 2 else ["lifecycle", "revenue"],
        "created_at": _iso(CREATED + dt.timedelta(days=flow.index)),
        "updated_at": _iso(flow.updated_at),
        "published_at": _iso(CREATED + dt.timedelta(days=flow.index, hours=2)),
        "created_by": f"journeys{flow.index % 3 + 1}@example.com",
    }


def _nodes(flow: Flow, version: FlowVersion) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = [
        {"stage_id": "trigger", "type": "TRIGGER", "label": "Entry: user event",
         "parent_stage_id": None, "child_stage_ids": ["s0"], "config": {"event": "app_open"}},
    ]  # fmt: skip
    for n, campaign in enumerate(version.steps):
        last = n == len(version.steps) - 1
        nodes.append({
            "stage_id": f"s{n}", "type": "ACTION", "label": f"Step {n + 1}",
            "parent_stage_id": "trigger" if n == 0 else f"w{n - 1}",
            "child_stage_ids": [] if last else [f"w{n}"],
            "config": {"campaign_id": campaign.campaign_id, "channel": campaign.channel,
                       "campaign_name": step_name(flow, campaign)},
        })  # fmt: skip
        if not last:
            nodes.append({"stage_id": f"w{n}", "type": "WAIT", "label": "Wait 1 day",
                          "parent_stage_id": f"s{n}", "child_stage_ids": [f"s{n + 1}"],
                          "config": {"duration": "P1D"}})  # fmt: skip
    if version.next_best_action:
        nodes.append({
            "stage_id": "nba", "type": "NEXT_BEST_ACTION", "label": "Best channel",
            "parent_stage_id": "trigger", "child_stage_ids": ["s0", "s1"],
            "config": {"channels": [{"channel": c.channel, "campaign_id": c.campaign_id}
                                    for c in version.steps[:2]]},
        })  # fmt: skip
    return nodes


def detail(flow: Flow, version: FlowVersion) -> dict[str, Any]:
    """`GET /v5/flows/{id}`'s data for one version."""
    return {
        **summary(flow),
        "version_id": version.version_id,
        "version_no": version.version_no,
        "versions": [{"version_id": v.version_id, "version_name": v.version_name,
                      "version_no": v.version_no, "status": v.status} for v in flow.versions],
        "structure": {"nodes": _nodes(flow, version)},
    }  # fmt: skip


def edited(app: Host, flow: Flow) -> dict[str, Any]:
    """A flow as listed, with the `flow_updated` fault's newer updated_at (someone edited it)."""
    listed = summary(flow)
    if flow.flow_id in app.faults.flow_updated:
        listed["updated_at"] = app.faults.flow_updated[flow.flow_id]
    return listed


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: Any) -> int:
    if cursor is None:
        return 0
    try:
        kind, _, value = base64.urlsafe_b64decode(str(cursor).encode()).decode().partition(":")
        if kind == "offset" and value.isdigit():
            return int(value)
    except ValueError:
        pass
    raise HttpError(400, "cursor is not a cursor this API gave out")


def serve_flows(app: Host, authenticate) -> None:
    """Add the Flows endpoints to `app`, authenticated as v5 (the workspace's Campaigns key)."""

    def search(workspace: SandboxWorkspace, body: dict[str, Any]) -> dict[str, Any]:
        limit = body.get("limit", 20)
        if not is_int(limit) or not 1 <= limit <= 100:
            raise HttpError(400, f"limit {limit!r} must be an integer from 1 to 100")
        statuses = body.get("status") or list(STATUSES)
        if not isinstance(statuses, list) or not set(statuses) <= set(STATUSES):
            raise HttpError(400, f"status must be an array of {', '.join(STATUSES)}")
        teams = body.get("teams")
        if workspace.flow_teams and not teams:
            raise HttpError(400, "teams is required: this account uses the teams feature")
        if teams is not None and (
            not isinstance(teams, list) or not all(isinstance(t, str) for t in teams)
        ):
            raise HttpError(400, "teams must be an array of strings")
        flows = [
            f for f in _flows(workspace)
            if f.status in statuses and (body.get("include_archived") or not f.archived)
        ]  # fmt: skip
        flows.sort(key=lambda f: (f.updated_at, f.flow_id), reverse=True)
        start = _offset(body.get("cursor"))
        page = flows[start : start + limit]
        more = start + limit < len(flows)
        following = 0 if app.faults.flow_cursor == "stuck" else start + limit
        return {
            "response_id": body.get("request_id") or _hex("search", start),
            "type": "flow",
            "data": {"flows": [edited(app, f) for f in page], "has_more": more,
                     "next_cursor": _cursor(following) if more else None},
        }  # fmt: skip

    def read(workspace: SandboxWorkspace, rest: str, query: dict[str, str]) -> dict[str, Any]:
        flow_id, _, tail = rest.partition("/versions/")
        flows = {f.flow_id: f for f in _flows(workspace)}
        flow = flows.get(flow_id)
        if flow is None or "/" in flow_id:
            raise HttpError(404, f"no flow {flow_id[:40]!r} in this workspace")
        if tail:
            version = next((v for v in flow.versions if v.version_id == tail), None)
        elif "version_no" in query:
            number = query["version_no"]
            version = next((v for v in flow.versions if str(v.version_no) == number), None)
        else:
            version = flow.versions[-1]  # the last published
        if version is None:
            raise HttpError(404, f"flow {flow_id}: no such version")
        data = {**detail(flow, version), "updated_at": edited(app, flow)["updated_at"]}
        return {"response_id": _hex("flow", flow_id, version.version_id), "type": "flow",
                "data": data}  # fmt: skip

    app.route(SEARCH_PATH, search, access="flows_access", authenticate=authenticate, window=WINDOW)
    app.route_get(FLOW_PREFIX, read, access="flows_access", authenticate=authenticate,
                  window=WINDOW)  # fmt: skip
