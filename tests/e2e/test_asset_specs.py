"""One snapshot of every asset's spec: partitions, checks, automation, op tags, owners, kinds and group.

A change to any of them (a pod size, a blocking flag, an owner, a new check) shows up as a diff of
tests/e2e/asset_specs.json. Review the diff; to accept it, rerun with MMRECIPE_UPDATE_SNAPSHOTS=1.
"""

import json
import os
from pathlib import Path

import dagster as dg

from mmrecipe.settings import Settings

SNAPSHOT = Path(__file__).with_name("asset_specs.json")


def condition(cond: dg.AutomationCondition | None) -> str | None:
    """An automation condition as text: its label, or its operator over its children's text."""
    if cond is None:
        return None
    children = [condition(c) for c in cond.children]
    return cond.get_label() or f"{cond.name}({', '.join(c or '' for c in children)})"


def tag_value(value: str) -> object:
    """Op tags as Dagster stores them; JSON tags (dagster-k8s/config) parsed so diffs are readable."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def asset_specs(defs: dg.Definitions) -> dict[str, dict]:
    """Every asset's spec in the code location, as plain JSON values."""
    graph = defs.resolve_asset_graph()
    out = {}
    for key in sorted(graph.get_all_asset_keys()):
        node = graph.get(key)
        assets_def = node.assets_def
        partitions = node.partitions_def
        out[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": None
            if partitions is None
            else f"{type(partitions).__name__}:{getattr(partitions, 'name', None) or ''}",
            "checks": {
                k.name: "blocking" if graph.get_check_spec(k).blocking else "non-blocking"
                for k in sorted(graph.get_check_keys_for_assets({key}), key=lambda k: k.name)
            },
            "automation_condition": condition(node.automation_condition),
            "owners": list(node.owners),
            "kinds": sorted(assets_def.specs_by_key[key].kinds),
            "op_tags": {k: tag_value(v) for k, v in sorted(assets_def.op.tags.items())}
            if assets_def.is_executable
            else {},
            "code_version": node.code_version,
        }
    return out


def test_every_asset_spec_matches_the_snapshot(settings: Settings) -> None:
    from data_assets.definitions import build_defs

    specs = asset_specs(build_defs(settings))
    if os.environ.get("MMRECIPE_UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(json.dumps(specs, indent=2, sort_keys=True) + "\n")
    assert SNAPSHOT.exists(), f"no snapshot at {SNAPSHOT}: rerun with MMRECIPE_UPDATE_SNAPSHOTS=1 and commit it"
    assert specs == json.loads(SNAPSHOT.read_text()), "asset specs changed: review, then MMRECIPE_UPDATE_SNAPSHOTS=1"
