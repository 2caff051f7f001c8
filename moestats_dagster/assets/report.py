"""`moestats/campaign_report`: per workspace, a PNG chart and an HTML page under data/reports/,
shown in the asset's metadata (the chart itself, inline)."""

import base64

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
    asset,
)

from ..report import build_report, render_html, render_png, reports_path
from ..resources import MoEngageResource, WarehouseResource
from ..schemas import CAMPAIGN_DAILY_SUMMARY, CAMPAIGN_MONTHLY_SUMMARY
from ..warehouse import table_name
from .automation import REFRESH_AFTER_STATS
from .campaigns import BY_WORKSPACE, ONE_PER_RUN
from .metadata import DEFAULT_NAMING, OWNERS, Naming

REPORT = "campaign_report"


def build_report_asset(
    partitions_def: StaticPartitionsDefinition,
    naming: Naming = DEFAULT_NAMING,
    period_keys: tuple[AssetKey, ...] = (),
):
    key = AssetKey([*naming.prefix, REPORT])

    @asset(
        key=key,
        partitions_def=partitions_def,
        deps=[
            naming.key(CAMPAIGN_DAILY_SUMMARY),
            *(AssetDep(k, partition_mapping=BY_WORKSPACE) for k in period_keys),
        ],
        group_name=naming.group,
        kinds={"matplotlib", "html"},
        owners=OWNERS,
        automation_condition=REFRESH_AFTER_STATS,
        backfill_policy=ONE_PER_RUN,
        required_resource_keys={naming.moengage, naming.warehouse},
    )
    def campaign_report(context: AssetExecutionContext):
        """For people: the workspace's last 30 loaded days — daily sent, delivered, clicks,
        conversions and revenue by channel — and its top campaigns by conversions and by
        revenue, with names. A PNG chart and a small HTML page in `data/reports/<workspace>/`
        (MOESTATS_REPORTS_PATH moves them); the chart also shows here, in the metadata.
        Refreshes by itself after new stats, like the summary."""
        moengage: MoEngageResource = getattr(context.resources, naming.moengage)
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        workspace_id = context.partition_key
        ws = moengage.workspace(workspace_id)
        with warehouse.get_connection() as conn:
            report = build_report(
                conn, table_name(conn, CAMPAIGN_DAILY_SUMMARY), workspace_id, ws.headline_metric_type,
                ws.attribution_types[0], table_name(conn, CAMPAIGN_MONTHLY_SUMMARY),
            )  # fmt: skip
        if report is None:
            context.log.warning(f"{workspace_id}: no stats loaded yet, so no report")
            return MaterializeResult(metadata={"days": 0})
        folder = reports_path(warehouse.database) / workspace_id
        png, page = folder / "report.png", folder / "report.html"
        render_png(report, png)
        render_html(report, page, png.name)
        image = base64.b64encode(png.read_bytes()).decode()
        context.log.info(f"{workspace_id}: report written to {page}")
        return MaterializeResult(
            metadata={
                "chart": MetadataValue.md(f"![{report.title}](data:image/png;base64,{image})"),
                "html": MetadataValue.path(str(page)),
                "png": MetadataValue.path(str(png)),
                "first_day": report.first.isoformat(),
                "last_day": report.last.isoformat(),
                "top_by_conversions": _table(report.top_conversions),
                "top_by_revenue": _table(report.top_revenue),
                **(
                    {"month_reach": _table(report.month_reach), "month": report.month_heading}
                    if report.month_reach is not None
                    else {}
                ),
            }
        )

    return campaign_report


def _table(frame) -> MetadataValue:
    if frame.empty:
        return MetadataValue.md("_none in these days_")
    return MetadataValue.md(frame.head(5).to_markdown(index=False, floatfmt=",.2f"))
