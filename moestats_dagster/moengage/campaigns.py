"""Campaign metadata: names, channels, parents of campaign ids, from MoEngage's three endpoints.

All three are asked the same way: the ids, 15 at a time, with their children and archived
campaigns, page by page until a short page (none of them sends totals or page counters). They
differ in path, key, body and answer:

- `v1/campaigns/search` ("Campaigns (Legacy)"): the Campaign report key, `campaign_fields.id`,
  a bare JSON array.
- `v1/campaigns/meta` (Campaign Meta and Reachability, Early Access): the Campaign report key,
  `campaign_fields.id`, a bare JSON array; see meta.py.
- `v5/campaigns/search`: its own key (Campaigns *View* permission), `campaign_fields.ids`, a fresh
  Idempotency-Key per request, `{"data": {"campaigns": [...]}}`; each published revision of a
  campaign is its own document (`id`, `version_number`) with a stable `campaign_id`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from moestats_dagster.moengage.answers import check_envelope, shape_error
from moestats_dagster.moengage.base import ApiClient
from moestats_dagster.moengage.errors import IncompleteDataError

PAGE_LIMIT = 15  # the APIs' maximum campaigns per page
MAX_PAGES_PER_CHUNK = 200  # 15 ids and up to 3,000 children; more is a server that never ends
MAX_LIST_PAGES = 4_000  # every campaign of a workspace: 60,000; more is a server that never ends


class CampaignLookup(ApiClient):
    """What the three metadata endpoints share: ids in chunks of 15, pages until a short one."""

    PATH = ""
    SOURCE = ""  # search | meta | v5: the workspace option's value and the table's `source`

    def fetch_campaigns(self, campaign_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The API's object for each id it knows, plus their children, ids asked 15 at a time.

        Ids MoEngage does not know are simply absent from the result (the caller reports them).
        A page that repeats a campaign, or a walk that never ends, raises `IncompleteDataError`.
        """
        started = time.monotonic()
        unique = list(dict.fromkeys(campaign_ids))
        chunks = [unique[i : i + PAGE_LIMIT] for i in range(0, len(unique), PAGE_LIMIT)]
        pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix=f"moestats-{self.SOURCE}")
        try:
            with self._first_failure_stops_all():
                results = list(pool.map(self._fetch_chunk, chunks))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._transport.count(seconds=time.monotonic() - started)
        found: dict[str, dict[str, Any]] = {}
        for chunk in results:
            for campaign in chunk:  # a child may come back with more than one chunk
                found.setdefault(campaign["campaign_id"], campaign)
        self._transport.count(campaigns=len(found))
        return list(found.values())

    def probe(self) -> list[dict[str, Any]]:
        """One call, one campaign: does this endpoint answer this workspace with this key?"""
        body = self.body(None, 1, 1)
        return self.campaigns(self._transport.post(self.PATH, body), body)

    def body(self, ids: list[str] | None, page: int, limit: int = PAGE_LIMIT) -> dict[str, Any]:
        body: dict[str, Any] = {
            "request_id": f"moestats-{uuid.uuid4().hex}",
            "limit": limit,
            "page": page,
        }
        if ids is not None:
            body |= {
                "campaign_fields": {"id": ids},
                "include_child_campaigns": True,
                "include_archive_campaigns": True,
            }
        return body

    def campaigns(self, payload: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
        """The campaign objects of an answer: a bare array as documented, or (tolerated) an
        envelope object with the array under `data`."""
        if isinstance(payload, dict):
            check_envelope(
                payload, body, workspace_id=self.workspace_id, api=self.api_path, counters=()
            )
            payload = payload.get("data")
        return self._checked(payload, body)

    @property
    def api_path(self) -> str:
        return self.PATH.removeprefix("/core-services").removeprefix("/")

    def _checked(self, payload: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(payload, list) or not all(
            isinstance(c, dict) and isinstance(c.get("campaign_id"), str) for c in payload
        ):
            raise shape_error("the answer is not an array of campaign objects with a campaign_id",
                              body, workspace_id=self.workspace_id, api=self.api_path)  # fmt: skip
        return payload

    def every_campaign(self) -> list[dict[str, Any]]:
        """Every campaign of the workspace, children (flow steps among them) and archived ones
        included, page by page: what the flows fallback reads when the Flows API cannot be
        asked. ⌈campaigns / 15⌉ calls."""
        started = time.monotonic()
        try:
            return self._pages(lambda page: self.body([], page) | {"campaign_fields": {}},
                               "every campaign", MAX_LIST_PAGES)  # fmt: skip
        finally:
            self._transport.count(seconds=time.monotonic() - started)

    def _fetch_chunk(self, ids: list[str]) -> list[dict[str, Any]]:
        return self._pages(lambda page: self.body(ids, page), f"ids {ids}", MAX_PAGES_PER_CHUNK)

    def _pages(self, body_of, what: str, most: int) -> list[dict[str, Any]]:
        """Pages until a short one; a page that repeats a campaign, or one too many, raises."""
        received: dict[str, dict[str, Any]] = {}
        for page in range(1, most + 1):
            body = body_of(page)
            campaigns = self.campaigns(self._transport.post(self.PATH, body), body)
            for campaign in campaigns:
                cid = self._document_id(campaign)
                if cid in received:
                    raise IncompleteDataError(
                        f"workspace {self.workspace_id}: {self.api_path} page {page} repeats "
                        f"campaign {cid} of an earlier page ({what}); the API does not "
                        "advance with `page`, so the metadata would be wrong. Re-run later"
                    )
                received[cid] = campaign
            if len(campaigns) < PAGE_LIMIT:
                return self._latest(received.values())
        raise IncompleteDataError(
            f"workspace {self.workspace_id}: {self.api_path} still sent full pages after "
            f"{most} pages ({what}); stopping rather than paging forever"
        )

    def _document_id(self, campaign: dict[str, Any]) -> str:
        return campaign["campaign_id"]

    def _latest(self, campaigns) -> list[dict[str, Any]]:
        return list(campaigns)


class CampaignSearchClient(CampaignLookup):
    """`POST /core-services/v1/campaigns/search` (Campaigns, Legacy): the Campaign report key."""

    PATH = "/core-services/v1/campaigns/search"
    SOURCE = "search"
    API_NAME = "the Campaigns search API (v1)"
    FORBIDDEN_FIX = (
        "ask MoEngage (support or your CSM) to enable the Campaigns API (v1/campaigns/search) "
        "for this workspace, or set campaigns_api_key_env to a key with the Campaigns View "
        "permission (v5)"
    )


class CampaignsV5Client(CampaignLookup):
    """`POST /v5/campaigns/search`: its own key, with the Campaigns View permission.

    Every published revision of a campaign is its own document; the newest (`version_number`,
    then `updated_at`) stands for the campaign. Drafts are not campaigns with stats: the API
    leaves them out unless asked for, and any that come back are dropped.
    """

    PATH = "/v5/campaigns/search"
    SOURCE = "v5"
    API_NAME = "the Campaigns API (v5)"
    IDEMPOTENCY_KEYS = True
    UNAUTHORIZED_FIX = (
        "the key in campaigns_api_key_env must be a Campaigns key (Settings > Account > API keys, "
        "with the Campaigns View permission), not the Campaign report key"
    )
    FORBIDDEN_FIX = (
        "give the key in campaigns_api_key_env the Campaigns View permission (Settings > Account "
        "> API keys)"
    )

    def body(self, ids: list[str] | None, page: int, limit: int = PAGE_LIMIT) -> dict[str, Any]:
        body = super().body(None, page, limit)
        if ids is not None:
            body |= {
                "campaign_fields": {"ids": ids},  # V1 said `id`; v5 ignores it
                "include_child_campaigns": True,
                "include_archive_campaigns": True,
            }
        return body

    def campaigns(self, payload: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
        data = payload.get("data") if isinstance(payload, dict) else None
        listed = data.get("campaigns") if isinstance(data, dict) else None
        if listed is None:
            raise shape_error(
                'the answer has no "data": {"campaigns": [...]}',
                body,
                workspace_id=self.workspace_id,
                api=self.api_path,
            )
        campaigns = self._checked(listed, body)
        return [c for c in campaigns if str(c.get("status", "")).upper() != "DRAFT"]

    def _document_id(self, campaign: dict[str, Any]) -> str:
        return str(campaign.get("id") or campaign["campaign_id"])

    def _latest(self, campaigns) -> list[dict[str, Any]]:
        newest: dict[str, dict[str, Any]] = {}
        for campaign in campaigns:
            cid = campaign["campaign_id"]
            if cid not in newest or _revision(campaign) > _revision(newest[cid]):
                newest[cid] = campaign
        return list(newest.values())


def _revision(campaign: dict[str, Any]) -> tuple[int, str]:
    version = campaign.get("version_number")
    number = version if isinstance(version, int) and not isinstance(version, bool) else -1
    return number, str(campaign.get("updated_at") or "")
