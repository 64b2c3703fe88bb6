"""`mmrecipe build RECIPE` and `mmrecipe explain DOC_ID` on a persistent instance over real WARC-backed drops."""

from pathlib import Path

import pyarrow.compute as pc
import pytest
from click.testing import CliRunner

from data_assets.cli import _instance, main
from mmrecipe.mixture.manifest import read_manifest
from mmrecipe.settings import Settings
from mmrecipe.storage import Storage
from tests.assets.test_recipe_stages import recipe_env  # noqa: F401 - the fixture

pytestmark = pytest.mark.slow  # whole graph through the CLI


def test_build_then_explain_a_document(recipe_env: Settings) -> None:  # noqa: F811
    _instance(recipe_env).add_dynamic_partitions("drops", ["d1", "d2"])
    runner = CliRunner()
    built = runner.invoke(main, ["build", "default", "--seeds", "0,1", "--train-tokens", "8192"])
    assert built.exit_code == 0, built.output
    assert "build default: ok" in built.output
    assert "mixture[default] version " in built.output and "decontamination: worst 13-gram overlap" in built.output
    assert "bits per byte held_out" in built.output and " ± " in built.output
    assert f"release: {recipe_env.lake}/releases/default/v-" in built.output
    assert "leaderboard: ok" in built.output  # build refreshes the leaderboard
    board = (Path(recipe_env.lake) / "leaderboard" / "leaderboard.md").read_text()
    assert "- eval config full (changed: seeds, train_tokens) (default): 2 seeds x 2 learning rates" in board

    manifest = read_manifest(Storage(recipe_env.lake), "default")
    row = manifest.filter(pc.equal(manifest["source"], "web_en")).to_pylist()[0]
    explained = runner.invoke(main, ["explain", row["doc_id"]])
    assert explained.exit_code == 0, explained.output
    out = explained.output
    assert f"document {row['doc_id']}" in out and f"3. extracted_text[{row['drop']}]" in out
    assert f"WARC-Target-URI: {row['url']}" in out and f"offset {row['warc_offset']}" in out
    assert "HTTP 200" in out and "sha256 matches the raw_crawl index" in out

    unknown = runner.invoke(main, ["explain", "default:web_en:000000000000000000000000"])
    assert unknown.exit_code == 1 and "is not in the mixture of recipe 'default'" in unknown.output

    # a valid recipe whose run fails (its eval set is missing): the step is named, the earlier report is not shown
    recipe = Path(recipe_env.recipes_dir) / "default.yaml"
    recipe.write_text(recipe.read_text().replace("eval_sets: [held_out]", "eval_sets: [held_out, missing_set]"))
    failed = runner.invoke(main, ["build", "default", "--seeds", "0,1", "--train-tokens", "8192"])
    assert failed.exit_code == 1
    assert "build default: FAILED" in failed.stdout and "step FAILED: mixture" in failed.stderr
    assert "mixture[default] version " not in failed.output and "release: " not in failed.output
