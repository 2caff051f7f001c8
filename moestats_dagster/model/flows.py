"""Flows and their step campaigns as the lake keeps them: frames of what discovery found, and the
cache discovery reads back. Pure functions, no I/O, no Dagster."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from moestats_dagster.model.normalize import MalformedPayloadError
from moestats_dagster.model.schemas import FLOW_CAMPAIGNS, FLOWS
from moestats_dagster.moengage.flows import FlowStep, FlowSummary, FlowVersion, KnownFlow


def flow_frames(
    flows: Mapping[str, KnownFlow], *, workspace_id: str, fetched_at: dt.datetime
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of `moestats.flows`, rows of `moestats.flow_campaigns`) for a workspace."""
    now = fetched_at.astimezone(dt.UTC).replace(tzinfo=None)
    flow_cols: dict[str, list[Any]] = {n: [] for n in FLOWS.names}
    step_cols: dict[str, list[Any]] = {n: [] for n in FLOW_CAMPAIGNS.names}
    for flow_id, flow in sorted(flows.items()):
        s, read_at = flow.summary, _naive(flow.read_at) or now
        versions = [dataclasses.asdict(v) for v, _ in flow.versions.values()]
        row = {
            "workspace_id": workspace_id, "flow_id": flow_id, "flow_name": s.name,
            "status": s.status, "archived": s.archived, "delivery_type": s.delivery_type,
            "active_version_name": s.active_version_name, "versions": json.dumps(versions),
            "tags": json.dumps(list(s.tags)), "created_by": s.created_by,
            "listed": json.dumps(dataclasses.asdict(s), sort_keys=True), "fetched_at": read_at,
        }  # fmt: skip
        for name in ("created_at", "updated_at", "published_at"):
            row[name] = _utc(getattr(s, name), flow_id, name)
        for name, value in row.items():
            flow_cols[name].append(value)
        for version, steps in flow.versions.values():
            for index, step in enumerate(steps):
                values = {
                    "workspace_id": workspace_id, "flow_id": flow_id,
                    "version_id": version.version_id, "campaign_id": step.campaign_id,
                    "version_no": version.version_no, "version_name": version.version_name,
                    "version_status": version.status, "step_index": index,
                    "stage_id": step.stage_id, "label": step.label, "node_type": step.node_type,
                    "channel": step.channel, "campaign_name": step.campaign_name,
                    "fetched_at": read_at,
                }  # fmt: skip
                for name, value in values.items():
                    step_cols[name].append(value)
    return (
        FLOWS.frame(flow_cols, length=len(flow_cols["flow_id"])),
        FLOW_CAMPAIGNS.frame(step_cols, length=len(step_cols["flow_id"])),
    )


def known_flows(flows: pd.DataFrame, steps: pd.DataFrame) -> dict[str, KnownFlow]:
    """The cache as discovery reads it: each stored flow with the steps of its stored versions."""
    by_version: dict[tuple[str, str], list[FlowStep]] = {}
    ordered = steps.sort_values(["flow_id", "version_id", "step_index"])
    for row in ordered.itertuples(index=False):
        by_version.setdefault((row.flow_id, row.version_id), []).append(
            FlowStep(
                row.campaign_id,
                _none(row.channel),
                _none(row.campaign_name),
                _none(row.stage_id),
                _none(row.label),
                _none(row.node_type),
            )  # fmt: skip
        )
    known: dict[str, KnownFlow] = {}
    for row in flows.itertuples(index=False):
        listed = json.loads(row.listed)
        listed["tags"] = tuple(listed.get("tags") or ())
        flow = KnownFlow(FlowSummary(**listed), read_at=_aware(row.fetched_at))
        for version in json.loads(row.versions or "[]"):
            info = FlowVersion(**version)
            flow.versions[info.version_id] = (
                info,
                tuple(by_version.get((row.flow_id, info.version_id), ())),
            )
        known[row.flow_id] = flow
    return known


def _utc(value: str | None, flow_id: str, name: str) -> dt.datetime | None:
    """The Flows API's times are ISO, UTC ("2026-03-01T10:00:00.000Z")."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MalformedPayloadError(
            f"flow {flow_id}: {name} = {value[:60]!r} is not an ISO timestamp"
        ) from None
    return _naive(parsed)


def _naive(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _aware(value: Any) -> dt.datetime | None:
    if value is None or pd.isna(value):
        return None
    return pd.Timestamp(value).to_pydatetime().replace(tzinfo=dt.UTC)


def _none(value: Any) -> Any:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value
