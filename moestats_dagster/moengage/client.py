"""The campaign Stats API client: every campaign's stats for a day, exactly once, proven complete."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigurationError, IncompleteDataError
from .transport import ApiClient, check_envelope, shape_error

STATS_PATH = "/core-services/v1/campaign-stats"
ATTRIBUTION_TYPES = (
    "VIEW_THROUGH",
    "CLICK_THROUGH",
    "IN_SESSION",
    "TOTAL_CONVERSIONS",
    "CLICK_CONVERSIONS",
)
METRIC_TYPES = ("TOTAL", "UNIQUE")
PAGE_LIMIT = 10  # the API's maximum campaigns per page
MAX_IDS_PER_CALL = 10  # the API's maximum campaign_ids per call


@dataclass(frozen=True)
class Page:
    """One 200 answer of the Stats API, checked for shape."""

    request_id: str
    offset: int
    total_campaigns: int
    current_page: int
    total_pages: int
    campaigns: dict[str, list[Any]]


@dataclass(frozen=True)
class DayStats:
    """All campaigns' stats of one day for one metric type x attribution type."""

    stat_date: dt.date
    metric_type: str
    attribution_type: str
    total_campaigns: int
    campaigns: dict[str, list[Any]]  # campaign id -> the API's list of entries, verbatim
    request_ids: dict[str, str] = field(default_factory=dict)  # campaign id -> request_id


@dataclass(frozen=True)
class _Sequence:
    """One walk over the pages of a (metric, attribution, optional id chunk) request."""

    metric_type: str
    attribution_type: str
    campaign_ids: tuple[str, ...] | None


class StatsClient(ApiClient):
    """Client of `POST /core-services/v1/campaign-stats` for one workspace.

    Plain Python, no Dagster. Pages are fetched concurrently (up to `max_workers` in flight) behind
    a sliding-window limiter, so a slow API still gets the full 100 calls/min and a healthy run never
    sees a 429.
    """

    def fetch_page(
        self,
        *,
        stat_date: dt.date,
        metric_type: str,
        attribution_type: str,
        offset: int = 0,
        campaign_ids: Sequence[str] | None = None,
    ) -> Page:
        """One call: the page of campaigns after skipping `offset` campaigns."""
        request_id = f"moestats-{uuid.uuid4().hex}"
        body: dict[str, Any] = {
            "request_id": request_id,
            "start_date": stat_date.isoformat(),
            "end_date": stat_date.isoformat(),
            "attribution_type": attribution_type,
            "metric_type": metric_type,
            "offset": offset,
            "limit": PAGE_LIMIT,
        }
        if campaign_ids:
            body["campaign_ids"] = list(campaign_ids)
        return _parse_page(self._transport.post(STATS_PATH, body), body, self.workspace_id)

    def fetch_day(
        self,
        *,
        stat_date: dt.date,
        metric_type: str,
        attribution_type: str,
        campaign_ids: Sequence[str] | None = None,
    ) -> DayStats:
        """Every campaign of the day for one metric x attribution type (see `fetch_days`)."""
        return self.fetch_days(
            stat_date=stat_date,
            combinations=[(metric_type, attribution_type)],
            campaign_ids=campaign_ids,
        )[0]

    def fetch_days(
        self,
        *,
        stat_date: dt.date,
        combinations: Iterable[tuple[str, str]],
        campaign_ids: Sequence[str] | None = None,
        on_page: Callable[[int, int], None] | None = None,
    ) -> list[DayStats]:
        """Every campaign of the day for each (metric_type, attribution_type), in that order.

        With `campaign_ids`, only those campaigns, asked for 10 ids per call. Raises
        `IncompleteDataError` rather than return a result missing or repeating any campaign.
        `on_page(done, known_total)` is called after each page, for progress reporting.
        """
        started = time.monotonic()
        combos = [_check_combination(m, a) for m, a in combinations]
        chunks = _chunks(campaign_ids)
        sequences = [_Sequence(m, a, chunk) for m, a in combos for chunk in chunks]
        try:
            pages = self._fetch_all(stat_date, sequences, on_page)
            days = [
                self._assemble(stat_date, combo, sequences, pages)
                for combo in dict.fromkeys(combos)
            ]
        finally:
            self._transport.count(seconds=time.monotonic() - started)
        by_combo = {(d.metric_type, d.attribution_type): d for d in days}
        self._transport.count(campaigns=sum(d.total_campaigns for d in days))
        return [by_combo[c] for c in combos]

    def _fetch_all(
        self,
        stat_date: dt.date,
        sequences: list[_Sequence],
        on_page: Callable[[int, int], None] | None,
    ) -> dict[_Sequence, list[Page]]:
        """First pages of every sequence at once, then all remaining pages at once."""
        pages: dict[_Sequence, list[Page]] = {s: [] for s in sequences}
        progress = {"done": 0, "total": len(sequences)}

        def fetch(seq: _Sequence, offset: int) -> tuple[_Sequence, Page]:
            page = self.fetch_page(
                stat_date=stat_date,
                metric_type=seq.metric_type,
                attribution_type=seq.attribution_type,
                offset=offset,
                campaign_ids=seq.campaign_ids,
            )
            return seq, page

        with ThreadPoolExecutor(self.max_workers, thread_name_prefix="moestats-page") as pool:
            firsts = _run_all(pool, [(fetch, s, 0) for s in sequences], progress, on_page)
            jobs = []
            for seq, first in firsts:
                pages[seq].append(first)
                jobs += [
                    (fetch, seq, off)
                    for off in range(PAGE_LIMIT, first.total_campaigns, PAGE_LIMIT)
                ]
            progress["total"] += len(jobs)
            for seq, page in _run_all(pool, jobs, progress, on_page):
                pages[seq].append(page)
        return pages

    def _assemble(
        self,
        stat_date: dt.date,
        combo: tuple[str, str],
        sequences: list[_Sequence],
        pages: dict[_Sequence, list[Page]],
    ) -> DayStats:
        metric_type, attribution_type = combo
        campaigns: dict[str, list[Any]] = {}
        request_ids: dict[str, str] = {}
        total = 0
        for seq in sequences:
            if (seq.metric_type, seq.attribution_type) != combo:
                continue
            seq_pages = sorted(pages[seq], key=lambda p: p.offset)
            where = f"workspace {self.workspace_id}, {stat_date}, {metric_type}/{attribution_type}"
            if seq.campaign_ids:
                where += f", campaign_ids {list(seq.campaign_ids)}"
            _prove_complete(seq_pages, seq.campaign_ids, where)
            total += seq_pages[0].total_campaigns
            for page in seq_pages:
                for campaign_id, entries in page.campaigns.items():
                    if campaign_id in campaigns:
                        raise IncompleteDataError(
                            f"{where}: campaign {campaign_id} came back for two id chunks"
                        )
                    campaigns[campaign_id] = entries
                    request_ids[campaign_id] = page.request_id
        return DayStats(stat_date, metric_type, attribution_type, total, campaigns, request_ids)


def _run_all(
    pool: ThreadPoolExecutor,
    jobs: list[tuple[Callable[..., Any], Any, int]],
    progress: dict[str, int],
    on_page: Callable[[int, int], None] | None,
) -> list[Any]:
    """Run jobs concurrently; on the first failure cancel what has not started and raise it."""
    futures: list[Future[Any]] = [pool.submit(fn, *args) for fn, *args in jobs]
    pending = set(futures)
    while pending:
        done, pending = wait(pending, return_when=FIRST_EXCEPTION)
        for fut in done:
            if fut.exception() is not None:
                for other in pending:
                    other.cancel()
                raise fut.exception()  # type: ignore[misc]
            progress["done"] += 1
            if on_page:
                on_page(progress["done"], progress["total"])
    return [f.result() for f in futures]


def _prove_complete(pages: list[Page], asked: tuple[str, ...] | None, where: str) -> None:
    """Every campaign of `total_campaigns` received exactly once, or raise naming what is wrong."""
    total = pages[0].total_campaigns
    seen: dict[str, int] = {}
    for page in pages:
        if page.total_campaigns != total:
            raise IncompleteDataError(
                f"{where}: total_campaigns changed from {total} to {page.total_campaigns} while "
                "paging (stats were being updated); re-run the partition"
            )
        expected = min(PAGE_LIMIT, total - page.offset)
        if expected > 0 and not page.campaigns:
            raise IncompleteDataError(
                f"{where}: the page at offset {page.offset} returned no campaigns although "
                f"total_campaigns is {total}; the API did not advance, so the day would be partial"
            )
        for campaign_id in page.campaigns:
            if campaign_id in seen:
                raise IncompleteDataError(
                    f"{where}: campaign {campaign_id} returned on the pages at offsets "
                    f"{seen[campaign_id]} and {page.offset}; the API's paging repeats campaigns"
                )
            if asked is not None and campaign_id not in asked:
                raise IncompleteDataError(
                    f"{where}: campaign {campaign_id} was returned but not asked for"
                )
            seen[campaign_id] = page.offset
    if len(seen) != total:
        raise IncompleteDataError(
            f"{where}: received {len(seen)} distinct campaigns but total_campaigns is {total}; "
            "refusing a partial day"
        )


def _parse_page(payload: Any, body: dict[str, Any], workspace_id: str) -> Page:
    """Check a decoded 200 answer against the documented shape."""
    api = "the Stats API"
    counters = check_envelope(
        payload, body, workspace_id=workspace_id, api=api,
        counters=("total_campaigns", "current_page", "total_pages"),
    )  # fmt: skip
    data = payload.get("data")
    if data in (None, []) and counters["total_campaigns"] == 0:
        data = {}
    if not isinstance(data, dict):
        raise shape_error(f"data is a {type(data).__name__}, not an object keyed by campaign id",
                          body, workspace_id=workspace_id, api=api)  # fmt: skip
    for campaign_id, entries in data.items():
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise shape_error(f"data[{campaign_id!r}] is not a list of objects",
                              body, workspace_id=workspace_id, api=api)  # fmt: skip
    return Page(
        request_id=body["request_id"],
        offset=body["offset"],
        campaigns=data,
        **counters,
    )


def _check_combination(metric_type: str, attribution_type: str) -> tuple[str, str]:
    if metric_type not in METRIC_TYPES:
        raise ConfigurationError(f"metric_type {metric_type!r} is not one of {METRIC_TYPES}")
    if attribution_type not in ATTRIBUTION_TYPES:
        raise ConfigurationError(
            f"attribution_type {attribution_type!r} is not one of {ATTRIBUTION_TYPES}"
        )
    return metric_type, attribution_type


def _chunks(campaign_ids: Sequence[str] | None) -> list[tuple[str, ...] | None]:
    if not campaign_ids:
        return [None]
    unique = list(dict.fromkeys(campaign_ids))
    return [
        tuple(unique[i : i + MAX_IDS_PER_CALL]) for i in range(0, len(unique), MAX_IDS_PER_CALL)
    ]
