"""Evaluation results of a recipe: proxy models trained on its mixture for N seeds, scored on its eval sets.

Writes `<lake>/eval_results/<recipe>/`:
    results.parquet      one row per (seed, eval set): bits per byte, NLL bits, bytes, tokens, tokens seen, wall time
    loss_curves.parquet  one row per logged step and seed: tokens seen, train loss, learning rate
    loss_curve.png       the loss curves, one line per seed (drawn by the `plot` the caller passes)
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from mmrecipe.mixture.build import read_summary
from mmrecipe.mixture.checks import Verdict
from mmrecipe.mixture.manifest import EVALSETS_DIR, MIXTURE_ASSET, TOKENS_DIR, mixture_uri
from mmrecipe.mixture.token_shards import load_token_stream, load_tokenizer
from mmrecipe.proxy_eval.bits_per_byte import bits_per_byte
from mmrecipe.proxy_eval.model import ModelConfig
from mmrecipe.proxy_eval.training import TrainConfig, TrainResult, train
from mmrecipe.storage import Storage

EVAL_ASSET = "eval_results"
RESULTS_SCHEMA = pa.schema(
    [
        pa.field("recipe", pa.string(), nullable=False),
        pa.field("mixture_version", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("bpb", pa.float64(), nullable=False),
        pa.field("nll_bits", pa.float64(), nullable=False),
        pa.field("utf8_bytes", pa.int64(), nullable=False),
        pa.field("eval_tokens", pa.int64(), nullable=False),
        pa.field("tokens_seen", pa.int64(), nullable=False),
        pa.field("steps", pa.int64(), nullable=False),
        pa.field("final_train_loss", pa.float64(), nullable=False),
        pa.field("wall_s", pa.float64(), nullable=False),
        pa.field("device", pa.string(), nullable=False),
        pa.field("eval_config", pa.string(), nullable=False),  # the preset's name (mmrecipe.proxy_eval.presets)
    ]
)
CURVE_SCHEMA = pa.schema(
    [
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("step", pa.int64(), nullable=False),
        pa.field("tokens_seen", pa.int64(), nullable=False),
        pa.field("loss", pa.float64(), nullable=False),
        pa.field("lr", pa.float64(), nullable=False),
    ]
)


@dataclass
class EvalOutput:
    """What evaluating a recipe produced."""

    results: pa.Table
    curves: pa.Table
    runs: list[TrainResult]
    loss_png: bytes
    results_uri: str
    curves_uri: str
    png_uri: str
    mixture_version: str
    parameters: int


def results_uri(storage: Storage, recipe: str) -> str:
    """Where a recipe's eval results table lives."""
    return storage.uri(EVAL_ASSET, recipe, "results.parquet")


def evaluate_recipe(
    storage: Storage,
    recipe: str,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    seeds: Sequence[int],
    recipes_dir: str | None = None,
    eval_config: str = "custom",
    plot: Callable[[pa.Table, str], bytes] | None = None,
) -> EvalOutput:
    """Train one proxy model per seed on the recipe's mixture and score each on the mixture's eval sets."""
    if not seeds:
        raise ValueError("at least one seed is needed to evaluate a recipe")
    summary = read_summary(storage, recipe)
    tok = load_tokenizer(str(summary["tokenizer"]), base_dir=recipes_dir)
    if tok.fingerprint != summary["tokenizer_fingerprint"]:
        raise ValueError(
            f"mixture[{recipe}] was tokenized with {summary['tokenizer_fingerprint']} but {summary['tokenizer']} "
            f"now loads as {tok.fingerprint}: rebuild the mixture"
        )
    model_cfg = ModelConfig(**{**model_cfg.__dict__, "vocab_size": tok.vocab_size})
    eval_texts = {
        name: storage.read_bytes(mixture_uri(storage, recipe, EVALSETS_DIR, f"{name}.txt")).decode("utf-8")
        for name in sorted(summary["eval_sets"])
    }
    workdir = tempfile.mkdtemp(prefix="mmrecipe-eval-")
    try:
        stream = load_token_stream(storage, f"{MIXTURE_ASSET}/{recipe}/{TOKENS_DIR}", workdir)
        rows, curve_rows, runs = [], [], []
        for seed in seeds:
            run = train(stream, model_cfg, train_cfg, seed)
            assert run.model is not None
            for name, text in eval_texts.items():
                score = bits_per_byte(run.model, tok, text)
                rows.append(
                    {
                        "recipe": recipe,
                        "mixture_version": summary["version"],
                        "seed": seed,
                        "eval_set": name,
                        "bpb": score.bpb,
                        "nll_bits": score.nll_bits,
                        "utf8_bytes": score.utf8_bytes,
                        "eval_tokens": score.tokens,
                        "tokens_seen": run.tokens_seen,
                        "steps": run.steps,
                        "final_train_loss": run.final_loss,
                        "wall_s": round(run.wall_s, 3),
                        "device": run.device,
                        "eval_config": eval_config,
                    }
                )
            curve_rows += [{"seed": seed, **{k: v for k, v in p.items()}} for p in run.curve]
            parameters = run.model.num_parameters()
            run.model = None  # free the weights; only the scores are kept
            runs.append(run)
        del stream
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)
    curves = pa.Table.from_pylist(curve_rows, schema=CURVE_SCHEMA)
    png = plot(curves, f"proxy model on mixture[{recipe}]") if plot else b""
    out_results = results_uri(storage, recipe)
    out_curves = storage.uri(EVAL_ASSET, recipe, "loss_curves.parquet")
    out_png = storage.uri(EVAL_ASSET, recipe, "loss_curve.png")
    storage.write_table(out_curves, curves)
    if png:
        storage.write_bytes(out_png, png)
    storage.write_table(out_results, results)  # written last: the leaderboard reads this one
    return EvalOutput(results, curves, runs, png, out_results, out_curves, out_png, summary["version"], parameters)


def read_all_results(storage: Storage, recipes: Sequence[str]) -> pa.Table:
    """The eval results of every recipe in `recipes` that has them, concatenated."""
    tables = [
        storage.read_table(results_uri(storage, r)) for r in sorted(recipes) if storage.exists(results_uri(storage, r))
    ]
    return pa.concat_tables(tables, promote_options="default") if tables else RESULTS_SCHEMA.empty_table()


def eval_results_verdict(storage: Storage, recipe: str) -> Verdict:
    """Whether a recipe's eval results are complete, finite, learned something, and match the current mixture."""
    table = storage.read_table(results_uri(storage, recipe)).to_pylist()
    curves = storage.read_table(storage.uri(EVAL_ASSET, recipe, "loss_curves.parquet")).to_pylist()
    version = read_summary(storage, recipe)["version"]
    seeds = sorted({r["seed"] for r in table})
    sets = sorted({r["eval_set"] for r in table})
    problems = []
    if len(table) != len(seeds) * len(sets) or not table:
        problems.append(f"{len(table)} result rows for {len(seeds)} seeds x {len(sets)} eval sets")
    problems += [
        f"seed {r['seed']} {r['eval_set']}: bits per byte {r['bpb']}"
        for r in table
        if not (math.isfinite(r["bpb"]) and r["bpb"] > 0)
    ]
    for seed in seeds:
        losses = [c["loss"] for c in curves if c["seed"] == seed]
        if len(losses) < 2 or not losses[-1] < losses[0]:
            problems.append(f"seed {seed}: training loss did not fall ({losses[:1]} -> {losses[-1:]})")
    stale = sorted({r["mixture_version"] for r in table} - {version})
    if stale:
        problems.append(f"results are for mixture version(s) {stale}, the mixture is now {version}: re-evaluate")
    description = (
        f"{len(seeds)} seeds x {len(sets)} eval sets, finite bits per byte, falling loss, mixture {version}"
        if not problems
        else "; ".join(problems[:5])
    )
    return Verdict(
        not problems, description, {"mixture_version": version, "seeds": len(seeds), "problems": len(problems)}
    )
