"""The README's asset table matches the Definitions, and .ci/run runs the README's test command."""

import re
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def _readme_assets() -> dict[str, tuple[str, str]]:
    block = README.split("<!-- assets:start -->")[1].split("<!-- assets:end -->")[0]
    rows = [line.strip().strip("|").split("|") for line in block.strip().splitlines()[2:]]
    return {cells[0].strip(): (cells[1].strip(), cells[2].strip()) for cells in rows}


def test_readme_asset_table_matches_definitions() -> None:
    from data_assets.definitions import defs

    actual: dict[str, tuple[str, str]] = {}
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        partitions = node.partitions_def
        name = getattr(partitions, "name", None) or (
            "recipes" if isinstance(partitions, dg.StaticPartitionsDefinition) else ""
        )
        actual[key.to_user_string()] = (name or "-", node.group_name)
    assert _readme_assets() == actual


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"^make test\b", README, re.M)
    assert command, "the README names `make test` as the test command"
    assert "make test" in (REPO / ".ci" / "run").read_text().splitlines()
