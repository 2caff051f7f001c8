"""Client of the Campaign Meta and Reachability API: names, channels, parents of campaign ids.

MoEngage answers a **bare JSON array** of campaign objects (no response_id, totals or page
counters), so a walk ends on a short or empty page. With `include_child_campaigns: true` the
children of the ids asked for come back too; they are accepted. The API is Early Access: a 403
means MoEngage has not enabled it for the account.
"""

from __future__ import annotations

from typing import Any

from moestats_dagster.moengage.campaigns import PAGE_LIMIT, CampaignLookup

META_PATH = "/core-services/v1/campaigns/meta"
META_PAGE_LIMIT = PAGE_LIMIT


class CampaignMetaClient(CampaignLookup):
    """`POST /core-services/v1/campaigns/meta` for one workspace.

    Same auth, retries and errors as the Stats API client, and its own rate window (the meta API
    has its own 100 calls/min).
    """

    PATH = META_PATH
    SOURCE = "meta"
    API_NAME = "the Campaign Meta API"
    FORBIDDEN_FIX = (
        "Campaign Meta and Reachability is an Early Access API; ask MoEngage (support or your "
        "CSM) to enable Campaign Meta for this workspace. Stats runs are not affected; until "
        "then campaign names, channels and parents stay empty"
    )

    def body(self, ids: list[str] | None, page: int, limit: int = PAGE_LIMIT) -> dict[str, Any]:
        body = super().body(ids, page, limit)
        body.pop("include_archive_campaigns", None)  # not a field of this endpoint
        return body
