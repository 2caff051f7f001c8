-- Per workspace x ISO week: the campaigns' TOTALs added up. No reach here: two campaigns reach
-- many of the same users, and no sum of campaigns' UNIQUE counts says how many users there were.
select
    workspace_id || '|' || week_start as kpi_key,
    workspace_id,
    week_start,
    count(*) filter (where sent > 0) as campaigns_sending,
    {{ total_counts() }}
from {{ ref('weekly_campaign_kpis') }}
group by all
