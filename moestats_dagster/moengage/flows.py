"""The Flows API (v5, early access): which campaigns are steps of a Flow, by flow and version.

The Stats API answers flow-linked campaigns only when their ids are named (its published spec),
so a day's unnamed pages leave every Flow step out. This client finds their ids:

- `POST /v5/flows/search`: every flow (every status, archived included), 100 per page, cursor
  paging (`has_more`, `next_cursor`); `teams` where the account has the teams feature.
- `GET /v5/flows/{flow_id}`: the last published version's nodes and the flow's `versions[]`;
  `GET /v5/flows/{flow_id}/versions/{version_id}`: another version's nodes. ACTION nodes carry
  `config.campaign_id`; next-best-action nodes list `config.channels[].campaign_id`, pointing at
  sibling ACTION nodes (kept once).

`discover` reads a flow again only when its `updated_at` or active version changed since the
cache it is given, and a version only when the cache lacks it (a published version's nodes do
not change). Plain Python, no Dagster; the cache lives in the lake (model/flows.py).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from moestats_dagster.moengage.answers import shape_error
from moestats_dagster.moengage.base import ApiClient
from moestats_dagster.moengage.errors import BadRequestError, IncompleteDataError, MoEngageError

SEARCH_PATH = "/v5/flows/search"
FLOW_PATH = "/v5/flows/{flow_id}"
VERSION_PATH = "/v5/flows/{flow_id}/versions/{version_id}"
SEARCH_LIMIT = 100  # the API's maximum flows per page
MAX_SEARCH_PAGES = 500  # 50,000 flows; more is a server that never ends
MAX_NODES = 5_000  # nodes of one version; more is not a journey a person built
STATUSES = ("DRAFT", "ACTIVE", "SCHEDULED", "PAUSED", "STOPPED", "COMPLETED", "RETIRED",
            "UNDER_REVIEW", "REJECTED")  # fmt: skip
UNSENT_VERSIONS = frozenset({"DRAFT", "UNDER_REVIEW", "REJECTED"})  # never sent to anyone

_TEXT = (str, type(None))


@dataclass(frozen=True)
class FlowSummary:
    """A flow as `flows/search` lists it (times as the API wrote them: ISO, UTC)."""

    flow_id: str
    name: str | None
    status: str | None
    archived: bool | None
    delivery_type: str | None
    active_version_name: str | None
    tags: tuple[str, ...]
    created_at: str | None
    updated_at: str | None
    published_at: str | None
    created_by: str | None


@dataclass(frozen=True)
class FlowVersion:
    version_id: str
    version_no: int | None
    version_name: str | None
    status: str | None


@dataclass(frozen=True)
class FlowStep:
    """A campaign that is a step of a flow version: an ACTION node (or one a next-best-action
    node points at that no ACTION node of the version names)."""

    campaign_id: str
    channel: str | None
    campaign_name: str | None
    stage_id: str | None
    label: str | None
    node_type: str | None


@dataclass(frozen=True)
class FlowRead:
    """One `GET` of a flow: the version read, its steps, and the flow's versions."""

    version: FlowVersion | None
    versions: tuple[FlowVersion, ...]
    steps: tuple[FlowStep, ...]


@dataclass
class KnownFlow:
    """A flow with the steps of each version read so far (what the lake caches)."""

    summary: FlowSummary
    versions: dict[str, tuple[FlowVersion, tuple[FlowStep, ...]]] = field(default_factory=dict)
    read_at: dt.datetime | None = None  # when its versions were last read (UTC)


@dataclass
class Discovery:
    """What `discover` found, and what it cost."""

    flows: dict[str, KnownFlow]
    search_calls: int = 0
    flows_read: int = 0  # flows whose GET was needed (new or changed)
    versions_read: int = 0  # further versions read
    changed: bool = False  # anything differs from the cache given

    @property
    def calls(self) -> int:
        return self.search_calls + self.flows_read + self.versions_read


class FlowsClient(ApiClient):
    """`/v5/flows/...` for one workspace, with its v5 key (Campaigns View permission)."""

    API_NAME = "the Flows API (v5)"
    UNAUTHORIZED_FIX = (
        "the key in campaigns_api_key_env must be a v5 API key (Settings > Account > API keys) "
        "with the campaigns:view permission, not the Campaign report key"
    )
    FORBIDDEN_FIX = (
        "ask MoEngage (support or your CSM) to enable the Flows API (early access) for this "
        "workspace, and give the key in campaigns_api_key_env the campaigns:view permission"
    )

    def __init__(self, *, max_workers: int = 4, **options: Any) -> None:
        options.setdefault("calls_per_second", 10)  # the Flows API: 10/s besides 100/min
        options["rate_limit_per_minute"] = min(options.get("rate_limit_per_minute", 100), 100)
        super().__init__(max_workers=max_workers, **options)

    def search(self, teams: Sequence[str] = ()) -> list[FlowSummary]:
        """Every flow of the workspace, archived and stopped ones included, as listed."""
        found: dict[str, FlowSummary] = {}
        cursor: str | None = None
        cursors: set[str] = set()
        for _ in range(MAX_SEARCH_PAGES):
            body: dict[str, Any] = {
                "limit": SEARCH_LIMIT, "status": list(STATUSES), "include_archived": True,
            }  # fmt: skip
            if teams:
                body["teams"] = list(teams)
            if cursor:
                body["cursor"] = cursor
            try:
                flows, more, cursor = self._search_page(body)
            except BadRequestError as exc:
                if teams or "team" not in str(exc).lower():
                    raise
                raise BadRequestError(
                    f"{exc}. Fix: this account uses MoEngage's teams feature, so flows are "
                    "listed per team: name the teams in flow_teams for this workspace in the "
                    "workspaces file (MoEngage: Settings > Teams)",
                    body=body,
                    api_message=exc.api_message,
                    status=400,
                    workspace_id=self.workspace_id,
                ) from None
            for flow in flows:
                if flow.flow_id in found:
                    raise IncompleteDataError(
                        f"workspace {self.workspace_id}: {self.API_NAME} listed flow "
                        f"{flow.flow_id} twice while paging; the cursor does not advance, so "
                        "the list of flows would be wrong. Re-run later"
                    )
                found[flow.flow_id] = flow
            if not more:
                return list(found.values())
            if not cursor or cursor in cursors:
                raise IncompleteDataError(
                    f"workspace {self.workspace_id}: {self.API_NAME} says has_more but gave "
                    f"{'the same' if cursor else 'no'} next_cursor; stopping rather than "
                    "paging forever. Re-run later"
                )
            cursors.add(cursor)
        raise IncompleteDataError(
            f"workspace {self.workspace_id}: {self.API_NAME} still had more flows after "
            f"{MAX_SEARCH_PAGES} pages of {SEARCH_LIMIT}; stopping rather than paging forever"
        )

    def probe(self, teams: Sequence[str] = ()) -> list[FlowSummary]:
        """One call, one flow: does the Flows API answer this workspace with this key?"""
        body: dict[str, Any] = {"limit": 1, "include_archived": True}
        if teams:
            body["teams"] = list(teams)
        return self._search_page(body)[0]

    def read(self, flow_id: str, version_id: str | None = None) -> FlowRead:
        """A flow's versions and the steps of one version (default: the last published)."""
        path = FLOW_PATH.format(flow_id=quote(flow_id, safe=""))
        if version_id is not None:
            path = VERSION_PATH.format(flow_id=quote(flow_id, safe=""),
                                       version_id=quote(version_id, safe=""))  # fmt: skip
        payload = self._transport.get(path)
        where = {"flow_id": flow_id, "version_id": version_id}
        data = _data(payload, where, self.workspace_id)
        versions = tuple(_version(v, where, self.workspace_id)
                         for v in _list(data.get("versions"), "versions", where, self.workspace_id))  # fmt: skip
        structure = data.get("structure") or {}
        if not isinstance(structure, dict):
            raise self._shape("structure is not an object", where)
        nodes = _list(structure.get("nodes"), "structure.nodes", where, self.workspace_id)
        if len(nodes) > MAX_NODES:
            raise self._shape(f"the version has {len(nodes)} nodes, more than {MAX_NODES}", where)
        read_id = data.get("version_id", version_id)
        this = next((v for v in versions if v.version_id == read_id), None)
        if this is None and isinstance(read_id, str):
            number = data.get("version_no")
            this = FlowVersion(read_id, number if _is_int(number) else None,
                               text_field(data.get("version_name")), None)  # fmt: skip
        return FlowRead(this, versions, _steps(nodes, where, self.workspace_id))

    def discover(
        self,
        known: Mapping[str, KnownFlow],
        teams: Sequence[str] = (),
    ) -> Discovery:
        """Every flow and the steps of each of its versions, reading only what `known` (the
        cache) lacks or what changed since: a flow whose `updated_at` and active version are
        as cached costs nothing beyond the search. Flows no longer listed stay as cached (their
        campaigns sent on the days before they went)."""
        started = time.monotonic()
        before = self.counters.calls
        try:
            summaries = self.search(teams)
            result = Discovery(dict(known), search_calls=self.counters.calls - before)
            stale = [s for s in summaries if _stale(s, known.get(s.flow_id))]
            stale_ids = {s.flow_id for s in stale}
            for summary in summaries:
                if summary.flow_id in stale_ids:
                    continue
                if summary != known[summary.flow_id].summary:  # a rename, a tag: no re-read
                    old = known[summary.flow_id]
                    result.flows[summary.flow_id] = KnownFlow(summary, old.versions, old.read_at)
                    result.changed = True
            pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="moestats-flows")
            try:
                with self._first_failure_stops_all():
                    refreshed = pool.map(lambda s: self._refresh(s, known.get(s.flow_id)), stale)
                    for flow, versions_read in refreshed:
                        result.flows[flow.summary.flow_id] = flow
                        result.flows_read += 1
                        result.versions_read += versions_read
                        result.changed = True
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        finally:
            self._transport.count(seconds=time.monotonic() - started)
        return result

    def _refresh(self, summary: FlowSummary, cached: KnownFlow | None) -> tuple[KnownFlow, int]:
        """A new or changed flow (see `_read_flow`); a failure names the flow and the endpoint."""
        try:
            return self._read_flow(summary, cached)
        except MoEngageError as exc:
            endpoint = "GET " + FLOW_PATH.format(flow_id=quote(summary.flow_id, safe=""))
            exc.args = (f"flow {summary.flow_id} ({text_field(summary.name, 120) or 'no name'}),"
                        f" {endpoint}: {exc}", *exc.args[1:])  # fmt: skip
            raise

    def _read_flow(self, summary: FlowSummary, cached: KnownFlow | None) -> tuple[KnownFlow, int]:
        """A new or changed flow: its default version read, then each other version the cache
        lacks (a version once published does not change its nodes); and how many of those."""
        read = self.read(summary.flow_id)
        versions_read = 0
        flow = KnownFlow(summary, read_at=dt.datetime.now(dt.UTC))
        if read.version is not None:
            flow.versions[read.version.version_id] = (read.version, read.steps)
        for version in read.versions:
            if version.version_id in flow.versions or version.status in UNSENT_VERSIONS:
                continue
            if cached and version.version_id in cached.versions:
                flow.versions[version.version_id] = (
                    version,
                    cached.versions[version.version_id][1],
                )
                continue
            other = self.read(summary.flow_id, version.version_id)
            versions_read += 1
            flow.versions[version.version_id] = (version, other.steps)
        return flow, versions_read

    def _search_page(self, body: dict[str, Any]) -> tuple[list[FlowSummary], bool, str | None]:
        payload = self._transport.post(SEARCH_PATH, body)
        data = _data(payload, body, self.workspace_id)
        flows = [_summary(f, body, self.workspace_id)
                 for f in _list(data.get("flows"), "flows", body, self.workspace_id)]  # fmt: skip
        if len(flows) > SEARCH_LIMIT:
            raise self._shape(f"a page holds {len(flows)} flows, more than the {SEARCH_LIMIT} "
                              "asked for", body)  # fmt: skip
        more, cursor = data.get("has_more"), data.get("next_cursor")
        if not isinstance(more, bool) or not isinstance(cursor, _TEXT):
            raise self._shape("has_more is not true/false or next_cursor is not a string", body)
        return flows, more, cursor

    def _shape(self, what: str, body: dict[str, Any]):
        return shape_error(what, body, workspace_id=self.workspace_id, api=self.API_NAME)


def _stale(summary: FlowSummary, cached: KnownFlow | None) -> bool:
    """Must the flow be read again? New, or its updated_at or active version changed."""
    if cached is None or not cached.versions:
        return True
    old = cached.summary
    return (summary.updated_at, summary.active_version_name) != (
        old.updated_at,
        old.active_version_name,
    )


LIVE_FLOWS = frozenset({"ACTIVE", "SCHEDULED"})  # flows that send new messages


def campaigns_that_may_send(
    flows: Iterable[KnownFlow],
    first_day: str,
    last_day: str,
    quiet: Collection[str] = frozenset(),
) -> list[str]:
    """The step campaigns of every version of every flow that may answer between `first_day`
    and `last_day` (ISO dates): every flow published by then (a day's margin, as the API's
    times are UTC and the days are the app's time zone), whatever its status now. A stopped,
    paused, completed, retired or archived flow sends nothing new, but people keep opening,
    clicking and converting on what they already got, so its steps answer after the stop, for
    as long as the answers say: only the steps in `quiet` (the ledger shows them answering
    nothing for `flow_quiet_days` days asked in a row) are left out, and never a live flow's.
    Asking for one that did not answer costs a call share, never data."""
    ids: dict[str, None] = {}
    for flow in flows:
        s = flow.summary
        if s.status in UNSENT_VERSIONS and not s.published_at:
            continue
        published = (s.published_at or s.created_at or "")[:10]
        if published and published > _shift(last_day, 1):
            continue
        live = s.status in LIVE_FLOWS and not s.archived
        for _, steps in flow.versions.values():
            ids.update(dict.fromkeys(
                step.campaign_id for step in steps if live or step.campaign_id not in quiet
            ))  # fmt: skip
    return list(ids)


def _shift(day: str, days: int) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=days)).isoformat()


# -- the answers' shapes -------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def text_field(value: Any, limit: int = 1000) -> str | None:
    """A string field, capped; anything else (a number where a name was expected) as text."""
    if value is None:
        return None
    return (value if isinstance(value, str) else str(value))[:limit]


def _data(payload: Any, body: dict[str, Any], workspace_id: str) -> dict[str, Any]:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise shape_error('the answer has no "data" object', body, workspace_id=workspace_id,
                          api=FlowsClient.API_NAME)  # fmt: skip
    return data


def _list(value: Any, name: str, body: dict[str, Any], workspace_id: str) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise shape_error(f"{name} is not an array of objects", body, workspace_id=workspace_id,
                          api=FlowsClient.API_NAME)  # fmt: skip
    return value


def _id(value: Any, name: str, body: dict[str, Any], workspace_id: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise shape_error(f"{name} is {str(value)[:40]!r}, not an id", body,
                          workspace_id=workspace_id, api=FlowsClient.API_NAME)  # fmt: skip
    return value


def _summary(flow: dict[str, Any], body: dict[str, Any], workspace_id: str) -> FlowSummary:
    tags = flow.get("tags") or []
    archived = flow.get("archived")
    return FlowSummary(
        flow_id=_id(flow.get("flow_id"), "a flow's flow_id", body, workspace_id),
        name=text_field(flow.get("name")),
        status=text_field(flow.get("status"), 40),
        archived=archived if isinstance(archived, bool) else None,
        delivery_type=text_field(flow.get("delivery_type"), 60),
        active_version_name=text_field(flow.get("active_version_name")),
        tags=tuple(text_field(t) or "" for t in tags) if isinstance(tags, list) else (),
        created_at=text_field(flow.get("created_at"), 40),
        updated_at=text_field(flow.get("updated_at"), 40),
        published_at=text_field(flow.get("published_at"), 40),
        created_by=text_field(flow.get("created_by")),
    )


def _version(version: dict[str, Any], body: dict[str, Any], workspace_id: str) -> FlowVersion:
    number = version.get("version_no")
    return FlowVersion(
        version_id=_id(version.get("version_id"), "a version's version_id", body, workspace_id),
        version_no=number if _is_int(number) else None,
        version_name=text_field(version.get("version_name")),
        status=text_field(version.get("status"), 40),
    )


def _steps(nodes: list[dict], body: dict[str, Any], workspace_id: str) -> tuple[FlowStep, ...]:
    """ACTION nodes' campaigns, then those only a next-best-action node names; each id once."""
    steps: dict[str, FlowStep] = {}
    pointed: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for node in nodes:
        config = node.get("config") if isinstance(node.get("config"), dict) else {}
        campaign_id = config.get("campaign_id")
        if campaign_id is not None and campaign_id not in steps:
            cid = _id(campaign_id, "a node's config.campaign_id", body, workspace_id)
            steps[cid] = _step(cid, node, config)
        channels = config.get("channels")
        if isinstance(channels, list):
            pointed += [(node, c) for c in channels if isinstance(c, dict)]
    for node, choice in pointed:
        campaign_id = choice.get("campaign_id")
        if campaign_id is not None and campaign_id not in steps:
            cid = _id(campaign_id, "a next-best-action channel's campaign_id", body, workspace_id)
            steps[cid] = _step(cid, node, choice)
    return tuple(steps.values())


def _step(campaign_id: str, node: dict[str, Any], config: dict[str, Any]) -> FlowStep:
    return FlowStep(
        campaign_id=campaign_id,
        channel=text_field(config.get("channel"), 60),
        campaign_name=text_field(config.get("campaign_name")),
        stage_id=text_field(node.get("stage_id"), 200),
        label=text_field(node.get("label")),
        node_type=text_field(node.get("type"), 60),
    )
