-- Per workspace x ISO week x campaign. Counts are TOTALs summed over the week's days (totals add
-- up); reach comes from the API's own UNIQUE count for the whole week (campaign_weekly_stats):
-- a sum of daily UNIQUE counts would count a user once for every day they were reached. Reach is
-- NULL until the workspace loads weekly periods (`periods: [week, month]` in the workspaces file).
{% set attributions = ['view_through', 'click_through', 'in_session', 'total_conversions', 'click_conversions'] %}

with daily as (
    select
        workspace_id,
        date_trunc('week', stat_date)::date as week_start,
        campaign_id,
        max(campaign_name) as campaign_name,
        max(channel) as channel,
        count(distinct stat_date) as days_with_stats,
        sum(sent) as sent,
        sum(delivered) as delivered,
        sum(impressions) as impressions,
        sum(clicks) as clicks,
        {% for a in attributions %}
        sum(conversions_{{ a }}) as conversions_{{ a }},
        sum(revenue_{{ a }}) as revenue_{{ a }}{{ "," if not loop.last }}
        {% endfor %}
    from {{ source('moestats', 'campaign_daily_summary') }}
    where metric_type = 'TOTAL'
    group by all
),

weekly_reach as (
    select
        workspace_id,
        period_start as week_start,
        campaign_id,
        sum(sent) as reach,
        sum(delivered) as users_delivered,
        sum(click) as users_clicked
    from {{ source('moestats', 'campaign_weekly_stats') }}
    where period = 'week' and metric_type = 'UNIQUE'
    group by all
)

select
    daily.workspace_id || '|' || daily.week_start || '|' || daily.campaign_id as kpi_key,
    daily.*,
    weekly_reach.reach,
    weekly_reach.users_delivered,
    weekly_reach.users_clicked,
    daily.delivered / nullif(daily.sent, 0) as delivery_rate,
    daily.clicks / nullif(daily.impressions, 0) as click_rate
from daily
left join weekly_reach using (workspace_id, week_start, campaign_id)
