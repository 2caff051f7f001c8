-- Per workspace x ISO week x flow: every step's TOTALs (flow_daily_summary holds TOTALs only,
-- flow steps included whether the Stats API listed them or they were asked for by id).
select
    workspace_id || '|' || date_trunc('week', stat_date)::date || '|' || flow_id as kpi_key,
    workspace_id,
    date_trunc('week', stat_date)::date as week_start,
    flow_id,
    max(flow_name) as flow_name,
    max(flow_status) as flow_status,
    max(steps_with_stats) as most_steps_with_stats_in_a_day,
    {{ total_counts() }}
from {{ source('moestats', 'flow_daily_summary') }}
group by all
