"""`moestats demo`: materialize the last N days of every workspace through Dagster, then summarize."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from zoneinfo import ZoneInfo

from dagster import DagsterInstance
from tqdm import tqdm

from .config import Settings, lake_path, load_settings
from .definitions import CAMPAIGNS_JOB, JOB_NAME, build_definitions
from .partitions import partition_key
from .schemas import CAMPAIGN_DAILY_SUMMARY, TABLES
from .warehouse import connection, table_name

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def demo_days(settings: Settings, days: int, today: dt.date | None = None) -> list[dt.date]:
    """Yesterday and the `days - 1` before it (in the partition timezone), not before start_date."""
    today = today or dt.datetime.now(ZoneInfo(settings.timezone)).date()
    wanted = [today - dt.timedelta(days=n) for n in range(days, 0, -1)]
    return [d for d in wanted if d >= settings.start_date]


def run_demo(days: int, workspaces: list[str] | None = None) -> int:
    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(Path.cwd())
    print(f"Dagster instance: DAGSTER_HOME={os.environ['DAGSTER_HOME']}")
    settings = load_settings()
    print(f"Workspaces file: {settings.source}")
    if settings.uses_sandbox:
        print("Using the bundled MoEngage sandbox (synthetic data, no network, no credentials).")
    chosen = workspaces or [ws.id for ws in settings.workspaces]
    unknown = [w for w in chosen if w not in {ws.id for ws in settings.workspaces}]
    if unknown:  # before anything runs
        raise ValueError(
            f"unknown workspace(s) {unknown}; {settings.source} configures "
            f"{[ws.id for ws in settings.workspaces]}"
        )
    database = lake_path()
    defs = build_definitions(settings, database=database)
    job, campaigns_job = defs.resolve_job_def(JOB_NAME), defs.resolve_job_def(CAMPAIGNS_JOB)
    instance = DagsterInstance.get()
    dates = demo_days(settings, days)
    failures: list[str] = []
    bar = tqdm(total=(len(dates) + 1) * len(chosen), unit="partition", desc="materializing")

    # Day by day, every workspace in turn: Dagster's in-process execution is not thread-safe, and
    # interleaving lets each workspace's rate window refill while the others run.
    for day in dates:
        for ws_id in chosen:
            bar.set_postfix_str(f"{day}|{ws_id}")
            result = job.execute_in_process(
                partition_key=partition_key(day, ws_id),
                instance=instance,
                run_config=QUIET,
                raise_on_error=False,
            )
            if not result.success:
                failures.append(f"{day}|{ws_id} (run {result.run_id})")
            bar.update(1)
    for ws_id in chosen:  # then names, channels and parents, and the summary views
        bar.set_postfix_str(f"campaigns|{ws_id}")
        result = campaigns_job.execute_in_process(
            partition_key=ws_id, instance=instance, run_config=QUIET, raise_on_error=False
        )
        if not result.success:
            failures.append(f"campaigns {ws_id} (run {result.run_id})")
        bar.update(1)
    bar.close()
    print_summary(settings, database, dates, chosen)
    if failures:
        print(f"\n{len(failures)} partition(s) failed; see them in the Dagster UI:")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print("\nSee the runs and assets: make dev  (then open http://127.0.0.1:3000)")
    return 0


TOP_CAMPAIGNS = """
SELECT s.workspace_id, s.campaign_id, any_value(s.campaign_name) AS name,
    any_value(s.channel) AS channel, sum(s.sent) AS sent, sum({conversions}) AS conversions
FROM {summary} s
WHERE s.metric_type = 'TOTAL' AND s.stat_date BETWEEN ? AND ? AND s.workspace_id = ?
GROUP BY ALL ORDER BY conversions DESC NULLS LAST, s.campaign_id LIMIT 3
"""


def print_summary(
    settings: Settings, database: str, dates: list[dt.date], chosen: list[str]
) -> None:
    with connection(database) as conn:
        print(f'\nWarehouse (DuckLake): {database}  — query it: moestats query "SELECT …"')
        print(f"{'table':<34}{'rows (these days)':>18}{'rows (all)':>12}")
        for table in TABLES.values():
            name = table_name(conn, table)
            part = total = conn.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
            if dates and "stat_date" in table.names:
                part = conn.execute(
                    f"SELECT count(*) FROM {name} WHERE stat_date BETWEEN ? AND ? "
                    "AND list_contains(?, workspace_id)",
                    [min(dates), max(dates), chosen],
                ).fetchall()[0][0]
            print(f"{table.qualified:<34}{part:>18,}{total:>12,}")
        if not dates:
            return
        summary = table_name(conn, CAMPAIGN_DAILY_SUMMARY)
        print(f"\nTop campaigns by conversions, {min(dates)} to {max(dates)} (TOTAL, all goals,")
        print("first configured attribution type; from moestats.campaign_daily_summary):")
        for ws_id in chosen:
            attribution = settings.workspace(ws_id).attribution_types[0]
            top = conn.execute(
                TOP_CAMPAIGNS.format(
                    summary=summary, conversions=f"conversions_{attribution.lower()}"
                ),
                [min(dates), max(dates), ws_id],
            ).fetchall()
            for _, campaign_id, name, channel, sent, conversions in top:
                sent_text = f"{sent:,}" if sent is not None else "-"  # NULL: not a sending channel
                print(f"  {ws_id:<9} {campaign_id}  {name or '?':<22} {channel or '?':<20} "
                      f"sent {sent_text:>9}  conversions {conversions or 0:>8,} ({attribution})")  # fmt: skip
