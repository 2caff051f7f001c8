"""The public contract of the definitions, as a reviewed diff: asset keys and their groups and
partitions, checks per asset, jobs, schedules, sensors and resource keys — for the bundled
settings, and for a component with a key prefix. A change to any of them fails this test until
the snapshot is written again on purpose and reviewed with the change:

    MOESTATS_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest moestats_dagster_tests/test_definitions_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from dagster.components.testing.utils import component_defs

from moestats_dagster.config import load_settings
from moestats_dagster.orchestration.build import build_definitions
from moestats_dagster.orchestration.component import MoEngageStats

SNAPSHOT = Path(__file__).parent / "__snapshots__" / "definitions.json"
BUNDLED = Path(__file__).resolve().parents[1] / "moestats_dagster" / "defaults" / "workspaces.yaml"


def describe(defs) -> dict:
    """What a user of the definitions relies on, in a stable order (no dates, no paths)."""
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": _partitions(partitions),
            "deps": sorted(d.to_user_string() for d in node.parent_keys),
            "checks": sorted(c.name for c in node.check_keys),
        }
    return {
        "assets": assets,
        "jobs": sorted(
            j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")
        ),  # fmt: skip
        "schedules": sorted(s.name for s in defs.schedules or []),
        "sensors": sorted(s.name for s in defs.sensors or []),
        "resources": sorted(defs.resources or {}),
    }


def _partitions(partitions) -> object:
    """A partitions definition as its kind and dimensions (a static one with its keys)."""
    if partitions is None:
        return None
    if hasattr(partitions, "partitions_defs"):  # multi: each dimension
        return {d.name: _partitions(d.partitions_def) for d in partitions.partitions_defs}
    kind = type(partitions).__name__
    if kind == "StaticPartitionsDefinition":
        return {kind: list(partitions.get_partition_keys())}
    return kind


def current() -> dict:
    settings = load_settings(BUNDLED)
    attributes = yaml.safe_load(BUNDLED.read_text())
    # The component as a team's defs.yaml would give it, built in process (Dagster's helper).
    component = MoEngageStats(
        **attributes, key_prefix=["marketing", "moestats"], group="marketing_moestats"
    )
    return {
        "bundled": describe(build_definitions(settings, database="data/lake")),
        "component with prefix marketing/moestats": describe(component_defs(component=component)),
    }


def test_the_definitions_are_the_reviewed_snapshot():
    found = current()
    if os.environ.get("MOESTATS_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"snapshot written: {SNAPSHOT}; review its diff with the change")
    expected = json.loads(SNAPSHOT.read_text())
    assert found == expected, (
        "the definitions changed (keys, checks, jobs, schedules, sensors, resources or "
        "partitions): if on purpose, write the snapshot again (see this file's docstring) and "
        "review its diff"
    )
