"""Client of the Campaign Meta and Reachability API: names, channels, parents of campaign ids.

MoEngage answers a **bare JSON array** of campaign objects (no response_id, totals or page
counters), so a walk ends on a short or empty page. With `include_child_campaigns: true` the
children of the ids asked for come back too; they are accepted. The API is Early Access: a 403
means MoEngage has not enabled it for the account.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .answers import check_envelope, shape_error
from .base import ApiClient
from .errors import IncompleteDataError

META_PATH = "/core-services/v1/campaigns/meta"
META_PAGE_LIMIT = 15  # the API's maximum campaigns per page
MAX_PAGES_PER_CHUNK = 200  # 15 ids and up to 3,000 children; more is a server that never ends


class CampaignMetaClient(ApiClient):
    """`POST /core-services/v1/campaigns/meta` for one workspace.

    Same auth, retries and errors as the Stats API client, and its own rate window (the meta API
    has its own 100 calls/min).
    """

    API_NAME = "the Campaign Meta API"
    FORBIDDEN_FIX = (
        "Campaign Meta and Reachability is an Early Access API; ask MoEngage (support or your "
        "CSM) to enable Campaign Meta for this workspace. Stats runs are not affected; until "
        "then campaign names, channels and parents stay empty"
    )

    def fetch_campaigns(self, campaign_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The API's object for each id it knows, plus their children, ids asked 15 at a time.

        Ids MoEngage does not know are simply absent from the result (the caller reports them).
        A page that repeats a campaign, or a walk that never ends, raises `IncompleteDataError`.
        """
        started = time.monotonic()
        unique = list(dict.fromkeys(campaign_ids))
        chunks = [unique[i : i + META_PAGE_LIMIT] for i in range(0, len(unique), META_PAGE_LIMIT)]
        pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="moestats-meta")
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
        """One call, one campaign: is the API enabled for this workspace?"""
        body = {"request_id": f"moestats-{uuid.uuid4().hex}", "limit": 1, "page": 1}
        return _campaigns(self._transport.post(META_PATH, body), body, self.workspace_id)

    def _fetch_chunk(self, ids: list[str]) -> list[dict[str, Any]]:
        received: dict[str, dict[str, Any]] = {}
        for page in range(1, MAX_PAGES_PER_CHUNK + 1):
            body = {
                "request_id": f"moestats-{uuid.uuid4().hex}",
                "campaign_fields": {"id": ids},
                "include_child_campaigns": True,
                "limit": META_PAGE_LIMIT,
                "page": page,
            }
            campaigns = _campaigns(self._transport.post(META_PATH, body), body, self.workspace_id)
            for campaign in campaigns:
                cid = campaign["campaign_id"]
                if cid in received:
                    raise IncompleteDataError(
                        f"workspace {self.workspace_id}: campaigns/meta page {page} repeats "
                        f"campaign {cid} of an earlier page (ids {ids}); the API does not "
                        "advance with `page`, so the metadata would be wrong. Re-run later"
                    )
                received[cid] = campaign
            if len(campaigns) < META_PAGE_LIMIT:
                return list(received.values())
        raise IncompleteDataError(
            f"workspace {self.workspace_id}: campaigns/meta still sent full pages after "
            f"{MAX_PAGES_PER_CHUNK} pages for ids {ids}; stopping rather than paging forever"
        )


def _campaigns(payload: Any, body: dict[str, Any], workspace_id: str) -> list[dict[str, Any]]:
    """The campaign objects of an answer: a bare array as documented, or (tolerated) an envelope
    object with the array under `data`."""
    api = "campaigns/meta"
    if isinstance(payload, dict):
        check_envelope(payload, body, workspace_id=workspace_id, api=api, counters=())
        payload = payload.get("data")
    if not isinstance(payload, list) or not all(
        isinstance(c, dict) and isinstance(c.get("campaign_id"), str) for c in payload
    ):
        raise shape_error("the answer is not an array of campaign objects with a campaign_id",
                          body, workspace_id=workspace_id, api=api)  # fmt: skip
    return payload
