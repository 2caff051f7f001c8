"""The sandbox's `POST /core-services/v1/campaigns/meta` (Campaign Meta and Reachability API).

As MoEngage documents it: the answer is a bare JSON array of campaign objects (no response_id,
totals or page counters), `limit` 1-15 per `page`; with `include_child_campaigns: true` the
children of the campaigns asked for come back too. The `meta_envelope` fault wraps the array in
an envelope object instead; a workspace without `meta_access` gets 403 (Early Access).
"""

from __future__ import annotations

from typing import Any

from moestats_dagster.sandbox.flows import flow_fields, flow_of_campaign
from moestats_dagster.sandbox.generator import campaign_meta, make_campaign
from moestats_dagster.sandbox.protocol import Host, HttpError, SandboxWorkspace, is_int

META_PATH = "/core-services/v1/campaigns/meta"
META_LIMIT = 15


def _universe(workspace: SandboxWorkspace) -> int:
    return workspace.campaigns_per_day or workspace.universe


def paging(body: dict[str, Any]) -> tuple[int, int, dict[str, Any]]:
    """`limit` (1-15), `page` (>= 1) and `campaign_fields` of a metadata request, or 400."""
    limit, page = body.get("limit", META_LIMIT), body.get("page", 1)
    if not is_int(limit) or not 1 <= limit <= META_LIMIT:
        raise HttpError(400, f"limit {limit!r} must be an integer from 1 to {META_LIMIT}")
    if not is_int(page) or page < 1:
        raise HttpError(400, f"page {page!r} must be an integer >= 1")
    fields = body.get("campaign_fields") or {}
    if not isinstance(fields, dict):
        raise HttpError(400, "campaign_fields must be an object")
    return limit, page, fields


def matching(workspace: SandboxWorkspace, ids: list[str] | None, with_children: bool) -> list:
    """The workspace's campaigns a metadata request names, sorted by id: the ids asked for (and,
    `with_children`, their children), or every parent (and child) when no ids are given."""
    campaigns = [make_campaign(workspace.workspace_id, i) for i in range(_universe(workspace))]
    steps = [c for _, c in flow_of_campaign(workspace).values()]
    if ids is not None or with_children:  # flow steps are children of their flow
        campaigns += steps
    if ids is not None:
        asked = set(ids)
        parents = {c.index for c in campaigns if c.campaign_id in asked}
        campaigns = [
            c for c in campaigns
            if c.campaign_id in asked or (with_children and c.parent_index in parents)
        ]  # fmt: skip
    elif not with_children:
        campaigns = [c for c in campaigns if c.parent_index is None]
    return sorted(campaigns, key=lambda c: c.campaign_id)


def metadata_defects(app: Host, campaigns: list) -> tuple[list, set[str]]:
    """The metadata defects of `app.faults`: MoEngage lost the first matching campaign
    (missing_metadata); the first two matching campaigns name each other as parent
    (parent_cycle, returned as the ids whose parent is rewritten)."""
    defects = app.faults.defects
    if "missing_metadata" in defects:
        campaigns = campaigns[1:]
    cycle = {c.campaign_id for c in campaigns[:2]} if "parent_cycle" in defects else set()
    return campaigns, cycle


def with_cycle(objects: list[dict[str, Any]], cycle: set[str]) -> list[dict[str, Any]]:
    if len(cycle) == 2:
        first, second = sorted(cycle)
        for found in objects:
            if found["campaign_id"] in cycle:
                found["parent_campaign_id"] = second if found["campaign_id"] == first else first
    return objects


def serve_meta(app: Host) -> None:
    """Add the meta endpoint to `app` (same auth, its own rate window, same faults)."""

    def handler(workspace: SandboxWorkspace, body: dict[str, Any]) -> dict[str, Any]:
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not request_id.strip():
            raise HttpError(400, "request_id is mandatory and must be a non-empty string")
        limit, page, fields = paging(body)
        ids, channels = fields.get("id"), fields.get("channels")
        for name, value in (("campaign_fields.id", ids), ("campaign_fields.channels", channels)):
            if value is not None and (
                not isinstance(value, list) or not all(isinstance(v, str) for v in value)
            ):
                raise HttpError(400, f"{name} must be an array of strings")
        ws = workspace.workspace_id
        campaigns = matching(workspace, ids, body.get("include_child_campaigns", False))
        if channels is not None:
            campaigns = [c for c in campaigns if c.channel in set(channels)]
        campaigns, cycle = metadata_defects(app, campaigns)
        chosen = campaigns[(page - 1) * limit : page * limit]
        data = with_cycle([flow_fields(workspace, campaign_meta(ws, c)) for c in chosen], cycle)
        if app.faults.meta_envelope:
            return {"response_id": request_id, "data": data}
        return data

    app.route(META_PATH, handler, access="meta_access")
