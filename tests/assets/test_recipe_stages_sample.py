"""The bundled sample drops through every drop stage, both shipped recipes, release and the leaderboard."""

import json
from pathlib import Path

import dagster as dg
import pyarrow.compute as pc
import pytest

from mmrecipe.lineage import explain
from mmrecipe.mixture.build import read_summary
from mmrecipe.mixture.checks import mixture_texts
from mmrecipe.mixture.manifest import read_manifest
from mmrecipe.settings import Settings
from mmrecipe.storage import Storage
from tests.conftest import SAMPLE_DROPS, land_drop, metadata_of

REPO = Path(__file__).resolve().parents[2]
DROPS = ("sample-a", "sample-b")
RECIPES = ("default", "english_hq")
TINY_EVAL = {"seeds": [0, 1], "train_tokens": 1024, "batch_size": 4, "context": 32, "d_model": 32, "n_layer": 1}
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SAMPLE_DROPS.is_dir(), reason="samples/drops is not in this checkout"),
]


def planted(kind: str) -> list[dict]:
    cases = json.loads((REPO / "samples" / "reference" / "planted.json").read_text())["cases"]
    return [c for c in cases if c["kind"] == kind]


def test_sample_drops_to_released_mixtures_and_a_leaderboard(
    settings: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    from data_assets.definitions import build_defs

    monkeypatch.setenv("MMRECIPE_EXECUTOR", "in_process")
    defs = build_defs(Settings.from_env())
    drop_job = defs.resolve_job_def("drop_stages_job")
    for drop in DROPS:
        land_drop(settings, drop, src=SAMPLE_DROPS / drop)
        instance.add_dynamic_partitions("drops", [drop])
        raw = drop_job.execute_in_process(
            instance=instance, partition_key=drop, asset_selection=[dg.AssetKey("raw_crawl")]
        )
        assert raw.success
    global_job = defs.get_implicit_global_asset_job_def()
    assert global_job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("quality_classifier")]).success
    for drop in DROPS:
        assert drop_job.execute_in_process(instance=instance, partition_key=drop).success

    lake = Storage(settings.lake)
    recipe_job = defs.resolve_job_def("recipe_stages_job")
    for recipe in RECIPES:
        run_config = {"ops": {"eval_results": {"config": TINY_EVAL}}}
        result = recipe_job.execute_in_process(instance=instance, partition_key=recipe, run_config=run_config)
        assert result.success
        assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {
            "token_shares_within_tolerance": True,
            "decontaminated": True,
            "manifest_resolves_to_raw_crawl": True,
            "complete_and_current": True,
        }
        assert metadata_of(result, "release")["version"].startswith("v-")
        summary = read_summary(lake, recipe)
        assert {i["drop"] for i in summary["inputs"]} == set(DROPS)
        manifest = read_manifest(lake, recipe)
        urls = set(manifest["url"].to_pylist())
        for case in planted("noai"):  # the opted-out page and its image never enter a mixture
            assert case["url"] not in urls and not set(case["image_urls"]) & urls
        texts = "\n".join(text for _, text in mixture_texts(lake, recipe))
        for case in planted("pii"):  # every planted PII value was redacted upstream
            assert case["values"] and not [v for v in case["values"].values() if v in texts]
        doc = manifest.filter(pc.equal(manifest["stage"], "extracted_text")).to_pylist()[0]
        lineage = explain(lake, doc["doc_id"], landing=Storage(settings.landing))
        assert lineage.warc_headers["WARC-Target-URI"].strip("<>") == doc["url"] and lineage.payload_sha256_matches

    english = read_manifest(lake, "english_hq")
    assert set(english["source"].to_pylist()) <= {"web_en_hq", "speech"}
    board = global_job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("leaderboard")])
    meta = metadata_of(board, "leaderboard")
    assert meta["recipes"] == "default, english_hq"
    for eval_set in ("en_docs", "de_reference", "fr_reference", "average"):
        assert eval_set in meta["leaderboard"]
    assert meta["leaderboard"].count(" ± ") >= 8  # 2 recipes x 4 columns, each mean ± seed std
