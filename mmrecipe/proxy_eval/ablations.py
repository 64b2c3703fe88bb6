"""Source ablations of a recipe: leave-one-source-out variants of its mixture, trained over the eval grid.

A variant is the mixture's own token stream without one source's document copies: slices of the published
shards, located through `tokens/index.parquet` (shard, offset, token count of each copy), so nothing is
tokenized again. The remaining sources keep their relative shares; every run trains on the same token budget.
The full mixture is trained over the same grid, reusing every run the recipe's eval_results already trained with
the same run key (same stream, eval documents, model, training config, seed: `evaluate.PastRuns`). A source's
effect on an eval set is bpb(without the source) - bpb(full) at the best learning rates: positive means the
source helps that set.
Its verdict is the leaderboard's pair verdict (mmrecipe.proxy_eval.leaderboard: the same rules).

Writes `<lake>/ablations/<recipe>/`: results.parquet and doc_losses.parquet (eval_results' schemas; the
`recipe` column names the variant), effects.parquet (one row per source and eval set) and ablations.md.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from mmrecipe.mixture.manifest import MIXTURE_ASSET, TOKENS_DIR, parse_doc_id
from mmrecipe.mixture.token_shards import load_token_stream, read_token_index
from mmrecipe.proxy_eval.evaluate import EvalPlan, PastRuns, eval_inputs, train_grid
from mmrecipe.proxy_eval.leaderboard import Ranking, leaderboard_markdown, rank
from mmrecipe.proxy_eval.report import budget_header
from mmrecipe.stage_output import markdown_table
from mmrecipe.storage import Storage

ABLATIONS_ASSET = "ablations"
FULL = "full"
EFFECTS_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("source_tokens", pa.int64(), nullable=False),  # the source's tokens in the mixture's stream
        pa.field("effect_bpb", pa.float64(), nullable=False),  # bpb without the source - bpb of the full mixture
        pa.field("seed_noise", pa.float64(), nullable=False),
        pa.field("ci_low", pa.float64()),
        pa.field("ci_high", pa.float64()),
        pa.field("stable", pa.bool_(), nullable=False),
        pa.field("verdict", pa.string(), nullable=False),
    ]
)


def without(source: str) -> str:
    """The variant name of the mixture without `source`."""
    return f"without_{source}"


@dataclass
class Ablations:
    """A recipe's source ablations: the variants' ranking, each source's effect, the cost, and where they went."""

    ranking: Ranking
    effects: pa.Table
    markdown: str
    source_tokens: dict[str, int]
    runs: int  # every run of every variant, trained or reused
    reused: int  # runs of the full mixture taken from eval_results instead of trained again
    train_wall_s: float  # training time of the runs trained here
    effects_uri: str


def source_spans(storage: Storage, recipe: str) -> dict[str, np.ndarray]:
    """Per source, the [start, end) token spans of its document copies in the mixture's stream (rows of 2)."""
    prefix = f"{MIXTURE_ASSET}/{recipe}/{TOKENS_DIR}"
    header = read_token_index(storage, prefix)
    shard_start, at = {}, 0
    for shard in header["shards"]:  # type: ignore[union-attr]
        shard_start[shard["file"]], at = at, at + int(shard["tokens"])
    index = storage.read_table(storage.uri(prefix, "index.parquet"), ["doc_id", "shard", "token_offset", "token_count"])
    if sum(index["token_count"].to_pylist()) != at:
        raise ValueError(f"{prefix}/index.parquet does not cover the {at} tokens of its shards: rebuild the mixture")
    spans: dict[str, list[tuple[int, int]]] = {}
    for row in index.to_pylist():
        start = shard_start[row["shard"]] + row["token_offset"]
        spans.setdefault(parse_doc_id(row["doc_id"])[1], []).append((start, start + row["token_count"]))
    return {source: np.array(s, dtype=np.int64) for source, s in sorted(spans.items())}


def leave_one_out(stream: np.ndarray, spans: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The stream without each source's spans: slices of `stream` itself, nothing re-tokenized."""
    out = {}
    for source, own in spans.items():
        keep = np.ones(len(stream), dtype=bool)
        for start, end in own:
            keep[start:end] = False
        out[without(source)] = np.asarray(stream[keep])
        removed = int((own[:, 1] - own[:, 0]).sum())
        assert len(out[without(source)]) == len(stream) - removed, f"{source}: overlapping spans in the index"
    return out


def run_ablations(
    storage: Storage,
    recipe: str,
    plan: EvalPlan,
    recipes_dir: str | None = None,
    sources: Sequence[str] | None = None,
) -> Ablations:
    """Train the full mixture and each leave-one-source-out variant (of `sources`; None: every source) over the
    plan's grid; write the effects."""
    summary, tok, eval_docs = eval_inputs(storage, recipe, recipes_dir)
    spans = source_spans(storage, recipe)
    if len(spans) < 2:
        raise ValueError(f"mixture[{recipe}] has {len(spans)} source(s) with documents: ablations need at least 2")
    unknown = sorted(set(sources or ()) - set(spans))
    if unknown:
        raise ValueError(f"mixture[{recipe}] has no documents from {unknown}: ablate some of {sorted(spans)}")
    spans = {source: s for source, s in spans.items() if sources is None or source in sources}
    workdir = tempfile.mkdtemp(prefix="mmrecipe-ablations-")
    try:
        stream = load_token_stream(storage, f"{MIXTURE_ASSET}/{recipe}/{TOKENS_DIR}", workdir)
        variants = {FULL: stream, **leave_one_out(stream, spans)}
        past = PastRuns.of_recipe(storage, recipe)
        grids = [  # a run is reused only where its key (stream digest included) matches: the full arm's
            train_grid(s, tok, eval_docs, plan, {"recipe": name, "mixture_version": str(summary["version"])}, past)
            for name, s in variants.items()
        ]
        del stream, variants
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = pa.concat_tables([g.results for g in grids])
    doc_losses = pa.concat_tables([g.doc_losses for g in grids])
    ranking = rank(results, doc_losses)
    tokens = {source: int((s[:, 1] - s[:, 0]).sum()) for source, s in spans.items()}
    effects = effects_table(ranking, tokens)
    md = ablations_markdown(recipe, ranking, effects, budget_header(results))
    out = storage.uri(ABLATIONS_ASSET, recipe, "effects.parquet")
    storage.write_table(storage.uri(ABLATIONS_ASSET, recipe, "results.parquet"), results)
    storage.write_table(storage.uri(ABLATIONS_ASSET, recipe, "doc_losses.parquet"), doc_losses)
    storage.write_bytes(storage.uri(ABLATIONS_ASSET, recipe, "ablations.md"), md.encode())
    storage.write_table(out, effects)
    runs, reused = [r for g in grids for r in g.runs], sum(g.reused for g in grids)
    return Ablations(ranking, effects, md, tokens, len(runs) + reused, reused, sum(r.wall_s for r in runs), out)


def effects_table(ranking: Ranking, source_tokens: Mapping[str, int]) -> pa.Table:
    """Each source's effect per eval set (bpb without it - bpb with it) and its verdict, from the variants' ranking."""
    rows = []
    for source, tokens in source_tokens.items():
        for p in ranking.pairs:
            if {p.better, p.worse} != {FULL, without(source)}:
                continue
            sign = 1.0 if p.better == FULL else -1.0
            ci = (sign * p.ci[0], sign * p.ci[1]) if p.ci else None
            verdict = (f"stable: {source} {'helps' if sign > 0 else 'hurts'}") if p.stable else p.verdict()
            rows.append(
                {"source": source, "eval_set": p.eval_set, "source_tokens": tokens, "effect_bpb": sign * p.delta}
                | {"seed_noise": p.noise, "ci_low": min(ci) if ci else None, "ci_high": max(ci) if ci else None}
                | {"stable": p.stable, "verdict": verdict}
            )
    return pa.Table.from_pylist(rows, schema=EFFECTS_SCHEMA)


def effects_markdown(effects: pa.Table) -> str:
    """The effects table as markdown."""
    rows = [
        r
        | {"effect_bpb": f"{r['effect_bpb']:+.4f}", "seed_noise": f"{r['seed_noise']:.4f}"}
        | {"95% CI": f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]" if r["ci_low"] is not None else "n/a"}
        for r in effects.to_pylist()
    ]
    cols = ["source", "eval_set", "source_tokens", "effect_bpb", "seed_noise", "95% CI", "verdict"]
    return markdown_table(rows, cols, max_chars=60)


def ablations_markdown(recipe: str, ranking: Ranking, effects: pa.Table, header: list[str]) -> str:
    """The ablation report: each source's effect per eval set, then the variants' leaderboard."""
    return "\n".join(
        [
            f"## Source ablations of {recipe}: bits per byte without each source minus the full mixture's",
            "",
            "Positive: the source helps that eval set (removing it raises bits per byte).",
            "",
            effects_markdown(effects),
            "",
            leaderboard_markdown(ranking, header).replace("## Leaderboard", "### Variants", 1),
        ]
    )
