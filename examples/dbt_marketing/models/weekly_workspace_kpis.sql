-- Per workspace x ISO week: the campaigns' TOTALs added up. No reach here: two campaigns reach
-- many of the same users, and no sum of campaigns' UNIQUE counts says how many users there were.
select
    workspace_id || '|' || week_start as kpi_key,
    workspace_id,
    week_start,
    count(*) filter (where sent > 0) as campaigns_sending,
    sum(sent) as sent,
    sum(delivered) as delivered,
    sum(impressions) as impressions,
    sum(clicks) as clicks,
    sum(conversions_click_through) as conversions_click_through,
    sum(conversions_view_through) as conversions_view_through
from {{ ref('weekly_campaign_kpis') }}
group by all
