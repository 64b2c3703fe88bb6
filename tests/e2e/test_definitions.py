"""The code location: it validates, and holds the six partitioned stage assets, each with checks."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[2]
STAGES = ["raw_crawl", "extracted_text", "deduped_images", "transcribed_audio", "mixture", "eval_results"]


def test_six_partitioned_stages_each_with_a_check() -> None:
    from data_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(STAGES) <= keys
    for stage in STAGES:
        node = graph.get(dg.AssetKey(stage))
        assert node.partitions_def is not None, stage
        assert graph.get_check_keys_for_assets({node.key}), f"{stage} has no asset check"
    blocking = {k.asset_key.to_user_string() for k in graph.asset_check_keys if graph.get_check_spec(k).blocking}
    assert set(STAGES) <= blocking, f"stages without a blocking check: {set(STAGES) - blocking}"


@pytest.mark.slow  # `dagster definitions validate` in a subprocess
def test_dagster_definitions_validate(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MMRECIPE_", "DAGSTER_"))}
    env["MMRECIPE_HOME"] = str(tmp_path)
    dagster = str(Path(sys.executable).with_name("dagster"))
    out = subprocess.run(
        [dagster, "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "All code locations passed validation" in out.stdout + out.stderr
