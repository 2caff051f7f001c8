"""The warehouse's tables, declared once: DDL, DataFrame dtypes, UI schema, docs/tables.md and check keys
all derive from these declarations."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

SCHEMA = "moestats"

# DuckDB type -> the Arrow type frames are built with (fast, strict, compact). Frames are pandas
# DataFrames backed by these Arrow arrays without a copy (`pd.ArrowDtype`): nullable, so a metric
# the API did not send stays NULL (never 0), and about a third of the memory of object columns.
_ARROW = {
    "VARCHAR": pa.string(),
    "JSON": pa.string(),
    "DATE": pa.date32(),
    "TIMESTAMP": pa.timestamp("us"),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
}


def quote_ident(name: str) -> str:
    """A SQL identifier, quoted so that any character (a `"` in a file name) is safe."""
    return '"' + name.replace('"', '""') + '"'


def to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=pd.ArrowDtype)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    key: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def keys(self) -> list[str]:
        return [c.name for c in self.columns if c.key]

    def columns_of(self, *types: str) -> list[str]:
        return [c.name for c in self.columns if c.type in types]

    def ddl(self, catalog: str | None = None) -> str:
        cols = ",\n  ".join(f"{quote_ident(c.name)} {c.type}" for c in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.in_catalog(catalog)} (\n  {cols}\n)"

    def in_catalog(self, catalog: str | None) -> str:
        """Fully qualified name: a file named like the schema makes `moestats.x` ambiguous."""
        return f"{quote_ident(catalog)}.{self.qualified}" if catalog else self.qualified

    def arrow(self, data: dict[str, object] | None = None, length: int = 0) -> pa.Table:
        """An Arrow table with exactly this table's columns, order and types.

        Values must already be of the column's kind (the normalizer checks them first).
        """
        data = data or {}
        arrays = []
        for c in self.columns:
            values = data.get(c.name)
            kind = _ARROW[c.type]
            arrays.append(pa.nulls(length, kind) if values is None else pa.array(values, type=kind))
        return pa.Table.from_arrays(arrays, names=self.names)

    def frame(
        self, data: dict[str, object] | None = None, length: int | None = None
    ) -> pd.DataFrame:
        """The same as a pandas DataFrame with nullable dtypes (empty if no data)."""
        return to_pandas(self.arrow(data, length or 0))

    def markdown(self) -> str:
        rows = [f"| `{c.name}` | {c.type} | {'key' if c.key else ''} | {c.description} |"
                for c in self.columns]  # fmt: skip
        head = "| column | type | key | description |\n|---|---|---|---|"
        return f"**`{self.qualified}`** — {self.description}\n\n{head}\n" + "\n".join(rows)


def _key(name: str, type_: str, description: str) -> Column:
    return Column(name, type_, description, key=True)


WORKSPACE = _key("workspace_id", "VARCHAR", "MoEngage Workspace ID (partition dimension)")
STAT_DATE = _key(
    "stat_date", "DATE", "day the stats are for, in the workspace's timezone (partition dimension)"
)
METRIC = _key("metric_type", "VARCHAR", "TOTAL or UNIQUE")
ATTRIBUTION = _key("attribution_type", "VARCHAR", "conversion attribution type asked for")
CAMPAIGN = _key("campaign_id", "VARCHAR", "MoEngage campaign id")
BLOCK_KEYS = (
    WORKSPACE,
    STAT_DATE,
    METRIC,
    CAMPAIGN,
    _key("entry_index", "INTEGER", "position in the API's list for the campaign (0-based)"),
    _key("platform", "VARCHAR", "platform key verbatim (android, ios, web, EMAIL, ...)"),
    _key("locale", "VARCHAR", "locale key verbatim (all_locales or a locale)"),
    _key("variation", "VARCHAR", "variation key verbatim (all_variations, a variation, or a control group)"),
)  # fmt: skip
EXTRA = Column(
    "extra_metrics",
    "JSON",
    "keys neither the API page nor its published schema documents, as JSON; NULL if none",
)

PERFORMANCE_METRICS: dict[str, tuple[str, str]] = {
    "attempted": ("BIGINT", "communication attempts"),
    "sent": ("BIGINT", "communications sent"),
    "failed": ("BIGINT", "communications that failed to reach users"),
    "bounced": ("BIGINT", "emails bounced"),
    "impression": ("BIGINT", "times the communication was shown"),
    "click": ("BIGINT", "clicks"),
    "opened": ("BIGINT", "emails opened"),
    "delivered": ("BIGINT", "communications delivered"),
    "read": ("BIGINT", "WhatsApp messages read"),
    "closed_click": ("BIGINT", "closes by the close button (in-app, OSM, web personalization)"),
    "unsubscribe": ("BIGINT", "email unsubscribes"),
    "ctr": ("DOUBLE", "click-through rate, % (click / impression x 100 where impressions exist)"),
    "delivery_rate": ("DOUBLE", "delivery rate, %"),
    "read_rate": ("DOUBLE", "read rate, % (unique read / unique delivered x 100)"),
    "successfully_synced": ("BIGINT", "users synced to an ad audience"),
    "sent_rate": ("DOUBLE", "sent / attempted x 100"),
    "failure_rate": ("DOUBLE", "(attempted - sent) / attempted x 100"),
    "eligible_users": ("BIGINT", "users eligible for an ad audience"),
    "complaint": ("BIGINT", "email complaints"),
    "hard_bounce": ("BIGINT", "email hard bounces"),
    "soft_bounce": ("BIGINT", "email soft bounces"),
    "open_rate": ("DOUBLE", "email open rate, %"),
    "ctor": ("DOUBLE", "email click-to-open rate, %"),
    "unsub_rate": ("DOUBLE", "email unsubscribe rate, %"),
    "bounce_rate": ("DOUBLE", "email bounce rate, %"),
    "complaints_rate": ("DOUBLE", "email complaint rate, %"),
}
FUNNEL_METRICS: dict[str, str] = {
    "reachable_users_in_segment": "reachable users in the segment",
    "segment_after_uninstall": "users left after removing uninstalls",
    "after_fc": "users left after frequency capping",
    "users_after_dup": "users left after de-duplication",
    "sent": "communications sent",
    "user_devices": "user devices",
    "impressions": "impressions",
    "active_device_token": "active device tokens",
    "after_invalid_removal": "users left after removing invalid addresses",
    # Email stages, from MoEngage's published API schema:
    "total_user_in_segment": "users in the segment (email)",
    "user_with_email": "users with an email address",
    "user_with_email_after__h_b": "users with an email address after removing hard bounces",
    "user_after_duplicate_removal": "users left after removing duplicate addresses",
    "after_personalization_removal": "users left after removing failed personalizations",
    "delivered": "emails delivered",
}
# conversion_goal_stats fields: the Stats page's three, then those of the published API schema.
GOAL_METRICS: dict[str, tuple[str, str]] = {
    "goal_name": ("VARCHAR", "the goal's name as the object states it (NULL if not sent)"),
    "conversions": ("BIGINT", "conversions"),
    "cvr": ("DOUBLE", "conversion rate, %"),
    "uplift": ("DOUBLE", "uplift against the control group, %"),
    "total": ("BIGINT", "conversion events, total"),
    "unique": ("BIGINT", "converting users, unique"),
    "revenue": ("DOUBLE", "revenue attributed to the goal"),
    "average_order_value": ("DOUBLE", "revenue / total conversions"),
    "average_revenue_per_user": ("DOUBLE", "revenue / unique converters"),
    "gcg_uplift": ("DOUBLE", "uplift against the global control group, %"),
}

CAMPAIGN_STATS_RAW = Table(
    "campaign_stats_raw",
    "The Stats API's answer, one row per metric type x attribution type x campaign, verbatim",
    (
        WORKSPACE,
        STAT_DATE,
        METRIC,
        ATTRIBUTION,
        CAMPAIGN,
        Column("payload", "JSON", "the API's data[campaign_id] list, verbatim"),
        Column("request_id", "VARCHAR", "request_id of the call that returned the campaign"),
        Column("total_campaigns", "INTEGER", "the API's total_campaigns for this metric x attribution"),
        Column("fetched_at", "TIMESTAMP", "when the partition was fetched (UTC)"),
    ),
)  # fmt: skip
PERFORMANCE_STATS = Table(
    "performance_stats",
    "performance_stats of every platform x locale x variation block (first configured attribution)",
    (
        *BLOCK_KEYS,
        *(Column(k, t, d) for k, (t, d) in PERFORMANCE_METRICS.items()),
        EXTRA,
    ),
)
CONVERSION_GOAL_STATS = Table(
    "conversion_goal_stats",
    "conversion_goal_stats per goal and attribution type, control groups included",
    (
        *BLOCK_KEYS[:3],
        ATTRIBUTION,
        *BLOCK_KEYS[3:],
        _key("goal_key", "VARCHAR", "the goal's key in conversion_goal_stats, verbatim"),
        *(Column(k, t, d) for k, (t, d) in GOAL_METRICS.items()),
        EXTRA,
    ),
)
DELIVERY_FUNNEL = Table(
    "delivery_funnel",
    "delivery_funnel of every block, control groups included",
    (*BLOCK_KEYS, *(Column(k, "BIGINT", d) for k, d in FUNNEL_METRICS.items()), EXTRA),
)
FAILURE_BREAKDOWN = Table(
    "failure_breakdown",
    "failure_breakdown of every block, one row per reason (nested reasons joined with '.')",
    (
        *BLOCK_KEYS,
        _key("reason", "VARCHAR", "failure reason key verbatim; nested objects joined with '.'"),
        Column("count", "BIGINT", "communications that failed for this reason"),
    ),
)
NORMALIZED_TABLES = (PERFORMANCE_STATS, CONVERSION_GOAL_STATS, DELIVERY_FUNNEL, FAILURE_BREAKDOWN)
TABLES = {t.name: t for t in (CAMPAIGN_STATS_RAW, *NORMALIZED_TABLES)}

CAMPAIGNS = Table(
    "campaigns",
    "Campaign metadata for every campaign id seen in the stats, from v1/campaigns/search, Campaign Meta or v5/campaigns/search (`source`)",
    (
        WORKSPACE,
        CAMPAIGN,
        Column("campaign_name", "VARCHAR", "campaign name"),
        Column("channel", "VARCHAR", "channel (PUSH, EMAIL, SMS, ...)"),
        Column("platforms", "JSON", "platforms, as a JSON list"),
        Column("campaign_status", "VARCHAR", "status (ACTIVE, SENT, PAUSED, ...)"),
        Column("delivery_type", "VARCHAR", "ONE_TIME, PERIODIC, EVENT_TRIGGERED, BUSINESS_TRIGGERED"),
        Column("tags", "JSON", "campaign tags, as a JSON list"),
        Column("created_by", "VARCHAR", "creator"),
        Column("start_time", "TIMESTAMP", "campaign start time, UTC"),
        Column("parent_campaign_id", "VARCHAR", "the parent campaign; NULL for a parent"),
        Column("is_parent", "BOOLEAN", "true when the campaign has no parent (FAQ: parents have none)"),
        Column("total_child_campaigns", "BIGINT", "children of a periodic parent, as reported"),
        Column("reachability_count", "BIGINT", "reachable users (scheduled campaigns)"),
        Column("reachability_updated_at", "TIMESTAMP", "when MoEngage computed reachability, UTC"),
        Column("source", "VARCHAR", "the endpoint the row came from: search, meta or v5"),
        Column("team", "VARCHAR", "the campaign's team (search, v5)"),
        Column("created_at", "TIMESTAMP", "when the campaign was created, UTC (search, v5)"),
        Column("updated_at", "TIMESTAMP", "when its newest published revision was saved, UTC (v5)"),
        Column("version_number", "BIGINT", "its newest published revision (v5 campaign versioning)"),
        Column("is_archived", "BOOLEAN", "archived in MoEngage (status ARCHIVED; search, v5)"),
        Column("metadata", "JSON", "the API's campaign object, verbatim"),
        Column("fetched_at", "TIMESTAMP", "when the metadata was fetched (UTC)"),
    ),
)  # fmt: skip
ATTRIBUTIONS = ("VIEW_THROUGH", "CLICK_THROUGH", "IN_SESSION", "TOTAL_CONVERSIONS",
                "CLICK_CONVERSIONS")  # fmt: skip


def _per_attribution(note: str = "") -> tuple[Column, ...]:
    """Conversions and revenue, one column each per attribution type."""
    return tuple(
        column
        for a in ATTRIBUTIONS
        for column in (
            Column(f"conversions_{a.lower()}", "BIGINT", f"all goals' conversions{note}, {a} attribution"),
            Column(f"revenue_{a.lower()}", "DOUBLE", f"all goals' revenue{note}, {a} attribution"),
        )
    )  # fmt: skip


_SUMMARY_COLUMNS = (
    WORKSPACE,
    STAT_DATE,
    METRIC,
    CAMPAIGN,
    Column("campaign_name", "VARCHAR", "from campaigns (NULL when metadata is missing)"),
    Column("channel", "VARCHAR", "from campaigns"),
    Column("parent_campaign_id", "VARCHAR", "from campaigns; NULL for a parent"),
    Column("rollup_campaign_id", "VARCHAR", "the parent for a child, else the campaign itself"),
    Column("sent", "BIGINT", "performance_stats.sent, all platforms/locales/variations once"),
    Column("delivered", "BIGINT", "performance_stats.delivered, same scope"),
    Column("impressions", "BIGINT", "performance_stats.impression, same scope"),
    Column("clicks", "BIGINT", "performance_stats.click, same scope"),
    *_per_attribution(),
)
CAMPAIGN_DAILY_SUMMARY = Table(
    "campaign_daily_summary",
    "VIEW: headline numbers per workspace x day x metric type x campaign, with name, channel, parent",
    _SUMMARY_COLUMNS,
)
PARENT_CAMPAIGN_DAILY_SUMMARY = Table(
    "parent_campaign_daily_summary",
    "VIEW: the same with children rolled up to their parent (campaign_id = rollup_campaign_id)",
    (*_SUMMARY_COLUMNS[:6], Column("campaigns_rolled_up", "BIGINT", "campaigns summed, parent included"),
     *_SUMMARY_COLUMNS[8:]),
)  # fmt: skip
TABLES[CAMPAIGNS.name] = CAMPAIGNS

# Periods: the API asked for a whole ISO week or calendar month at once. UNIQUE counts of a
# period are distinct users over the period, which no sum of days can give.
PERIOD = _key("period", "VARCHAR", "week (ISO, Monday to Sunday) or month (calendar)")
PERIOD_START = _key("period_start", "DATE", "first day of the period (partition dimension)")
PERIOD_END = Column(
    "period_end", "DATE", "last day asked for: the period's last day, or yesterday while it runs"
)


def _over_periods(table: Table, name: str, description: str) -> Table:
    """`table`'s columns with the day replaced by the period."""
    columns: list[Column] = []
    for column in table.columns:
        columns += [PERIOD, PERIOD_START, PERIOD_END] if column == STAT_DATE else [column]
    return Table(name, description, tuple(columns))


CAMPAIGN_PERIOD_STATS = _over_periods(
    PERFORMANCE_STATS,
    "campaign_period_stats",
    "performance_stats of every block for a whole week or month, fetched from the API for the "
    "range (UNIQUE = distinct users over the period, never a sum of days)",
)
CAMPAIGN_PERIOD_GOAL_STATS = _over_periods(
    CONVERSION_GOAL_STATS,
    "campaign_period_goal_stats",
    "conversion_goal_stats per goal and attribution type for a whole week or month, fetched "
    "from the API for the range",
)
PERIOD_TABLES = (CAMPAIGN_PERIOD_STATS, CAMPAIGN_PERIOD_GOAL_STATS)
for _table in PERIOD_TABLES:
    TABLES[_table.name] = _table

CAMPAIGN_MONTHLY_SUMMARY = Table(
    "campaign_monthly_summary",
    "VIEW: per workspace x month x campaign, the month's totals and its reach (distinct users, "
    "from the API's UNIQUE counts for the month: not a sum of days)",
    (
        WORKSPACE,
        _key("month", "DATE", "first day of the month"),
        PERIOD_END,
        CAMPAIGN,
        Column("campaign_name", "VARCHAR", "from campaigns (NULL when metadata is missing)"),
        Column("channel", "VARCHAR", "from campaigns"),
        Column("sent", "BIGINT", "TOTAL sent in the month (= the sum of the days)"),
        Column("delivered", "BIGINT", "TOTAL delivered in the month"),
        Column("impressions", "BIGINT", "TOTAL impressions in the month"),
        Column("clicks", "BIGINT", "TOTAL clicks in the month"),
        Column("reach", "BIGINT", "distinct users the campaign was sent to in the month (UNIQUE sent)"),
        Column("users_delivered", "BIGINT", "distinct users delivered to (UNIQUE delivered; channels that report delivery)"),
        Column("users_clicked", "BIGINT", "distinct users who clicked in the month (UNIQUE click)"),
        *_per_attribution(" (TOTAL)"),
    ),
)  # fmt: skip
# Flows: MoEngage's journeys. Their step campaigns answer the Stats API only when named, so the
# flows and the steps of every version are found first (the Flows API) and kept here: the cache
# discovery reads before asking the API again, and what joins a stats row to its flow.
FLOW = _key("flow_id", "VARCHAR", "MoEngage flow id")
FLOWS = Table(
    "flows",
    "Every flow (journey) of the workspace from the Flows API (v5), archived and stopped ones included",
    (
        WORKSPACE,
        FLOW,
        Column("flow_name", "VARCHAR", "the flow's name"),
        Column("status", "VARCHAR", "ACTIVE, SCHEDULED, PAUSED, STOPPED, COMPLETED, RETIRED, DRAFT, ..."),
        Column("archived", "BOOLEAN", "archived in MoEngage"),
        Column("delivery_type", "VARCHAR", "the flow's delivery type"),
        Column("active_version_name", "VARCHAR", "the version that runs now"),
        Column("versions", "JSON", "the versions read (version_id, version_no, version_name, status), as a JSON list"),
        Column("tags", "JSON", "the flow's tags, as a JSON list"),
        Column("created_at", "TIMESTAMP", "when the flow was created, UTC"),
        Column("updated_at", "TIMESTAMP", "when the flow was last changed, UTC (a change re-reads it)"),
        Column("published_at", "TIMESTAMP", "when the flow was published, UTC"),
        Column("created_by", "VARCHAR", "creator"),
        Column("listed", "JSON", "the flow as flows/search listed it, verbatim"),
        Column("fetched_at", "TIMESTAMP", "when the flow was last read from the API (UTC)"),
    ),
)  # fmt: skip
FLOW_CAMPAIGNS = Table(
    "flow_campaigns",
    "Each campaign that is a step of a flow version: ACTION nodes, and campaigns a next-best-action node offers; a retired version's steps included (they still send to users inside it)",
    (
        WORKSPACE,
        FLOW,
        _key("version_id", "VARCHAR", "the flow version the step belongs to"),
        CAMPAIGN,
        Column("version_no", "BIGINT", "the version's number"),
        Column("version_name", "VARCHAR", "the version's name"),
        Column("version_status", "VARCHAR", "the version's status (LIVE, RETIRED, ...)"),
        Column("step_index", "INTEGER", "the step's position in the version (0-based, in the flow's node order)"),
        Column("stage_id", "VARCHAR", "the node's stage id"),
        Column("label", "VARCHAR", "the node's label in the flow builder"),
        Column("node_type", "VARCHAR", "ACTION, or the next-best-action node's type"),
        Column("channel", "VARCHAR", "the step's channel"),
        Column("campaign_name", "VARCHAR", "the step campaign's name, as the flow names it"),
        Column("fetched_at", "TIMESTAMP", "when the version was read from the API (UTC)"),
    ),
)  # fmt: skip
for _table in (FLOWS, FLOW_CAMPAIGNS):
    TABLES[_table.name] = _table

# The ledger: what the lake knows about its own completeness, in one place. Each day's fetch
# writes what it asked and what answered, in the day's publish transaction; flow naming,
# reconciliation, the report and the doctor read it instead of guessing.
DAY_ROW = ""  # the campaign_id of the row that marks a day's fetch itself
ANSWERS = Table(
    "answers",
    "The ledger: per workspace x day, a row marking the day's fetch (campaign_id '', asked_as 'day') and one per campaign asked, how it was asked and whether it answered; published with the day's slices, in the same transaction",
    (
        WORKSPACE,
        STAT_DATE,
        _key("campaign_id", "VARCHAR", "MoEngage campaign id; '' on the row that marks the day's fetch"),
        Column("asked_as", "VARCHAR", "day (the fetch itself), pages (listed in the day's unnamed pages) or named (asked by id: a flow's step)"),
        Column("answered", "BOOLEAN", "the API answered with stats for it (day: always true once published)"),
        Column("flow_id", "VARCHAR", "the flow of a named step (NULL otherwise)"),
        Column("fetched_at", "TIMESTAMP", "when the day was fetched from the API (UTC)"),
    ),
)  # fmt: skip
TABLES[ANSWERS.name] = ANSWERS

# Reconciliation: each campaign's month as MoEngage answers it for the range (TOTAL counts: the
# sum of its days) against the sum of its days in the lake.
RECONCILED_STATUSES = ("match", "lake_short", "lake_over", "api_only", "lake_only",
                       "api_inconsistent")  # fmt: skip
RECONCILIATION = Table(
    "reconciliation",
    "Each campaign's calendar month as the Stats API answers the range (TOTAL) against the sum of its days in the lake, per attribution type, metric and goal; one slice per workspace x month, replaced by each reconciliation",
    (
        WORKSPACE,
        PERIOD,
        PERIOD_START,
        PERIOD_END,
        _key("attribution_type", "VARCHAR", "the attribution type asked for; '' for sent, delivered, impressions and clicks (the same under every attribution)"),
        CAMPAIGN,
        _key("metric", "VARCHAR", "sent, delivered, impressions, clicks, conversions or revenue"),
        _key("goal_key", "VARCHAR", "the conversion goal (conversions, revenue); '' for the others"),
        Column("lake_value", "DOUBLE", "the sum of the campaign's days in the lake (NULL: not in the lake)"),
        Column("api_value", "DOUBLE", "the API's answer for the month's range (NULL: not in its answer)"),
        Column("difference", "DOUBLE", "api_value - lake_value (a missing side counts as 0)"),
        Column("status", "VARCHAR", "match, lake_short, lake_over, api_only (a campaign the lake lacks), lake_only, or api_inconsistent (the difference survived a re-fetch of every day: MoEngage's range and its own days disagree)"),
        Column("days_in_lake", "INTEGER", "days of the range the ledger shows fetched"),
        Column("reconciled_at", "TIMESTAMP", "when the range was asked (UTC)"),
    ),
)  # fmt: skip
TABLES[RECONCILIATION.name] = RECONCILIATION

FLOW_DAILY_SUMMARY = Table(
    "flow_daily_summary",
    "VIEW: per workspace x day x flow, its steps' TOTAL sent, delivered, impressions, clicks, "
    "conversions and revenue summed (UNIQUE counts are left out: distinct users do not add up "
    "across steps or days; campaign_monthly_summary has a month's reach)",
    (
        WORKSPACE,
        STAT_DATE,
        FLOW,
        Column("flow_name", "VARCHAR", "from flows"),
        Column("flow_status", "VARCHAR", "from flows"),
        Column("steps_with_stats", "BIGINT", "the flow's step campaigns with stats that day"),
        Column("sent", "BIGINT", "TOTAL sent, all steps"),
        Column("delivered", "BIGINT", "TOTAL delivered, all steps"),
        Column("impressions", "BIGINT", "TOTAL impressions, all steps"),
        Column("clicks", "BIGINT", "TOTAL clicks, all steps"),
        *_per_attribution(" (TOTAL, all steps)"),
    ),
)
VIEWS = {
    t.name: t
    for t in (CAMPAIGN_DAILY_SUMMARY, PARENT_CAMPAIGN_DAILY_SUMMARY, CAMPAIGN_MONTHLY_SUMMARY,
              FLOW_DAILY_SUMMARY)
}  # fmt: skip
