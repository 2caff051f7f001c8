{# The TOTAL counts a KPI model adds up over its grain (TOTALs add up; UNIQUE counts never do). #}
{% macro total_counts() %}
    sum(sent) as sent,
    sum(delivered) as delivered,
    sum(impressions) as impressions,
    sum(clicks) as clicks,
    sum(conversions_click_through) as conversions_click_through,
    sum(conversions_view_through) as conversions_view_through
{% endmacro %}
