"""The sandbox's two campaign-search endpoints, over the same campaign universe as the stats.

- `POST /core-services/v1/campaigns/search` (Campaigns, Legacy): the Campaign report key and
  MOE-APPKEY, `campaign_fields.id`, a bare JSON array; 403 without `search_access`.
- `POST /v5/campaigns/search`: the workspace's own Campaigns key (`v5_key`; the Campaign report
  key gets 401), MOE-APPKEY optional, an `Idempotency-Key` header on every call (a reused key
  replays the first answer given for it, as MoEngage does), `campaign_fields.ids` (V1's `id` is
  ignored, so it returns every campaign), `{"response_id", "type", "data": {"campaigns"}}`;
  every 5th campaign has a second published revision (its own `id`, `version_number` 2, the
  newer name); drafts only when `DRAFT` is asked for; 403 without `v5_access`.

Both hide archived campaigns (every 11th) unless `include_archive_campaigns` is true, and return
children only with `include_child_campaigns`.
"""

from __future__ import annotations

import datetime as dt
import threading
from functools import partial
from typing import Any

from moestats_dagster.sandbox.flows import flow_fields
from moestats_dagster.sandbox.generator import Campaign, campaign_meta
from moestats_dagster.sandbox.meta import matching, metadata_defects, paging, with_cycle
from moestats_dagster.sandbox.protocol import Host, HttpError, SandboxWorkspace, basic_credentials

SEARCH_PATH = "/core-services/v1/campaigns/search"
V5_PATH = "/v5/campaigns/search"
LIMIT = 15


def archived(campaign: Campaign) -> bool:
    return campaign.index % 11 == 10


def revised(campaign: Campaign) -> bool:
    return campaign.index % 5 == 1


def _created(meta: dict[str, Any]) -> str:
    """MoEngage's created_at: "2024-07-04 08:00:54.847000", UTC without a zone."""
    start = dt.datetime.fromisoformat(meta["campaign_start_time"]) - dt.timedelta(days=2)
    return start.strftime("%Y-%m-%d %H:%M:%S.%f")


def search_object(workspace_id: str, campaign: Campaign) -> dict[str, Any]:
    """The v1 search object of a campaign (the fields of Campaign Meta, reshaped)."""
    meta = campaign_meta(workspace_id, campaign)
    found: dict[str, Any] = {
        "campaign_id": campaign.campaign_id,
        "status": "ARCHIVED" if archived(campaign) else meta["campaign_status"],
        "channel": meta["channel"],
        "campaign_delivery_type": meta["campaign_delivery_type"],
        "created_by": meta["created_by"],
        "created_at": _created(meta),
        "sent_time": meta["campaign_start_time"].replace("T", " "),
        "basic_details": {
            "name": meta["campaign_name"],
            "content_type": "PROMOTIONAL",
            "subscription_category": None,
            "tags": meta["campaign_tags"],
            "platforms": meta["platform"],
            "team": "Growth",
        },
        "connector": {"connector_type": None, "connector_name": None},
    }
    if "parent_campaign_id" in meta:
        found["parent_campaign_id"] = meta["parent_campaign_id"]
    return found


def v5_documents(workspace_id: str, campaign: Campaign) -> list[dict[str, Any]]:
    """The v5 documents of a campaign: one per published revision, plus a draft of every 7th."""
    base = search_object(workspace_id, campaign)
    del base["sent_time"]
    base["basic_details"] = {
        k: base["basic_details"][k] for k in ("name", "platforms", "tags", "team")
    }
    created = dt.datetime.fromisoformat(base["created_at"])
    docs = []
    revisions = 2 if revised(campaign) else 1
    for version in range(1, revisions + 1):
        doc = {
            **base,
            "id": f"{campaign.campaign_id}-r{version}",
            "version_number": version,
            "updated_at": (created + dt.timedelta(days=version)).isoformat(),
            "basic_details": {
                **base["basic_details"],
                "name": base["basic_details"]["name"] + (" (v2)" if version == 2 else ""),
            },
        }
        docs.append(doc)
    if campaign.index % 7 == 0:
        docs.append({**docs[-1], "id": f"{campaign.campaign_id}-draft",
                     "version_number": revisions + 1, "status": "DRAFT",
                     "basic_details": {**docs[-1]["basic_details"], "name": "DRAFT - do not use"}})  # fmt: skip
    return docs


def _chosen(workspace: SandboxWorkspace, body: dict[str, Any], ids: Any) -> list[Campaign]:
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(v, str) for v in ids)):
        raise HttpError(400, "campaign_fields ids must be an array of strings")
    campaigns = matching(workspace, ids, body.get("include_child_campaigns", False))
    if not body.get("include_archive_campaigns", False):
        campaigns = [c for c in campaigns if not archived(c)]
    return campaigns


def serve_search(app: Host) -> None:
    """Add both search endpoints to `app` (same limits and faults, each its own window)."""

    def search(workspace: SandboxWorkspace, body: dict[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(body.get("request_id"), str) or not body["request_id"].strip():
            raise HttpError(400, "request_id is mandatory and must be a non-empty string")
        limit, page, fields = paging(body)
        campaigns, cycle = metadata_defects(app, _chosen(workspace, body, fields.get("id")))
        chosen = campaigns[(page - 1) * limit : page * limit]
        found = [flow_fields(workspace, search_object(workspace.workspace_id, c)) for c in chosen]
        return with_cycle(found, cycle)

    replays: dict[str, Any] = {}
    lock = threading.Lock()

    def v5(workspace: SandboxWorkspace, body: dict[str, Any]) -> dict[str, Any]:
        key = app.header("Idempotency-Key")
        if not key:
            raise HttpError(400, "Idempotency-Key header is mandatory")
        with lock:
            if key in replays:  # MoEngage replays the first answer given for a key
                return replays[key]
        request_id = body.get("request_id")  # optional in v5
        if request_id is not None and (not isinstance(request_id, str) or not request_id.strip()):
            raise HttpError(400, "request_id must be a non-empty string")
        limit, page, fields = paging(body)
        ids = fields.get("ids")  # V1's `id` is ignored: every campaign comes back
        statuses = fields.get("status") or []
        campaigns, cycle = metadata_defects(app, _chosen(workspace, body, ids))
        docs = [
            d
            for c in campaigns
            for d in map(partial(flow_fields, workspace), v5_documents(workspace.workspace_id, c))
            if d["status"] != "DRAFT" or "DRAFT" in statuses
        ]
        answer = {
            "response_id": body.get("request_id") or key,
            "type": "campaign",
            "data": {"campaigns": with_cycle(docs[(page - 1) * limit : page * limit], cycle)},
        }
        with lock:
            replays[key] = answer
        return answer

    app.route(SEARCH_PATH, search, access="search_access")
    app.route(V5_PATH, v5, access="v5_access", authenticate=v5_authenticator(app, V5_PATH))


def v5_authenticator(app: Host, path: str):
    """Basic auth with the workspace's Campaigns key (v5); MOE-APPKEY optional (must match).
    The key and Idempotency-Key of every call are kept in `app.keys_seen[path]`, for tests."""
    seen = app.keys_seen.setdefault(path, [])

    def authenticate(environ: dict[str, Any]) -> SandboxWorkspace:
        username, key = basic_credentials(environ)
        workspace = app.workspaces.get(username)
        appkey = environ.get("HTTP_MOE_APPKEY")
        seen.append((key, environ.get("HTTP_IDEMPOTENCY_KEY")))
        if (
            workspace is None
            or workspace.v5_key is None
            or key != workspace.v5_key
            or appkey not in (None, username)
        ):
            raise HttpError(401, "Invalid identity information found.")
        return workspace

    return authenticate
