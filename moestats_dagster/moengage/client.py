"""The campaign Stats API client: every campaign's stats for a day, exactly once, proven complete."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import orjson

from moestats_dagster.moengage.answers import check_envelope, shape_error
from moestats_dagster.moengage.base import ApiClient
from moestats_dagster.moengage.errors import ConfigurationError, IncompleteDataError

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
    total_campaigns: int | None  # None: the answer did not say (completeness cannot be proven)
    current_page: int | None
    total_pages: int | None
    campaigns: dict[str, bytes]  # campaign id -> the API's list of entries, as compact JSON


@dataclass(frozen=True)
class DayStats:
    """All campaigns' stats of one day for one metric type x attribution type."""

    stat_date: dt.date
    metric_type: str
    attribution_type: str
    total_campaigns: int | None  # None when the API's answers lacked it
    # campaign id -> the API's list of entries as compact JSON: a day of 5,000 campaigns x 10
    # types held as parsed objects took ~10x the payload in memory; as bytes, ~1x
    campaigns: dict[str, bytes]
    request_ids: dict[str, str] = field(default_factory=dict)  # campaign id -> request_id

    @property
    def proven(self) -> bool:
        """True when every campaign was proven received against `total_campaigns`."""
        return self.total_campaigns is not None


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
    sees a 429. `max_campaigns` bounds the work one day may take (a larger `total_campaigns`, or
    more pages than that without one, fails at once instead of burning the quota).
    """

    def __init__(self, *, max_campaigns: int = 50_000, **options: Any) -> None:
        super().__init__(**options)
        self.max_campaigns = max_campaigns

    def fetch_page(
        self,
        *,
        stat_date: dt.date,
        metric_type: str,
        attribution_type: str,
        offset: int = 0,
        campaign_ids: Sequence[str] | None = None,
        end_date: dt.date | None = None,
    ) -> Page:
        """One call: the page of campaigns after skipping `offset` campaigns (of the day, or of
        the range `stat_date`..`end_date`)."""
        request_id = f"moestats-{uuid.uuid4().hex}"
        body: dict[str, Any] = {
            "request_id": request_id,
            "start_date": stat_date.isoformat(),
            "end_date": _range_end(stat_date, end_date).isoformat(),
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
        end_date: dt.date | None = None,
    ) -> list[DayStats]:
        """Every campaign of the day for each (metric_type, attribution_type), in that order.

        With `end_date`, of the range `stat_date`..`end_date` (at most 30 days apart, the API's
        limit): one aggregate per campaign, UNIQUE counts distinct over the range.
        With `campaign_ids`, only those campaigns, asked for 10 ids per call. Raises
        `IncompleteDataError` rather than return a result missing or repeating any campaign.
        `on_page(done, known_total)` is called after each page, for progress reporting.
        """
        started = time.monotonic()
        combos = [_check_combination(m, a) for m, a in combinations]
        chunks = _chunks(campaign_ids)
        sequences = [_Sequence(m, a, chunk) for m, a in combos for chunk in chunks]
        end = _range_end(stat_date, end_date)
        try:
            walks = self._fetch_all(stat_date, sequences, on_page, end)
            days = [
                self._assemble(stat_date, combo, sequences, walks)
                for combo in dict.fromkeys(combos)
            ]
        finally:
            self._transport.count(seconds=time.monotonic() - started)
        by_combo = {(d.metric_type, d.attribution_type): d for d in days}
        self._transport.count(campaigns=sum(len(d.campaigns) for d in days))
        return [by_combo[c] for c in combos]

    def _fetch_all(
        self,
        stat_date: dt.date,
        sequences: list[_Sequence],
        on_page: Callable[[int, int], None] | None,
        end_date: dt.date | None = None,
    ) -> dict[_Sequence, _Walk]:
        """Walk every sequence's pages concurrently, planning pages lazily.

        A page is asked for only when the pages before it justify it (at most `max_workers` in
        flight), so an inflated `total_campaigns` costs at most a page or two, never thousands of
        calls; the first page that falls short of it fails the day at once.
        """
        day = stat_date if end_date in (None, stat_date) else f"{stat_date}..{end_date}"
        walks = {s: _Walk(s, self._where(day, s), self.max_campaigns) for s in sequences}
        in_flight: dict[Future[Page], _Walk] = {}
        done = 0

        def fetch(seq: _Sequence, offset: int) -> Page:
            return self.fetch_page(
                stat_date=stat_date,
                metric_type=seq.metric_type,
                attribution_type=seq.attribution_type,
                offset=offset,
                campaign_ids=seq.campaign_ids,
                end_date=end_date,
            )

        pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="moestats-page")
        try:
            with self._first_failure_stops_all():
                while True:
                    for walk in _round_robin(walks.values(), self.max_workers - len(in_flight)):
                        offset = walk.plan()
                        in_flight[pool.submit(fetch, walk.sequence, offset)] = walk
                    if not in_flight:
                        break
                    finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        in_flight.pop(fut).accept(fut.result())
                        done += 1
                        if on_page:
                            due = sum(w.due() for w in walks.values())
                            on_page(done, done + len(in_flight) + due)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return walks

    def _where(self, stat_date: dt.date | str, seq: _Sequence) -> str:
        where = (
            f"workspace {self.workspace_id}, {stat_date}, {seq.metric_type}/{seq.attribution_type}"
        )
        return where + (f", campaign_ids {list(seq.campaign_ids)}" if seq.campaign_ids else "")

    def _assemble(
        self,
        stat_date: dt.date,
        combo: tuple[str, str],
        sequences: list[_Sequence],
        walks: dict[_Sequence, _Walk],
    ) -> DayStats:
        metric_type, attribution_type = combo
        campaigns: dict[str, bytes] = {}
        request_ids: dict[str, str] = {}
        total: int | None = 0
        for seq in sequences:
            if (seq.metric_type, seq.attribution_type) != combo:
                continue
            walk = walks[seq]
            seq_pages = sorted(walk.pages, key=lambda p: p.offset)
            where = walk.where
            _prove_complete(seq_pages, seq.campaign_ids, where)
            total = None if total is None or walk.total is None else total + walk.total
            for page in seq_pages:
                for campaign_id, entries in page.campaigns.items():
                    if campaign_id in campaigns:
                        raise IncompleteDataError(
                            f"{where}: campaign {campaign_id} came back for two id chunks"
                        )
                    campaigns[campaign_id] = entries
                    request_ids[campaign_id] = page.request_id
        return DayStats(stat_date, metric_type, attribution_type, total, campaigns, request_ids)


MAX_RANGE_DAYS = 30  # the API's limit on end_date - start_date


def _range_end(start: dt.date, end: dt.date | None) -> dt.date:
    if end is None:
        return start
    if not 0 <= (end - start).days <= MAX_RANGE_DAYS:
        raise ConfigurationError(
            f"date range {start}..{end}: end_date must be from start_date to {MAX_RANGE_DAYS} "
            "days after it (the Stats API's limit); ask for a month or less at a time"
        )
    return end


def _prove_complete(pages: list[Page], asked: tuple[str, ...] | None, where: str) -> None:
    """Every campaign of `total_campaigns` received exactly once, or raise naming what is wrong."""
    total = pages[0].total_campaigns
    seen: dict[str, int] = {}
    for page in pages:
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
    if total is not None and len(seen) != total:
        raise IncompleteDataError(
            f"{where}: received {len(seen)} distinct campaigns but total_campaigns is {total}; "
            "refusing a partial day"
        )


def _parse_page(payload: Any, body: dict[str, Any], workspace_id: str) -> Page:
    """Check a decoded 200 answer against the documented shape."""
    api = "the Stats API"
    # current_page/total_pages are not needed (offsets come from total_campaigns); without
    # total_campaigns too, the walk stops on a short page and says completeness is unproven.
    counters = check_envelope(
        payload, body, workspace_id=workspace_id, api=api,
        counters=("total_campaigns", "current_page", "total_pages"),
    )  # fmt: skip
    data = payload.get("data")
    if data in (None, []):
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
        # Checked, then kept as compact JSON: the parsed page is dropped as soon as it is read.
        # (Copied to exact size: orjson's output keeps its spare buffer, 2.7x the JSON on average.)
        campaigns={
            cid: memoryview(orjson.dumps(entries)).tobytes() for cid, entries in data.items()
        },
        **counters,
    )


class _Walk:
    """The pages of one sequence: what has arrived, what may be asked for next."""

    def __init__(self, sequence: _Sequence, where: str, max_campaigns: int) -> None:
        self.sequence, self.where, self.max_campaigns = sequence, where, max_campaigns
        self.pages: list[Page] = []
        self.total: int | None = None
        self.next_offset = 0
        self.in_flight = 0
        self.ended = False  # total unknown and a short page arrived

    def ready(self) -> bool:
        """May another page be asked for now?"""
        if not self.pages:
            return self.next_offset == 0  # only the first page, until it is back
        if self.total is not None:
            return self.next_offset < self.total
        return not self.ended and self.in_flight == 0  # unknown total: one page at a time

    def plan(self) -> int:
        offset = self.next_offset
        self.next_offset += PAGE_LIMIT
        self.in_flight += 1
        return offset

    def due(self) -> int:
        """Pages still expected and not yet asked for (for progress bars)."""
        if not self.pages:
            return 0
        if self.total is None:
            return 0 if self.ended else 1
        return max(0, -(-(self.total - self.next_offset) // PAGE_LIMIT))

    def accept(self, page: Page) -> None:
        """Take a page, or raise at once if it shows the day cannot be complete."""
        self.in_flight -= 1
        got = len(page.campaigns)
        if got > PAGE_LIMIT:
            raise IncompleteDataError(
                f"{self.where}: the page at offset {page.offset} holds {got} campaigns, more than "
                f"the limit of {PAGE_LIMIT} asked for; refusing an answer we cannot page"
            )
        if not self.pages:
            self.total = page.total_campaigns
            if self.total is not None and self.total > self.max_campaigns:
                raise IncompleteDataError(
                    f"{self.where}: total_campaigns is {self.total:,}, above the "
                    f"{self.max_campaigns:,} campaigns one day may hold here; refusing to plan "
                    f"{-(-self.total // PAGE_LIMIT):,} calls on it. If the number is real, raise "
                    "max_campaigns_per_day for this workspace"
                )
        elif page.total_campaigns != self.total:
            raise IncompleteDataError(
                f"{self.where}: total_campaigns changed from {self.total} to "
                f"{page.total_campaigns} while paging (stats were being updated); re-run the "
                "partition"
            )
        self.pages.append(page)
        if self.total is not None:
            promised = min(PAGE_LIMIT, self.total - page.offset)
            if got < promised:
                raise IncompleteDataError(
                    f"{self.where}: the page at offset {page.offset} returned {got} campaigns "
                    f"where total_campaigns ({self.total}) promises {promised}; MoEngage "
                    "over-reports total_campaigns or skipped campaigns, so the day would be "
                    "partial. Nothing was written; re-run, and report it to MoEngage if it persists"
                )
        elif got < PAGE_LIMIT:
            self.ended = True
        elif self.next_offset >= self.max_campaigns:
            raise IncompleteDataError(
                f"{self.where}: more than {self.max_campaigns:,} campaigns and no "
                "total_campaigns in the answers; stopping here. If the number is real, raise "
                "max_campaigns_per_day for this workspace"
            )


def _round_robin(walks: Iterable[_Walk], slots: int) -> Iterator[_Walk]:
    """Walks that may ask for a page now, taking turns, `slots` at most."""
    walks = list(walks)
    while slots > 0:
        before = slots
        for walk in walks:
            if slots > 0 and walk.ready():
                yield walk  # the caller plans its page before the next one is looked at
                slots -= 1
        if slots == before:
            return


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
