"""SQL of the dashboard views over the tables and the campaign metadata."""

from __future__ import annotations

from moestats_dagster.moengage import ATTRIBUTION_TYPES

# Each campaign's headline numbers counted once: the all_locales x all_variations block of the
# all_platforms key when the campaign has one, else of its single platform.
_ONCE = """
    SELECT *, bool_or(platform = 'all_platforms') OVER (
        PARTITION BY workspace_id, {day}, metric_type, {extra} campaign_id, entry_index
    ) AS has_all_platforms
    FROM {table}
    WHERE locale = 'all_locales' AND variation = 'all_variations'
"""
_DAY = "stat_date"


def campaign_once(table: str, extra: str) -> str:
    """The blocks of `table` that count each campaign once per day (`extra`: more columns of
    the window's partition, e.g. `attribution_type,`), before the all-platforms choice: add
    conditions with AND, then keep `platform = 'all_platforms' OR NOT has_all_platforms`."""
    return _ONCE.format(day=_DAY, extra=extra, table=table)


def _per_attribution() -> str:
    """Conversions and revenue as one column per attribution type (conversions_view_through, …)."""
    return ",\n        ".join(
        f"sum({metric}) FILTER (WHERE attribution_type = '{a}') AS {metric}_{a.lower()}"
        for a in ATTRIBUTION_TYPES
        for metric in ("conversions", "revenue")
    )


def summary_sql(perf: str, conv: str, campaigns: str, view: str) -> str:
    pivots = _per_attribution()
    return f"""
CREATE OR REPLACE VIEW {view} AS
WITH perf AS ({_ONCE.format(day=_DAY, extra="", table=perf)}),
performance AS (
    SELECT workspace_id, stat_date, metric_type, campaign_id,
        sum(sent) AS sent, sum(delivered) AS delivered, sum(impression) AS impressions,
        sum(click) AS clicks
    FROM perf WHERE platform = 'all_platforms' OR NOT has_all_platforms
    GROUP BY ALL
),
conv AS ({_ONCE.format(day=_DAY, extra="attribution_type,", table=conv)}),
conversions AS (
    SELECT workspace_id, stat_date, metric_type, campaign_id,
        {pivots}
    FROM conv WHERE platform = 'all_platforms' OR NOT has_all_platforms
    GROUP BY ALL
)
SELECT workspace_id, stat_date, metric_type, campaign_id,
    m.campaign_name, m.channel, m.parent_campaign_id,
    coalesce(m.parent_campaign_id, campaign_id) AS rollup_campaign_id,
    p.sent, p.delivered, p.impressions, p.clicks,
    {", ".join(f"c.{m}_{a.lower()}" for a in ATTRIBUTION_TYPES for m in ("conversions", "revenue"))}
FROM performance p
FULL JOIN conversions c USING (workspace_id, stat_date, metric_type, campaign_id)
LEFT JOIN {campaigns} m USING (workspace_id, campaign_id)
"""


def rollup_sql(summary: str, campaigns: str, view: str) -> str:
    sums = ",\n    ".join(
        f"sum({c}) AS {c}"
        for c in ("sent", "delivered", "impressions", "clicks",
                  *(f"{m}_{a.lower()}" for a in ATTRIBUTION_TYPES
                    for m in ("conversions", "revenue")))
    )  # fmt: skip
    return f"""
CREATE OR REPLACE VIEW {view} AS
SELECT s.workspace_id, s.stat_date, s.metric_type, s.rollup_campaign_id AS campaign_id,
    any_value(m.campaign_name) AS campaign_name, any_value(m.channel) AS channel,
    count(*) AS campaigns_rolled_up,
    {sums}
FROM {summary} s
LEFT JOIN {campaigns} m ON m.workspace_id = s.workspace_id AND m.campaign_id = s.rollup_campaign_id
GROUP BY s.workspace_id, s.stat_date, s.metric_type, s.rollup_campaign_id
"""


def headline_sql(perf: str, conv: str) -> str:
    """Per day of one workspace ($workspace, $first..$last): sent and delivered ($metric_type),
    conversions and revenue ($attribution), each campaign counted once, as in the summary."""
    scope = " AND workspace_id = $workspace AND metric_type = $metric_type " \
            "AND stat_date BETWEEN $first AND $last"  # fmt: skip
    return f"""
WITH perf AS ({_ONCE.format(day=_DAY, extra="", table=perf)}{scope}),
conv AS ({_ONCE.format(day=_DAY, extra="attribution_type,", table=conv)}{scope}
    AND attribution_type = $attribution),
p AS (
    SELECT stat_date, sum(sent) AS sent, sum(delivered) AS delivered FROM perf
    WHERE platform = 'all_platforms' OR NOT has_all_platforms GROUP BY ALL
),
c AS (
    SELECT stat_date, sum(conversions) AS conversions, sum(revenue) AS revenue FROM conv
    WHERE platform = 'all_platforms' OR NOT has_all_platforms GROUP BY ALL
)
SELECT stat_date, p.sent, p.delivered, c.conversions, c.revenue
FROM p FULL JOIN c USING (stat_date) ORDER BY stat_date
"""


def monthly_sql(period_perf: str, period_conv: str, campaigns: str, view: str) -> str:
    """`campaign_monthly_summary`: per workspace x month x campaign, the month's TOTAL counts and
    its reach from the API's UNIQUE counts for the whole month (never a sum of days)."""
    once = "period = 'month' AND (platform = 'all_platforms' OR NOT has_all_platforms)"
    pivots = _per_attribution()
    return f"""
CREATE OR REPLACE VIEW {view} AS
WITH perf AS ({_ONCE.format(day="period, period_start", extra="", table=period_perf)}),
performance AS (
    SELECT workspace_id, period_start AS month, max(period_end) AS period_end, campaign_id,
        sum(sent) FILTER (WHERE metric_type = 'TOTAL') AS sent,
        sum(delivered) FILTER (WHERE metric_type = 'TOTAL') AS delivered,
        sum(impression) FILTER (WHERE metric_type = 'TOTAL') AS impressions,
        sum(click) FILTER (WHERE metric_type = 'TOTAL') AS clicks,
        sum(sent) FILTER (WHERE metric_type = 'UNIQUE') AS reach,
        sum(delivered) FILTER (WHERE metric_type = 'UNIQUE') AS users_delivered,
        sum(click) FILTER (WHERE metric_type = 'UNIQUE') AS users_clicked
    FROM perf WHERE {once}
    GROUP BY workspace_id, period_start, campaign_id
),
conv AS ({_ONCE.format(day="period, period_start", extra="attribution_type,", table=period_conv)}),
conversions AS (
    SELECT workspace_id, period_start AS month, campaign_id,
        {pivots}
    FROM conv WHERE {once} AND metric_type = 'TOTAL'
    GROUP BY workspace_id, period_start, campaign_id
)
SELECT workspace_id, month, p.period_end, campaign_id, m.campaign_name, m.channel,
    p.sent, p.delivered, p.impressions, p.clicks, p.reach, p.users_delivered, p.users_clicked,
    {", ".join(f"c.{m}_{a.lower()}" for a in ATTRIBUTION_TYPES for m in ("conversions", "revenue"))}
FROM performance p
LEFT JOIN conversions c USING (workspace_id, month, campaign_id)
LEFT JOIN {campaigns} m USING (workspace_id, campaign_id)
"""


def flow_sql(summary: str, flows: str, flow_campaigns: str, view: str) -> str:
    """`flow_daily_summary`: a flow's steps summed per day, TOTAL counts only (a UNIQUE count
    is distinct users of one campaign and day: a sum over steps or days counts people twice)."""
    pivots = [f"{m}_{a.lower()}" for a in ATTRIBUTION_TYPES for m in ("conversions", "revenue")]
    sums = ",\n    ".join(f"sum(s.{c}) AS {c}" for c in ("sent", "delivered", "impressions",
                                                         "clicks", *pivots))  # fmt: skip
    return f"""
CREATE OR REPLACE VIEW {view} AS
WITH steps AS (SELECT DISTINCT workspace_id, campaign_id, flow_id FROM {flow_campaigns})
SELECT s.workspace_id, s.stat_date, st.flow_id,
    any_value(f.flow_name) AS flow_name, any_value(f.status) AS flow_status,
    count(DISTINCT s.campaign_id) AS steps_with_stats,
    {sums}
FROM {summary} s
JOIN steps st ON st.workspace_id = s.workspace_id AND st.campaign_id = s.campaign_id
LEFT JOIN {flows} f ON f.workspace_id = st.workspace_id AND f.flow_id = st.flow_id
WHERE s.metric_type = 'TOTAL'
GROUP BY s.workspace_id, s.stat_date, st.flow_id
"""
