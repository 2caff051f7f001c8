"""`moestats doctor`: one cheap probe per workspace, and what to fix.

For each workspace: is the host reachable, are the credentials accepted, is the Stats API
enabled, which of the three campaign-metadata endpoints answer (v1/campaigns/search, Campaign
Meta, v5/campaigns/search with its own key) and which one names come from, does MoEngage send
rate-limit headers. One Stats call (a page of yesterday) and one call per metadata endpoint,
through the same limiter as runs, without retries. Runs from the shell (`moestats doctor`) and
from the UI (job `moestats_doctor`). A metadata endpoint that does not answer is ✗ with the
permission to ask for, but fails the doctor only when it is the one `campaign_metadata` names.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import duckdb

from moestats_dagster.config import WorkspaceSettings
from moestats_dagster.messages import said
from moestats_dagster.moengage import (
    AccessDeniedError,
    AuthenticationError,
    MoEngageError,
    RequestFailed,
    UnreachableError,
)
from moestats_dagster.orchestration.lib.resources import MissingApiKeyError, MoEngageResource

SOURCE_CHECKS = {"search": "names: v1/campaigns/search", "meta": "names: Campaign Meta",
                 "v5": "names: v5/campaigns/search"}  # fmt: skip
CHECKS = ("host reachable", "credentials", "Stats API access", *SOURCE_CHECKS.values(),
          "campaign names", "flows", "time zone", "rate-limit headers")  # fmt: skip
SYMBOLS = {"ok": "✓", "fail": "✗", "warn": "!", "skip": "–"}
# A probe fails fast: no retries, short deadlines. It says what is wrong; a run rides things out.
PROBE = {"max_retries": 0, "connection_retries": 0, "call_deadline_seconds": 15.0,
         "retry_budget_seconds": 30.0}  # fmt: skip


@dataclass(frozen=True)
class Finding:
    workspace: str
    check: str
    status: str  # ok | fail | warn | skip
    detail: str


def diagnose(resource: MoEngageResource, workspace_ids: list[str] | None = None) -> list[Finding]:
    settings = resource.settings()
    chosen = workspace_ids or [ws.id for ws in settings.workspaces]
    findings: list[Finding] = []
    for workspace_id in chosen:
        findings += diagnose_workspace(  # "yesterday" in the workspace's own time zone
            resource, settings.workspace(workspace_id), settings.zone(workspace_id)
        )
    return findings


def diagnose_workspace(
    resource: MoEngageResource, ws: WorkspaceSettings, timezone: str
) -> list[Finding]:
    results: dict[str, tuple[str, str]] = {
        "time zone": ("ok", f"days are counted in {timezone}: it must be the MoEngage account's "
                      "app time zone (the dashboard's settings show it), as the Stats API reads "
                      "dates in that zone; otherwise every day is shifted"),
    }  # fmt: skip
    try:
        client = resource.client(ws.id, **PROBE)
    except (MissingApiKeyError, MoEngageError) as exc:
        results["credentials"] = ("fail", str(exc))
        return _findings(ws.id, results)
    yesterday = dt.datetime.now(ZoneInfo(timezone)).date() - dt.timedelta(days=1)
    where = f"{client._transport.host}:{client._transport.port}"
    with client:
        try:
            client.fetch_page(
                stat_date=yesterday,
                metric_type=ws.metric_types[0],
                attribution_type=ws.attribution_types[0],
            )
        except UnreachableError as exc:
            results["host reachable"] = ("fail", str(exc))
            return _findings(ws.id, results)
        except AuthenticationError as exc:
            results["host reachable"] = ("ok", f"{where} answered")
            results["credentials"] = ("fail", str(exc))
            return _findings(ws.id, results)
        except AccessDeniedError as exc:
            results["host reachable"] = ("ok", f"{where} answered")
            results["credentials"] = ("ok", "accepted")
            results["Stats API access"] = ("fail", str(exc))
        except (RequestFailed, MoEngageError) as exc:
            results["host reachable"] = ("ok", f"{where} answered")
            results["Stats API access"] = ("fail", str(exc))
        else:
            results["host reachable"] = ("ok", f"{where} answered")
            results["credentials"] = ("ok", "accepted")
            results["Stats API access"] = ("ok", f"a page of {yesterday} came back")
        headers = client.rate_headers
    if headers:
        shown = ", ".join(
            f"{k.removeprefix('x-ratelimit-')} {v}" for k, v in sorted(headers.items())
        )
        results["rate-limit headers"] = ("ok", shown)
    else:
        results["rate-limit headers"] = (
            "warn",
            "none in the answer; the limiter still keeps to rate_limit_per_minute "
            f"({ws.rate_limit_per_minute}/min) — set it if MoEngage gave this workspace another",
        )
    if results.get("credentials", ("",))[0] == "ok":
        results |= _probe_sources(resource, ws)
        searched = [check for check in SOURCE_CHECKS.values()
                    if results.get(check, ("",))[0] == "ok"]  # fmt: skip
        results["flows"] = _probe_flows(resource, ws, searched)
    return _findings(ws.id, results)


def _probe_flows(
    resource: MoEngageResource, ws: WorkspaceSettings, searched: list[str] = ()
) -> tuple[str, str]:
    """One Flows API call: can flow-linked campaigns be found (and so loaded)? Without the
    Flows API, campaign search (a metadata endpoint in `searched` that answered) finds them too,
    less their versions: a warning, not a failure."""
    from moestats_dagster.orchestration.lib.flow_sources import ASK_FOR

    if not ws.finds_flows:
        why = "flows: off" if ws.flows == "off" else "campaign_ids names the campaigns to load"
        return "skip", f"not looked for ({why})"
    try:
        with resource.flows_client(ws.id, **PROBE) as client:
            client.probe(ws.flow_teams)
    except (MissingApiKeyError, MoEngageError) as exc:
        if searched:
            return "warn", (
                f"the Flows API cannot be asked ({exc}); flow-linked campaigns are found through "
                f"campaign search instead ({searched[0].removeprefix('names: ')}), which misses "
                f"the steps of versions it does not list. For every version, ask for {ASK_FOR}"
            )
        return "fail", (
            f"flow-linked campaigns cannot be loaded ({exc}); their stats come only when their "
            f"ids are named. Ask for {ASK_FOR}"
        )
    return "ok", "the Flows API answers: flow-linked campaigns are found and loaded"


def _probe_sources(resource: MoEngageResource, ws: WorkspaceSettings) -> dict[str, tuple]:
    """One call to each metadata endpoint: ✓, or ✗ with the permission or key to ask for."""
    from moestats_dagster.orchestration.lib.campaign_sources import ASK_FOR, ENDPOINTS, sources

    results: dict[str, tuple[str, str]] = {}
    answered = []
    for source, check in SOURCE_CHECKS.items():
        try:
            with resource.campaign_client(ws.id, source, **PROBE) as client:
                client.probe()
        except (MissingApiKeyError, MoEngageError) as exc:
            results[check] = ("fail", f"{exc} — ask for {ASK_FOR[source]}")
        else:
            answered.append(source)
            results[check] = ("ok", "a page of campaigns came back")
    order = sources(ws, None)
    chosen = next((s for s in order if s in answered), None)
    if ws.campaign_metadata == "off":
        results["campaign names"] = ("skip", "campaign_metadata: off")
    elif chosen is not None:
        results["campaign names"] = ("ok", f"from {ENDPOINTS[chosen]} (campaign_metadata: "
                                           f"{ws.campaign_metadata})")  # fmt: skip
    elif ws.campaign_metadata != "auto":
        results["campaign names"] = (
            "fail",
            f"campaign_metadata: {ws.campaign_metadata} does not answer; see its row above, or "
            "set campaign_metadata: auto",
        )
    else:
        results["campaign names"] = (
            "warn",
            "no endpoint answers: campaigns show as bare ids until one does (see the rows above)",
        )
    return results


def _findings(workspace_id: str, results: dict[str, tuple[str, str]]) -> list[Finding]:
    return [
        Finding(workspace_id, check, *results.get(check, ("skip", "not tried: fix the ✗ above")))
        for check in CHECKS
    ]


def render(findings: list[Finding], tablefmt: str = "simple") -> str:
    from tabulate import tabulate  # here, not at the top: every run process imports this module

    rows = [(f.workspace, f.check, SYMBOLS[f.status], _wrap(f.detail)) for f in findings]
    return tabulate(rows, headers=("workspace", "check", "", "detail / fix"), tablefmt=tablefmt)


def _wrap(text: str, width: int = 100) -> str:
    words, lines, line = text.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def lake_versions(lake) -> tuple[str, bool]:
    """One line on the lake's versions, and whether this DuckDB can open it: DuckDB's version,
    the DuckLake format the catalog records, the formats this DuckDB reads."""
    from moestats_dagster.lakehouse.engine import extension_builds, optimizer_note
    from moestats_dagster.lakehouse.lake import (
        OLD_FORMATS,
        READS_FORMATS,
        UPGRADE_COMMAND,
        WRITES_FORMAT,
        catalog_format,
        catalog_metadata,
        files_beside_catalog,
    )

    builds = ", ".join(f"{name} {version}" for name, version in extension_builds().items())
    head = (f"Warehouse: {lake.describe()} — DuckDB {duckdb.__version__} (extensions: {builds}; "
            f"{optimizer_note()})")  # fmt: skip
    try:
        found = catalog_format(lake)
    except Exception as exc:  # out of reach: say so, the workspace rows still run
        return f"{head}; catalog not readable ({said(exc, 200)})", False
    if found is None:
        return (
            f"{head}; no catalog yet (the first run creates DuckLake format {WRITES_FORMAT})",
            True,
        )
    if found in OLD_FORMATS:
        return (
            f"{head}; ✗ DuckLake catalog format {found} (DuckDB 1.4): upgrade it once with "
            f"`{UPGRADE_COMMAND}` (a backup first, every table checked; docs/warehouse.md)",
            False,
        )
    if found not in READS_FORMATS:
        return (
            f"{head}; ✗ DuckLake catalog format {found} was written by a newer DuckDB (this one "
            f"reads up to {READS_FORMATS[-1]}): run the release that wrote it",
            False,
        )
    line = f"{head}; DuckLake catalog format {found} (✓ this DuckDB reads it)"
    recorded = catalog_metadata(lake, "data_path")
    if recorded and recorded != lake.data_path:
        if not files_beside_catalog(lake):
            return (
                f"{line}; ✗ its catalog records its files at {recorded}, but they are not at "
                f"{lake.data_path} beside it: point MOESTATS_LAKE_PATH at the lake's folder (or "
                f"prefix) as it now is, or move {recorded} there",
                False,
            )
        line += (f"; the lake moved from {recorded}: it opens here, and its catalog records "
                 "the new path on the next run")  # fmt: skip
    return line, True


def verdict(findings: list[Finding], lake_ok: bool) -> tuple[str, bool]:
    """The doctor's last line, true to the lines above it, and whether something must be fixed
    before runs can work."""
    if failed(findings) or not lake_ok:
        return "✗ found: fix what the rows say, then run moestats doctor again.", True
    missing = sorted({f.check for f in findings if f.status == "fail"})
    if missing:
        return (f"✓ every workspace can run; ✗ above: {', '.join(missing)} (what it leaves "
                "out and what to ask for is on its line)."), False  # fmt: skip
    return "✓ every workspace is ready.", False


def failed(findings: list[Finding]) -> bool:
    """Something to fix before runs can work. A metadata endpoint a workspace does not have is
    shown, not fatal: most accounts have one or two of the three."""
    optional = {*SOURCE_CHECKS.values(), "flows"}
    return any(f.status == "fail" and f.check not in optional for f in findings)


def reconciled(lake, workspace_ids: list[str]) -> str | None:
    """One line on how far each workspace's lake is proven against MoEngage's own month totals
    (moestats.reconciliation); None when there is no lake yet. Shown, never fatal."""
    from moestats_dagster.lakehouse.lake import connect
    from moestats_dagster.lakehouse.ledger import months_reconciled

    if not lake.exists:
        return None
    try:
        conn = connect(lake, read_only=True)
    except Exception as exc:  # the lake's own line says what is wrong with it
        return f"Reconciliation with MoEngage: – lake not readable ({said(exc, 200)})"
    parts = []
    try:
        for ws in workspace_ids:
            try:
                months = months_reconciled(conn, ws)
            except duckdb.CatalogException:  # a lake of the release before: no table yet
                months = []
            differing = [f"{m.month:%Y-%m} differs ({m.statuses})" for m in months if m.differing]
            matching = [m.month for m in months if not m.differing]
            said_ws = f"matches to {max(matching):%Y-%m}" if matching else "not reconciled yet"
            parts.append(f"{ws} {said_ws}" + (f", {', '.join(differing)}" if differing else ""))
    finally:
        conn.close()
    return "Reconciliation with MoEngage (moestats reconcile): " + "; ".join(parts)


def lake_storage(lake) -> tuple[str | None, bool]:
    """For a lake on object storage, one line saying whether the bucket is reachable and writable
    (a small probe object, `<lake>/doctor/write-probe.parquet`, written and read back; the same
    name each time, so nothing accumulates). None for a local folder."""
    from moestats_dagster.lakehouse import object_store
    from moestats_dagster.lakehouse.engine import connection_config
    from moestats_dagster.lakehouse.lake import sql_string

    if not lake.remote:
        return None, True
    where = lake.data_path.removesuffix("files/")
    probe = f"{where}doctor/write-probe.parquet"
    head = f"Object storage: {where} ({object_store.describe_credentials()})"
    conn = duckdb.connect(":memory:", config=connection_config())
    try:
        object_store.configure(conn, where)
        conn.execute(
            f"COPY (SELECT 'moestats doctor' AS probe) TO {sql_string(probe)} (FORMAT parquet)"
        )
        [(rows,)] = conn.execute("SELECT count(*) FROM read_parquet(?)", [probe]).fetchall()
    except (duckdb.Error, object_store.ObjectStoreError) as exc:
        explained = object_store.explain(where, exc) or exc
        return f"{head}: ✗ {said(explained, 400)}", False
    finally:
        conn.close()
    return f"{head}: ✓ reachable and writable (wrote and read back {rows} row)", rows == 1
