"""`moestats/campaign_report`: per workspace, an HTML page and a PNG under data/reports/.

What Dagster's open-source UI can show of it: numbers and tables in an asset's metadata render
inline on the asset page (and numbers are plotted across materializations); Markdown metadata —
the only way to embed an image — opens behind a "Show Markdown" button; a path is shown as text
(a browser will not open a file:// link from the UI's page). So the headline numbers and the top
campaigns are metadata of their own, the chart is Markdown, and the page's path is shown."""

import base64
import math

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from moestats_dagster.lakehouse.warehouse import table_name
from moestats_dagster.messages import said
from moestats_dagster.model.schemas import (
    CAMPAIGN_DAILY_SUMMARY,
    CAMPAIGN_MONTHLY_SUMMARY,
    CAMPAIGN_STATS_RAW,
    CAMPAIGNS,
    FLOW_CAMPAIGNS,
    FLOW_DAILY_SUMMARY,
)
from moestats_dagster.orchestration.lib.conditions import REFRESH_AFTER_STATS
from moestats_dagster.orchestration.lib.metadata import DEFAULT_NAMING, OWNERS, Naming
from moestats_dagster.orchestration.lib.partitions import BY_WORKSPACE, ONE_PER_RUN, loaded_days
from moestats_dagster.orchestration.lib.resources import MoEngageResource, WarehouseResource
from moestats_dagster.report import build_report, render_html, render_png, reports_path

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
            naming.key(FLOW_DAILY_SUMMARY),
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
        """For people: headline numbers for the latest day and the last 7 and 28 days against
        the period before, sends per day for each channel (days not loaded marked), the top
        campaigns by name and the month's reach. An HTML page and a PNG in
        `data/reports/<workspace>/` (MOESTATS_REPORTS_PATH moves them); the numbers and top
        campaigns show here as metadata, the chart under "Show Markdown".
        Refreshes by itself after new stats, like the summary."""
        moengage: MoEngageResource = getattr(context.resources, naming.moengage)
        warehouse: WarehouseResource = getattr(context.resources, naming.warehouse)
        workspace_id = context.partition_key
        ws = moengage.workspace(workspace_id)
        loaded = loaded_days(context.instance, naming.key(CAMPAIGN_STATS_RAW), workspace_id)
        with warehouse.get_connection() as conn:
            report = build_report(
                conn, table_name(conn, CAMPAIGN_DAILY_SUMMARY), workspace_id, ws.headline_metric_type,
                ws.attribution_types[0], table_name(conn, CAMPAIGN_MONTHLY_SUMMARY),
                loaded=loaded, campaigns=table_name(conn, CAMPAIGNS), currency=ws.currency,
                start=moengage.settings().start_date,
                flow_summary=table_name(conn, FLOW_DAILY_SUMMARY),
                flow_campaigns=table_name(conn, FLOW_CAMPAIGNS),
                reconciled=True,
            )  # fmt: skip
        if report is None:
            context.log.warning(f"{workspace_id}: no stats loaded yet, so no report")
            return MaterializeResult(metadata={"days": 0})
        folder = reports_path(warehouse.database) / workspace_id
        png, page = folder / "report.png", folder / "report.html"
        try:  # a chart that cannot be drawn never takes the page (or the tables) down with it
            render_png(report, png)  # the whole report: for Slack and the UI
            render_png(report, folder / "channels.png", tiles=False)  # the page has its tiles
            chart_failed = None
        except Exception as exc:  # noqa: BLE001 (said on the page, in the log and metadata)
            chart_failed = said(exc, typed=True)
            context.log.warning(f"{workspace_id}: the chart could not be drawn ({chart_failed});"
                                " the page and the numbers are written without it")  # fmt: skip
            png.unlink(missing_ok=True)
        render_html(report, page, None if chart_failed else "channels.png", chart_failed)
        chart = (
            {"chart": MetadataValue.md(f"![{report.title}](data:image/png;base64,"
                                       f"{base64.b64encode(png.read_bytes()).decode()})"),
             "png": MetadataValue.path(str(png))}
            if chart_failed is None else {"chart_failed": chart_failed}
        )  # fmt: skip
        context.log.info(f"{workspace_id}: report written to {page}")
        return MaterializeResult(
            metadata={
                **chart,
                "html": MetadataValue.path(str(page)),
                "first_day": report.first.isoformat(),
                "last_day": report.last.isoformat(),
                "days_not_loaded": len(report.not_loaded),
                **_headline(report),
                "top_by_conversions": _table(report.top_conversions),
                "top_by_revenue": _table(report.top_revenue),
                **({"top_flows": _flow_table(report.flows)} if report.flows else {}),
                **(
                    {"month_reach": _table(report.month_reach), "month": report.month_heading}
                    if report.month_reach is not None
                    else {}
                ),
            }
        )

    return campaign_report


def _headline(report) -> dict[str, float]:
    """The tiles as numbers: the UI shows them inline and plots them across materializations."""
    names = {1: "latest_day", 7: "last_7_days", 28: "last_28_days"}
    return {
        f"{tile.metric}_{names[tile.days]}": (
            round(tile.value, 2) if tile.metric == "revenue" else int(tile.value)
        )
        for tiles in report.tiles()
        for tile in tiles
        if tile.days in (1, 7)  # 28 days too would crowd the page; the HTML has them
    }


def _table(frame) -> MetadataValue:
    """Top campaigns as a table the UI renders inline (not Markdown behind a button)."""
    columns = [c for c in frame.columns]
    kinds = {"campaign": "string", "channel": "string", "campaign_id": "string",
             "revenue": "float"}  # fmt: skip
    schema = TableSchema(columns=[TableColumn(c, kinds.get(c, "int")) for c in columns])
    records = [
        TableRecord({c: _cell(kinds.get(c, "int"), v) for c, v in zip(columns, row, strict=True)})
        for row in frame.head(5).itertuples(index=False)
    ]
    return MetadataValue.table(records, schema=schema)


def _flow_table(flows) -> MetadataValue:
    """Top flows and their steps in order, one row per step: flow, step, sent, clicks,
    conversions (the UI renders it inline)."""
    columns = [("flow", "string"), ("step", "string"), ("channel", "string"), ("sent", "int"),
               ("clicks", "int"), ("conversions", "int"), ("revenue", "float")]  # fmt: skip
    schema = TableSchema(columns=[TableColumn(c, k) for c, k in columns])
    records = [
        TableRecord({"flow": flow.name, **{c: _cell(k, getattr(step, c)) for c, k in columns[1:]}})
        for flow in flows
        for step in flow.steps.itertuples(index=False)
    ]
    return MetadataValue.table(records, schema=schema)


def _cell(kind: str, value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None  # a count the API did not give (shown empty, not as 0)
    return str(value) if kind == "string" else float(value) if kind == "float" else int(value)
