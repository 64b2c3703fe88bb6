"""Source ablations: leave-one-source-out streams are slices of the mixture's own tokens, trained over the grid."""

import shutil
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest
from test_mixture_helpers import build_lake, eval_text, recipe_text

from mmrecipe.mixture import token_shards
from mmrecipe.mixture.build import build_mixture
from mmrecipe.mixture.manifest import read_manifest
from mmrecipe.mixture.token_shards import load_token_stream
from mmrecipe.proxy_eval.ablations import FULL, leave_one_out, run_ablations, source_spans, without
from mmrecipe.proxy_eval.evaluate import EvalPlan, Grid, eval_inputs, evaluate_recipe, train_grid
from mmrecipe.proxy_eval.model import ModelConfig
from mmrecipe.proxy_eval.training import TrainConfig
from mmrecipe.recipe import parse_recipe
from mmrecipe.storage import Storage

SOURCES = ["captions", "speech", "web_en"]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Storage:
    lake, _ = build_lake(tmp_path_factory.mktemp("ablations"), ["d1"])
    recipe = parse_recipe(recipe_text(total=6000, w_web=0.6, w_cap=0.2, w_speech=0.2), "/r/mix.yaml")
    build_mixture(lake, recipe, ["d1"], {"held_out": eval_text(1500)})
    return lake


def test_leave_one_out_streams_are_slices_of_the_mixture_tokens(lake: Storage, tmp_path: Path) -> None:
    spans = source_spans(lake, "mix")
    assert sorted(spans) == SOURCES
    stream = np.asarray(load_token_stream(lake, "mixture/mix/tokens", str(tmp_path)))
    manifest = read_manifest(lake, "mix", ["source", "tokens", "epochs"])
    for source in SOURCES:  # each source's spans hold its manifest tokens (+ one end-of-text per copy)
        rows = manifest.filter(pc.equal(manifest["source"], source)).to_pylist()
        assert int((spans[source][:, 1] - spans[source][:, 0]).sum()) == sum(
            r["epochs"] * (r["tokens"] + 1) for r in rows
        )
    variants = leave_one_out(stream, spans)
    assert sorted(variants) == [without(s) for s in SOURCES]
    for source in SOURCES:
        kept = [stream[a:b] for other in SOURCES if other != source for a, b in spans[other]]
        order = np.argsort([a for other in SOURCES if other != source for a, _ in spans[other]])
        assert np.array_equal(variants[without(source)], np.concatenate([kept[i] for i in order]))


@pytest.mark.slow  # 8 GPT-2-vocabulary proxy models
def test_ablations_train_every_variant_and_never_tokenize_again(lake: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("ablations tokenized mixture text again")

    monkeypatch.setattr(token_shards, "tokenize_texts", refuse)
    monkeypatch.setattr(token_shards.BpeTokenizer, "encode_batch", refuse)
    model = ModelConfig(context=32, d_model=32, n_layer=1, n_head=2)
    out = run_ablations(
        lake, "mix", EvalPlan(model, TrainConfig(train_tokens=256, batch_size=4), Grid((0, 1), (1e-2,)))
    )
    assert out.runs == 8 and out.train_wall_s > 0
    assert sorted(out.ranking.best_lr) == sorted([FULL, *(without(s) for s in SOURCES)])
    rows = out.effects.to_pylist()
    assert sorted((r["source"], r["eval_set"]) for r in rows) == [(s, "held_out") for s in SOURCES]
    for r in rows:
        pair = next(p for p in out.ranking.pairs if {p.better, p.worse} == {FULL, without(r["source"])})
        assert abs(r["effect_bpb"]) == pytest.approx(pair.delta)
        assert r["verdict"].startswith(("stable: ", "no difference (")) and r["stable"] is pair.stable
    assert lake.exists(out.effects_uri) and "## Source ablations of mix" in out.markdown
    assert lake.read_table(lake.uri("ablations", "mix", "results.parquet")).num_rows == 8


def test_a_mixture_with_one_source_cannot_be_ablated(tmp_path: Path) -> None:
    lake, _ = build_lake(tmp_path, ["d1"])
    one_source = recipe_text(total=3000).split("  - name: captions")[0]
    build_mixture(lake, parse_recipe(one_source, "/r/one.yaml"), ["d1"], {"held_out": eval_text(800)})
    with pytest.raises(ValueError, match=r"mixture\[one\] has 1 source\(s\) with documents: ablations need at least 2"):
        run_ablations(lake, "one", EvalPlan(ModelConfig(), TrainConfig(), Grid((0,), (1e-2,))))


@pytest.mark.slow  # 4 GPT-2-vocabulary proxy models
def test_ablations_of_chosen_sources_train_only_those_variants(lake: Storage) -> None:
    plan = EvalPlan(
        ModelConfig(context=32, d_model=16, n_layer=1, n_head=2), TrainConfig(256, 4), Grid((0, 1), (1e-2,))
    )
    out = run_ablations(lake, "mix", plan, sources=["speech"])
    assert out.runs == 4 and sorted(out.ranking.best_lr) == [FULL, without("speech")]
    assert [(r["source"], r["eval_set"]) for r in out.effects.to_pylist()] == [("speech", "held_out")]


def test_ablating_a_source_the_mixture_lacks_names_the_sources(lake: Storage) -> None:
    plan = EvalPlan(ModelConfig(), TrainConfig(), Grid((0,), (1e-2,)))
    with pytest.raises(
        ValueError, match=r"mixture\[mix\] has no documents from \['video'\]: ablate some of \['captions"
    ):
        run_ablations(lake, "mix", plan, sources=["speech", "video"])


@pytest.mark.slow  # 6 tiny GPT-2-vocabulary proxy models
def test_the_full_arm_reuses_the_runs_eval_results_trained_with_the_same_key(lake: Storage, tmp_path: Path) -> None:
    copy = Storage(str(shutil.copytree(lake.root, tmp_path / "lake")))
    model, train_cfg = ModelConfig(context=32, d_model=16, n_layer=1, n_head=2), TrainConfig(256, 4)
    evaluated = evaluate_recipe(copy, "mix", EvalPlan(model, train_cfg, Grid((0,), (1e-2,)), "one seed"))
    out = run_ablations(copy, "mix", EvalPlan(model, train_cfg, Grid((0, 1), (1e-2,)), "two seeds"), None, ["speech"])
    assert (out.runs, out.reused) == (4, 1)  # seed 1 and the variant without speech have other keys: trained
    results = copy.read_table(copy.uri("ablations", "mix", "results.parquet")).to_pylist()
    reused = [r for r in results if (r["recipe"], r["seed"]) == (FULL, 0)]
    figures = ["run_key", "seed", "lr", "eval_set", "bpb", "nll_bits", "tokens_seen", "final_train_loss", "wall_s"]
    assert [{k: r[k] for k in figures} for r in reused] == [
        {k: r[k] for k in figures} for r in evaluated.results.to_pylist()
    ]
    assert {r["eval_config"] for r in results} == {"two seeds"} and len({r["run_key"] for r in results}) == 4
    docs = copy.read_table(copy.uri("ablations", "mix", "doc_losses.parquet"))
    first = docs.filter((pc.field("recipe") == FULL) & (pc.field("seed") == 0)).drop_columns(["recipe"])
    assert first.equals(evaluated.grid.doc_losses.drop_columns(["recipe"]))
    # reuse is honest because a run is deterministic: training the same key again gives the same numbers
    _, tok, eval_docs = eval_inputs(copy, "mix", None)
    stream = load_token_stream(copy, "mixture/mix/tokens", str(tmp_path))
    labels = {"recipe": FULL, "mixture_version": reused[0]["mixture_version"]}
    again = train_grid(stream, tok, eval_docs, EvalPlan(model, train_cfg, Grid((0,), (1e-2,)), "two seeds"), labels)
    assert again.reused == 0 and len(again.runs) == 1
    assert [{k: r[k] for k in figures if k != "wall_s"} for r in again.results.to_pylist()] == [
        {k: r[k] for k in figures if k != "wall_s"} for r in reused
    ]
    assert again.doc_losses.drop_columns(["recipe"]).equals(first)
