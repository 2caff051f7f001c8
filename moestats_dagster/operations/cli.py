"""The `moestats` command: `moestats sandbox`, `demo`, `backfill`, `doctor`, `lake upgrade`, `query`,
`schema`, `dbt sources`."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import sys
from collections.abc import Sequence
from pathlib import Path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _port(text: str) -> int:
    value = _positive_int(text) if text != "0" else 0
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (0-65535)")
    return value


def _sandbox(args: argparse.Namespace) -> int:
    from moestats_dagster.sandbox import DEFAULT_WORKSPACES, Faults, SandboxApp, SandboxServer
    from moestats_dagster.sandbox.app import SandboxWorkspace

    workspaces = [
        SandboxWorkspace(**{**w.__dict__, "rate_limit": args.rate_limit})
        for w in DEFAULT_WORKSPACES
    ]
    faults = Faults(
        latency_seconds=args.latency, pagination=args.pagination, defects=set(args.defect)
    )
    app = SandboxApp(workspaces, window_seconds=args.window_seconds, faults=faults)
    server = SandboxServer(app, host=args.host, port=args.port)
    print(f"MoEngage sandbox on {server.url} (Ctrl-C to stop). Workspaces and keys:")
    for w in workspaces:
        access = "" if w.stats_access else "  (no Stats API access: 403)"
        print(f"  {w.workspace_id}: {w.api_key}{access}")
    sys.stdout.flush()
    # SIGTERM stops it like Ctrl-C (docker stop, systemd, a test harness), also when the parent
    # ignores SIGTERM: a child inherits an ignored signal and would otherwise never stop.
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _demo(args: argparse.Namespace) -> int:
    from moestats_dagster.operations.demo import run_demo

    return run_demo(args.days, args.workspace or None)


def _date(text: str):
    import datetime as dt

    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date as YYYY-MM-DD") from None


def _backfill(args: argparse.Namespace) -> int:
    from moestats_dagster.operations.demo import run_history

    return run_history(args.first, args.last, args.workspace or None, yes=args.yes)


def _query(args: argparse.Namespace) -> int:
    from moestats_dagster.lakehouse.query import run_query

    print(run_query(args.sql, as_json=args.json))
    return 0


def _reconcile(args: argparse.Namespace) -> int:
    from moestats_dagster.operations.reconcile import month_of, run

    return run(args.workspace, month_of(args.month) if args.month else None, args.heal)


def _lake_upgrade(args: argparse.Namespace) -> int:
    from moestats_dagster.lakehouse.lake import Lake, lake_path
    from moestats_dagster.lakehouse.upgrade import UpgradeError, upgrade

    lake = Lake.from_env(args.lake or lake_path())
    try:
        done = upgrade(lake, say=lambda line: print(line, flush=True), wait_seconds=args.wait)
    except UpgradeError as exc:
        print(f"moestats lake upgrade: {exc}", file=sys.stderr)
        return 1
    print("\n".join(done.lines()))
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from moestats_dagster.config import load_settings, rate_window
    from moestats_dagster.lakehouse.lake import Lake, lake_path
    from moestats_dagster.lakehouse.object_store import ObjectStoreError
    from moestats_dagster.orchestration.lib.doctor import (
        diagnose,
        lake_storage,
        lake_versions,
        reconciled,
        render,
        verdict,
    )
    from moestats_dagster.orchestration.lib.resources import MoEngageResource

    settings = load_settings()
    known = [ws.id for ws in settings.workspaces]
    unknown = [w for w in args.workspace or [] if w not in known]
    if unknown:
        raise ValueError(f"unknown workspace(s) {unknown}; {settings.source} configures {known}")
    resource = MoEngageResource.for_settings(settings, window_seconds=rate_window())
    print(f"Workspaces file: {settings.source}")
    try:
        lake = Lake.from_env(lake_path())
    except ObjectStoreError as exc:
        lake, lake_ok = None, False
        print(f"Warehouse: ✗ {exc}")
    if lake is not None:
        versions, lake_ok = lake_versions(lake)
        print(versions)
        storage, storage_ok = lake_storage(lake)
        if storage is not None:
            print(storage)
        lake_ok = lake_ok and storage_ok
        proof = reconciled(lake, args.workspace or known) if lake_ok else None
        if proof is not None:
            print(proof)
    findings = diagnose(resource, args.workspace or None)
    print(render(findings))
    said, bad = verdict(findings, lake_ok)
    print("\n" + said)
    return 1 if bad else 0


BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"


def schema_markdown() -> str:
    from moestats_dagster.model.schemas import TABLES, VIEWS

    return "\n\n".join(t.markdown() for t in (*TABLES.values(), *VIEWS.values()))


def _schema(args: argparse.Namespace) -> int:
    if not args.write_readme:
        print(schema_markdown())
        return 0
    text = args.write_readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{args.write_readme} has no {BEGIN} ... {END} section to fill")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    args.write_readme.write_text(f"{head}{BEGIN}\n{schema_markdown()}\n{END}{tail}")
    return 0


def _key_prefix(text: str) -> tuple[str, ...]:
    parts = tuple(text.split("/"))
    if not all(re.fullmatch(r"[A-Za-z0-9_]+", part) for part in parts):
        raise argparse.ArgumentTypeError(
            f"{text[:60]!r}: write the asset key prefix as names of letters, digits and '_' "
            "joined by '/', e.g. marketing/moestats (the component's key_prefix)"
        )
    return parts


def _dbt_sources(args: argparse.Namespace) -> int:
    from moestats_dagster.orchestration.lib.dbt_sources import sources, sources_yaml
    from moestats_dagster.orchestration.lib.metadata import Naming

    naming = Naming(prefix=args.key_prefix)
    text = sources_yaml(naming)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    out: Path = args.out
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; name the file, e.g. {out}/moestats_sources.yml")
    if not out.parent.is_dir():
        raise ValueError(f"--out {out}: the folder {out.parent} does not exist")
    aside = out.with_name(f".{out.name}.tmp")
    aside.write_text(text)
    os.replace(aside, out)  # a dbt parse meanwhile reads the old file or the new, never half
    [source] = sources(naming)["sources"]
    print(f"wrote {out}: {len(source['tables'])} sources under asset keys "
          f"{'/'.join(args.key_prefix)}/...", file=sys.stderr)  # fmt: skip
    return 0


def _commands(sub, name: str, help: str):
    """A command with commands of its own (`moestats lake upgrade`, `moestats dbt sources`)."""
    return sub.add_parser(name, help=help).add_subparsers(dest=f"{name}_command", required=True)


def build_parser() -> argparse.ArgumentParser:
    from moestats_dagster.sandbox.app import PAGINATION_MODES
    from moestats_dagster.sandbox.defects import DEFECTS, META_DEFECTS

    parser = argparse.ArgumentParser(prog="moestats", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sb = sub.add_parser("sandbox", help="serve the MoEngage Stats API emulator in the foreground")
    sb.add_argument("--port", type=_port, default=8123, help="TCP port (0 = any free port)")
    sb.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    sb.add_argument("--rate-limit", type=_positive_int, default=100, help="calls per window")
    sb.add_argument("--window-seconds", type=float, default=60.0, help="rate-limit window")
    sb.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    sb.add_argument("--pagination", choices=PAGINATION_MODES, default="offset")
    sb.add_argument(
        "--defect", action="append", default=[], choices=sorted([*DEFECTS, *META_DEFECTS])
    )
    sb.set_defaults(func=_sandbox)

    dm = sub.add_parser(
        "demo", help="materialize the last days of every workspace through Dagster, offline"
    )
    dm.add_argument("--days", type=_positive_int, default=7, help="days back from yesterday")
    dm.add_argument("--workspace", action="append", help="only this workspace id (repeatable)")
    dm.set_defaults(func=_demo)

    bf = sub.add_parser(
        "backfill",
        help="load a range of days through Dagster (the UI's backfill), following it in a "
        "progress bar",
    )
    bf.add_argument("--from", dest="first", type=_date, required=True, help="first day")
    bf.add_argument("--to", dest="last", type=_date, required=True, help="last day (inclusive)")
    bf.add_argument("--workspace", action="append", help="only this workspace id (repeatable)")
    bf.add_argument(
        "--yes", action="store_true",
        help="launch more than 90 days of a workspace without asking (needed without a terminal)",
    )  # fmt: skip
    bf.set_defaults(func=_backfill)

    dr = sub.add_parser(
        "doctor",
        help="probe every workspace: host, credentials, Stats API, Campaign Meta, rate headers",
    )
    dr.add_argument("--workspace", action="append", help="only this workspace id (repeatable)")
    dr.set_defaults(func=_doctor)

    lake_sub = _commands(sub, "lake", "the lake itself: upgrade its catalog to this DuckDB")
    up = lake_sub.add_parser(
        "upgrade",
        help="move a lake written by DuckDB 1.4 (DuckLake format 0.3) to DuckLake 1.0: backup, "
        "migrate a copy, check every table, swap",
    )
    up.add_argument("--lake", help="the lake folder or s3:// prefix (default MOESTATS_LAKE_PATH)")
    up.add_argument("--wait", type=_positive_int, default=60, metavar="SECONDS",
                    help="how long to wait for runs publishing and lake maintenance to finish "
                    "(default 60); then it refuses, naming what holds the lake")  # fmt: skip
    up.set_defaults(func=_lake_upgrade)

    rc = sub.add_parser(
        "reconcile",
        help="compare the lake with MoEngage's range totals for a month and print what differs",
    )
    rc.add_argument("--workspace", action="append", help="a workspace id (repeatable; default all)")
    rc.add_argument("--month", help="YYYY-MM (default: the month of yesterday)")
    rc.add_argument("--heal", action="store_true",
                    help="fetch a differing month's days again, then reconcile once more")  # fmt: skip
    rc.set_defaults(func=_reconcile)

    qr = sub.add_parser("query", help="run SQL on the warehouse (read-only) and print the result")
    qr.add_argument("sql", help='e.g. "SELECT * FROM moestats.campaign_daily_summary LIMIT 5"')
    qr.add_argument("--json", action="store_true", help="print a JSON array of row objects")
    qr.set_defaults(func=_query)

    dbt_sub = _commands(sub, "dbt", "a dbt project on the lake (see examples/dbt_marketing)")
    src = dbt_sub.add_parser(
        "sources",
        help="write a dbt sources.yml for every table and view of the lake, each source "
        "carrying the Dagster asset key that writes it",
    )
    src.add_argument("--out", type=Path, help="the file to write (default: print it)")
    src.add_argument(
        "--key-prefix", type=_key_prefix, default=("moestats",),
        help="our assets' key prefix, as the component's key_prefix (default moestats)",
    )  # fmt: skip
    src.set_defaults(func=_dbt_sources)

    sc = sub.add_parser("schema", help="print the tables' columns as markdown (docs/tables.md's)")
    sc.add_argument(
        "--write-readme", type=Path, help="fill the tables section of this file (docs/tables.md)"
    )
    sc.set_defaults(func=_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import duckdb

    from moestats_dagster.config import WorkspacesFileError
    from moestats_dagster.lakehouse.lake import (
        CatalogTooNew,
        CatalogTooOld,
        LakeDamaged,
        WarehouseError,
        WarehouseNotFound,
    )
    from moestats_dagster.lakehouse.lake_locks import PostgresUnavailable, WarehouseBusy
    from moestats_dagster.messages import said

    try:
        return args.func(args)
    except KeyboardInterrupt:  # before anything was launched (a launched backfill says more)
        print(f"\nmoestats {args.command}: interrupted", file=sys.stderr)
        return 130
    except (WorkspacesFileError, ValueError, WarehouseNotFound) as exc:
        parser.exit(2, f"moestats {args.command}: error: {exc}\n")
    except (
        CatalogTooNew,
        CatalogTooOld,
        LakeDamaged,
        WarehouseError,
        WarehouseBusy,
        PostgresUnavailable,
    ) as exc:  # the lake as it is: said in one line, no traceback
        parser.exit(1, f"moestats {args.command}: {exc}\n")
    except duckdb.Error as exc:  # a query's own mistake: say it plainly, no traceback
        parser.exit(2, f"moestats {args.command}: error: {said(exc, 500)}\n")


if __name__ == "__main__":
    sys.exit(main())
