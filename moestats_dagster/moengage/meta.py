"""Client of the Campaign Meta and Reachability API: names, channels, parents of campaign ids."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import IncompleteDataError
from .transport import ApiClient, check_envelope, shape_error

META_PATH = "/core-services/v1/campaigns/meta"
META_PAGE_LIMIT = 15  # the API's maximum campaigns per page


class CampaignMetaClient(ApiClient):
    """`POST /core-services/v1/campaigns/meta` for one workspace.

    Same auth, retries and errors as the Stats API client, and its own rate window (the meta API
    has its own 100 calls/min).
    """

    def fetch_campaigns(self, campaign_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The API's object for each id it knows (children included), ids asked 15 at a time.

        Ids MoEngage does not know are simply absent from the result (the caller reports them);
        a paging answer that repeats, skips or adds campaigns raises `IncompleteDataError`.
        """
        started = time.monotonic()
        unique = list(dict.fromkeys(campaign_ids))
        chunks = [unique[i : i + META_PAGE_LIMIT] for i in range(0, len(unique), META_PAGE_LIMIT)]
        try:
            with ThreadPoolExecutor(self.max_workers, thread_name_prefix="moestats-meta") as pool:
                results = list(pool.map(self._fetch_chunk, chunks))
        finally:
            self._transport.count(seconds=time.monotonic() - started)
        found = [c for chunk in results for c in chunk]
        self._transport.count(campaigns=len(found))
        return found

    def _fetch_chunk(self, ids: list[str]) -> list[dict[str, Any]]:
        received: dict[str, dict[str, Any]] = {}
        page, total, total_pages = 1, None, 1
        while page <= total_pages:
            body = {
                "request_id": f"moestats-{uuid.uuid4().hex}",
                "campaign_fields": {"id": ids},
                "include_child_campaigns": True,
                "limit": META_PAGE_LIMIT,
                "page": page,
            }
            answer = _parse(self._transport.post(META_PATH, body), body, self.workspace_id)
            if total is None:
                total, total_pages = answer["total_campaigns"], answer["total_pages"]
            where = f"workspace {self.workspace_id}, campaigns/meta page {page} of ids {ids}"
            if answer["total_campaigns"] != total:
                raise IncompleteDataError(f"{where}: total_campaigns changed while paging")
            if not answer["data"] and len(received) < total:
                raise IncompleteDataError(f"{where}: an empty page before all {total} arrived")
            for campaign in answer["data"]:
                cid = campaign["campaign_id"]
                if cid in received or cid not in ids:
                    raise IncompleteDataError(f"{where}: campaign {cid} repeated or not asked for")
                received[cid] = campaign
            page += 1
        if len(received) != (total or 0):
            raise IncompleteDataError(
                f"workspace {self.workspace_id}: campaigns/meta returned {len(received)} of "
                f"{total} campaigns for ids {ids}"
            )
        return list(received.values())


def _parse(payload: Any, body: dict[str, Any], workspace_id: str) -> dict[str, Any]:
    api = "campaigns/meta"
    check_envelope(payload, body, workspace_id=workspace_id, api=api,
                   counters=("total_campaigns", "total_pages"))  # fmt: skip
    data = payload.get("data")
    if not isinstance(data, list) or not all(
        isinstance(c, dict) and isinstance(c.get("campaign_id"), str) for c in data
    ):
        raise shape_error("data is not a list of campaign objects with a campaign_id",
                          body, workspace_id=workspace_id, api=api)  # fmt: skip
    return payload
