"""Recipe diff: documents only in one mixture by source, language and drop; shares; the recipe changes behind them."""

from pathlib import Path

import pytest
from test_mixture_helpers import build_lake, eval_text, recipe_text

from mmrecipe.mixture.build import build_mixture
from mmrecipe.mixture.diff import diff_mixtures
from mmrecipe.mixture.manifest import read_manifest
from mmrecipe.recipe import parse_recipe
from mmrecipe.storage import Storage


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Storage:
    lake, _ = build_lake(tmp_path_factory.mktemp("diff"), ["d1", "d2"])
    evals = {"held_out": eval_text(800)}
    build_mixture(lake, parse_recipe(recipe_text(total=8000), "/r/base.yaml"), ["d1", "d2"], evals)
    strict = recipe_text(total=8000, w_web=0.9, w_cap=0.1, w_speech=0.0001).replace(
        "min_quality_percentile: 30", "min_quality_percentile: 80"
    )
    build_mixture(lake, parse_recipe(strict, "/r/strict.yaml"), ["d1", "d2"], evals)
    return lake


def test_diff_counts_every_document_only_in_one_side(lake: Storage) -> None:
    diff = diff_mixtures(lake, "base", "strict", known=["base", "strict"])
    keys = {
        r: {(x["stage"], x["record_id"]) for x in read_manifest(lake, r, ["stage", "record_id"]).to_pylist()}
        for r in ("base", "strict")
    }
    assert diff.shared_docs == len(keys["base"] & keys["strict"])
    assert diff.only_docs == {"base": len(keys["base"] - keys["strict"]), "strict": len(keys["strict"] - keys["base"])}
    assert diff.only_docs["base"] > 0  # the stricter quality cut leaves web pages out
    for side in ("base", "strict"):
        assert sum(r["documents"] for r in diff.only[side]) == diff.only_docs[side]
    web = [r for r in diff.only["base"] if r["source"] == "web_en"]
    assert web and {r["language"] for r in web} == {"en"} and {r["drop"] for r in web} <= {"d1", "d2"}
    assert len(diff.samples["base"]) == min(3, diff.only_docs["base"])
    assert all(s["doc_id"].startswith("base:") and s["text"] for s in diff.samples["base"])


def test_diff_names_the_recipe_changes_and_shares(lake: Storage) -> None:
    diff = diff_mixtures(lake, "base", "strict")
    assert "source web_en: filter min_quality_percentile 30.0 -> 80.0" in diff.changes
    assert "source web_en: weight 0.8 -> 0.9" in diff.changes and "source speech: weight 0.1 -> 0.0001" in diff.changes
    assert not any(c.startswith("seed") or c.startswith("total_tokens") for c in diff.changes)
    shares = {r["source"]: r for r in diff.shares}
    assert set(shares) == {"web_en", "captions", "speech"}
    assert shares["speech"]["strict"] < shares["speech"]["base"]
    md = diff.markdown()
    assert "## mixture[base] vs mixture[strict]" in md and "### Only in base, by source, language and drop" in md
    assert "| web_en | en | d" in md


def test_unknown_recipe_and_unbuilt_mixture_say_what_to_do(lake: Storage, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown recipe 'nope': recipes are \['base', 'strict'\]"):
        diff_mixtures(lake, "base", "nope", known=["base", "strict"])
    with pytest.raises(FileNotFoundError, match=r"mixture\[ghost\] is not built .*: materialize mixture\[ghost\]"):
        diff_mixtures(lake, "base", "ghost", known=["base", "ghost"])
