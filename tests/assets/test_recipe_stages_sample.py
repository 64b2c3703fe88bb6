"""The bundled sample drops through every drop stage, both shipped recipes, release and the leaderboard.

The graph runs once per session (`sample_demo`, shared with tests/e2e/test_demo.py); this file asserts on the
runs, checks and tables it left in its instance and lake.
"""

import json

import dagster as dg
import pyarrow.compute as pc
import pytest

from mmrecipe.lineage import explain
from mmrecipe.mixture.build import read_summary
from mmrecipe.mixture.checks import mixture_texts
from mmrecipe.mixture.manifest import read_manifest
from mmrecipe.storage import Storage
from tests.conftest import REPO, SampleDemo, check_evaluations, last_run_events, materialization_metadata

DROPS = ("sample-a", "sample-b")
RECIPES = ("default", "english_hq")
pytestmark = pytest.mark.slow


def planted(kind: str) -> list[dict]:
    cases = json.loads((REPO / "samples" / "reference" / "planted.json").read_text())["cases"]
    return [c for c in cases if c["kind"] == kind]


def test_sample_drops_to_released_mixtures_and_a_leaderboard(
    sample_demo: SampleDemo, sample_instance: dg.DagsterInstance
) -> None:
    settings = sample_demo.settings
    for drop in DROPS:
        events = last_run_events(sample_instance, "drop_stages_job", drop)
        assert {e.asset_materialization.asset_key.to_user_string() for e in events if e.asset_materialization} >= {
            "extracted_text", "deduped_images", "transcribed_audio"}  # fmt: skip
    lake = Storage(settings.lake)
    for recipe in RECIPES:
        events = last_run_events(sample_instance, "recipe_stages_job", recipe)
        checks = check_evaluations(events)
        assert {name: c.passed for name, c in checks.items()} == {
            "token_shares_within_tolerance": True,
            "decontaminated": True,
            "manifest_resolves_to_raw_crawl": True,
            "complete_and_current": True,
        }
        assert materialization_metadata(events, "release")["version"].startswith("v-")
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
    board = sample_instance.fetch_materializations(dg.AssetKey("leaderboard"), limit=1).records[0]
    meta = {k: getattr(v, "value", v) for k, v in board.asset_materialization.metadata.items()}
    assert meta["recipes"] == "default, english_hq"
    for eval_set in ("en_docs", "de_reference", "fr_reference", "average"):
        assert eval_set in meta["leaderboard"]
    assert meta["leaderboard"].count(" ± ") >= 8  # 2 recipes x 4 columns, each mean ± seed std
