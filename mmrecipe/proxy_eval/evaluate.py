"""Evaluation results of a recipe: proxy models trained on its mixture over a seed x learning-rate grid.

Writes `<lake>/eval_results/<recipe>/`:
    results.parquet      one row per (learning rate, seed, eval set): bits per byte, NLL bits, bytes, tokens,
                         tokens seen, wall time, model size
    doc_losses.parquet   one row per (learning rate, seed, eval set, eval document): NLL bits and bytes (the
                         leaderboard's bootstrap over eval documents reads these)
    loss_curves.parquet  one row per logged step and run: tokens seen, train loss, learning rate
    loss_curve.png       the loss curves, one line per run (drawn by the `plot` the caller passes)

Each result row carries its run's `run_key`: a digest of everything that determines the run's numbers (the
token stream itself, the eval documents, the tokenizer, the model and training config with the peak learning
rate, the seed, the torch version and CPU thread count). A run is deterministic, so another grid that needs a
run with the same key (an ablation's full arm) reuses its rows instead of training it again (`PastRuns`).
"""

from __future__ import annotations

import hashlib
import math
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from mmrecipe.mixture.build import read_summary
from mmrecipe.mixture.checks import Verdict
from mmrecipe.mixture.manifest import EVALSETS_DIR, MIXTURE_ASSET, TOKENS_DIR, mixture_uri
from mmrecipe.mixture.token_shards import BpeTokenizer, load_token_stream, load_tokenizer
from mmrecipe.proxy_eval.presets import EvalPreset
from mmrecipe.storage import Storage

if TYPE_CHECKING:  # torch (~3 CPU-s to import) loads only when a grid is trained, not with the Definitions
    from mmrecipe.proxy_eval.model import ModelConfig
    from mmrecipe.proxy_eval.training import TrainConfig, TrainResult

EVAL_ASSET = "eval_results"
RESULTS_SCHEMA = pa.schema(
    [
        pa.field("recipe", pa.string(), nullable=False),
        pa.field("mixture_version", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("lr", pa.float64(), nullable=False),
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
        pa.field("dtype", pa.string(), nullable=False),
        pa.field("parameters", pa.int64(), nullable=False),
        pa.field("eval_config", pa.string(), nullable=False),  # the preset's name (mmrecipe.proxy_eval.presets)
        pa.field("run_key", pa.string()),  # what determines the run's numbers, hashed (run_key)
    ]
)
DOC_LOSSES_SCHEMA = pa.schema(
    [
        pa.field("recipe", pa.string(), nullable=False),
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("lr", pa.float64(), nullable=False),
        pa.field("eval_set", pa.string(), nullable=False),
        pa.field("doc", pa.int64(), nullable=False),  # the document's position in eval_documents(eval set)
        pa.field("nll_bits", pa.float64(), nullable=False),
        pa.field("utf8_bytes", pa.int64(), nullable=False),
    ]
)
CURVE_SCHEMA = pa.schema(
    [
        pa.field("seed", pa.int64(), nullable=False),
        pa.field("peak_lr", pa.float64(), nullable=False),
        pa.field("step", pa.int64(), nullable=False),
        pa.field("tokens_seen", pa.int64(), nullable=False),
        pa.field("loss", pa.float64(), nullable=False),
        pa.field("lr", pa.float64(), nullable=False),
    ]
)


@dataclass(frozen=True)
class Grid:
    """The runs of one evaluation: every seed at every peak learning rate."""

    seeds: tuple[int, ...]
    lrs: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.seeds or not self.lrs:
            raise ValueError(f"the eval grid needs at least one seed and one learning rate, got {self}")
        if len(set(self.seeds)) != len(self.seeds) or len(set(self.lrs)) != len(self.lrs):
            raise ValueError(f"the eval grid lists a seed or a learning rate twice: {self}")


@dataclass(frozen=True)
class EvalPlan:
    """What an evaluation trains: the proxy model's shape, the training config, the grid and the preset's label."""

    model: ModelConfig
    train: TrainConfig
    grid: Grid
    label: str = "custom"

    @classmethod
    def of(cls, preset: EvalPreset, label: str, device: str, threads: int | None = None) -> EvalPlan:
        """The evaluation a preset gives; `device` is used when the preset names none."""
        from mmrecipe.proxy_eval.model import ModelConfig
        from mmrecipe.proxy_eval.training import TrainConfig

        model = ModelConfig(
            context=preset.context, d_model=preset.d_model, n_layer=preset.n_layer, n_head=preset.n_head
        )
        train = TrainConfig(
            train_tokens=preset.train_tokens,
            batch_size=preset.batch_size,
            lr=preset.lrs[0],
            device=preset.device or device,
            dtype=preset.dtype,
            threads=threads,
        )
        return cls(model, train, Grid(preset.seeds, preset.lrs), label)


@dataclass
class GridRuns:
    """What training one token stream over a grid produced: result rows, per-document losses, curves, runs."""

    results: pa.Table
    doc_losses: pa.Table
    curves: pa.Table
    runs: list[TrainResult]  # the runs trained here (not the reused ones)
    parameters: int
    reused: int = 0  # runs whose rows came from PastRuns instead of training


@dataclass
class EvalOutput:
    """What evaluating a recipe produced and where it was written."""

    grid: GridRuns
    loss_png: bytes
    results_uri: str
    curves_uri: str
    png_uri: str
    mixture_version: str

    @property
    def results(self) -> pa.Table:
        return self.grid.results

    @property
    def runs(self) -> list[TrainResult]:
        return self.grid.runs


def results_uri(storage: Storage, recipe: str, file: str = "results.parquet") -> str:
    """Where a recipe's eval results table (or its `doc_losses.parquet`) lives."""
    return storage.uri(EVAL_ASSET, recipe, file)


def eval_inputs(
    storage: Storage, recipe: str, recipes_dir: str | None
) -> tuple[dict[str, object], BpeTokenizer, dict[str, list[str]]]:
    """A built mixture's summary, its tokenizer (checked against the mixture's) and its eval sets' documents."""
    from mmrecipe.proxy_eval.bits_per_byte import eval_documents

    summary = read_summary(storage, recipe)
    tok = load_tokenizer(str(summary["tokenizer"]), base_dir=recipes_dir)
    if tok.fingerprint != summary["tokenizer_fingerprint"]:
        raise ValueError(
            f"mixture[{recipe}] was tokenized with {summary['tokenizer_fingerprint']} but {summary['tokenizer']} "
            f"now loads as {tok.fingerprint}: rebuild the mixture"
        )
    docs = {
        name: eval_documents(storage.read_bytes(mixture_uri(storage, recipe, EVALSETS_DIR, f"{name}.txt")).decode())
        for name in sorted(summary["eval_sets"])  # type: ignore[union-attr]
    }
    return summary, tok, docs


def inputs_digest(stream: np.ndarray, tok: BpeTokenizer, eval_docs: Mapping[str, Sequence[str]]) -> str:
    """A digest of a grid's data: the token stream's bytes, the tokenizer and the eval documents."""
    h = hashlib.sha256(f"{stream.dtype.str}:{len(stream)}:{tok.fingerprint}".encode())
    step = 1 << 24
    for at in range(0, len(stream), step):  # in slices: the stream may be a large memory map
        h.update(np.ascontiguousarray(stream[at : at + step]).tobytes())
    for name, docs in sorted(eval_docs.items()):
        h.update(f"\0{name}:{len(docs)}".encode())
        for doc in docs:
            h.update(f"\0{len(doc)}:".encode() + doc.encode("utf-8"))
    return h.hexdigest()


def run_key(inputs: str, model: ModelConfig, train: TrainConfig, seed: int) -> str:
    """What determines one proxy run's numbers, hashed: its data (`inputs_digest`), model, training config with
    the peak learning rate, seed, torch version and CPU thread count (float sums depend on the thread split)."""
    import torch

    threads = train.threads or torch.get_num_threads()
    spec = f"{inputs}|{model!r}|{replace(train, threads=threads)!r}|seed={seed}|torch={torch.__version__}"
    return hashlib.sha256(spec.encode()).hexdigest()[:32]


@dataclass
class PastRuns:
    """Runs already trained (eval_results' result and per-document tables), to be reused by run key."""

    results: pa.Table
    doc_losses: pa.Table

    @classmethod
    def of_recipe(cls, storage: Storage, recipe: str) -> PastRuns | None:
        """The runs of the recipe's eval_results, if it has them."""
        if not storage.exists(results_uri(storage, recipe, "doc_losses.parquet")):
            return None
        results = storage.read_table(results_uri(storage, recipe))
        if "run_key" not in results.column_names:  # written before runs had keys
            return None
        return cls(results, storage.read_table(results_uri(storage, recipe, "doc_losses.parquet")))

    def rows(self, key: str, eval_sets: Sequence[str], labels: Mapping[str, str]) -> tuple[list, list] | None:
        """The result and per-document rows of the run `key` on `eval_sets`, relabelled with `labels` (recipe,
        mixture_version, eval_config); None unless every eval set has them."""
        found = [r for r in self.results.to_pylist() if r["run_key"] == key]
        if sorted(r["eval_set"] for r in found) != sorted(eval_sets):
            return None
        run = found[0]
        docs = [
            d | {"recipe": labels["recipe"]}
            for d in self.doc_losses.to_pylist()
            if (d["recipe"], d["seed"], d["lr"]) == (run["recipe"], run["seed"], run["lr"])
        ]
        if {d["eval_set"] for d in docs} != set(eval_sets):
            return None
        relabel = {k: labels[k] for k in ("recipe", "mixture_version", "eval_config")}
        order = {name: i for i, name in enumerate(sorted(eval_sets))}
        docs.sort(key=lambda d: (order[d["eval_set"]], d["doc"]))
        return sorted((r | relabel for r in found), key=lambda r: order[r["eval_set"]]), docs


def train_grid(
    stream: np.ndarray,
    tok: BpeTokenizer,
    eval_docs: Mapping[str, Sequence[str]],
    plan: EvalPlan,
    labels: Mapping[str, str],
    past: PastRuns | None = None,
) -> GridRuns:
    """Train one proxy model per (learning rate, seed) on `stream`; score each on every eval set, per document.

    `labels` fills the recipe and mixture_version columns of the result rows. A run whose key `past` holds is
    not trained again: its rows are reused (they keep the wall time of the run that trained them).
    """
    from mmrecipe.proxy_eval.bits_per_byte import encode_documents, score_documents
    from mmrecipe.proxy_eval.training import torch_threads, train

    model_cfg = replace(plan.model, vocab_size=tok.vocab_size)
    encoded = {name: encode_documents(tok, docs) for name, docs in sorted(eval_docs.items())}  # once per grid
    inputs = inputs_digest(stream, tok, eval_docs)
    rows, doc_rows, curve_rows, runs, parameters, reused = [], [], [], [], 0, 0
    with torch_threads(plan.train.threads):  # training and scoring alike; restored after the grid
        for lr in plan.grid.lrs:
            for seed in plan.grid.seeds:
                key = run_key(inputs, model_cfg, replace(plan.train, lr=lr), seed)
                known = past.rows(key, list(encoded), {**labels, "eval_config": plan.label}) if past else None
                if known:
                    rows += known[0]
                    doc_rows += known[1]
                    parameters, reused = known[0][0]["parameters"], reused + 1
                    continue
                run = train(stream, model_cfg, replace(plan.train, lr=lr), seed)
                assert run.model is not None
                parameters = run.model.num_parameters()
                for name, docs in encoded.items():
                    scored = score_documents(run.model, docs)
                    nll, size = sum(d.nll_bits for d in scored), sum(d.utf8_bytes for d in scored)
                    rows.append(
                        {
                            "recipe": labels["recipe"],
                            "mixture_version": labels["mixture_version"],
                            "seed": seed,
                            "lr": lr,
                            "eval_set": name,
                            "bpb": nll / size if size else math.nan,
                            "nll_bits": nll,
                            "utf8_bytes": size,
                            "eval_tokens": sum(d.tokens for d in scored),
                            "tokens_seen": run.tokens_seen,
                            "steps": run.steps,
                            "final_train_loss": run.final_loss,
                            "wall_s": round(run.wall_s, 3),
                            "device": run.device,
                            "dtype": run.dtype,
                            "parameters": parameters,
                            "eval_config": plan.label,
                            "run_key": key,
                        }
                    )
                    doc_rows += [
                        {"recipe": labels["recipe"], "seed": seed, "lr": lr, "eval_set": name, "doc": i}
                        | {"nll_bits": d.nll_bits, "utf8_bytes": d.utf8_bytes}
                        for i, d in enumerate(scored)
                    ]
                curve_rows += [{"seed": seed, "peak_lr": lr, **p} for p in run.curve]
                run.model = None  # free the weights; only the scores are kept
                runs.append(run)
    return GridRuns(
        pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA),
        pa.Table.from_pylist(doc_rows, schema=DOC_LOSSES_SCHEMA),
        pa.Table.from_pylist(curve_rows, schema=CURVE_SCHEMA),
        runs,
        parameters,
        reused,
    )


def evaluate_recipe(
    storage: Storage,
    recipe: str,
    plan: EvalPlan,
    recipes_dir: str | None = None,
    plot: Callable[[pa.Table, str], bytes] | None = None,
) -> EvalOutput:
    """Train the grid on the recipe's mixture, score the mixture's eval sets, and write the tables to the lake."""
    summary, tok, eval_docs = eval_inputs(storage, recipe, recipes_dir)
    labels = {"recipe": recipe, "mixture_version": str(summary["version"])}
    workdir = tempfile.mkdtemp(prefix="mmrecipe-eval-")
    try:
        stream = load_token_stream(storage, f"{MIXTURE_ASSET}/{recipe}/{TOKENS_DIR}", workdir)
        runs = train_grid(stream, tok, eval_docs, plan, labels)
        del stream
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    png = plot(runs.curves, f"proxy model on mixture[{recipe}]") if plot else b""
    out_curves = storage.uri(EVAL_ASSET, recipe, "loss_curves.parquet")
    out_png = storage.uri(EVAL_ASSET, recipe, "loss_curve.png")
    storage.write_table(out_curves, runs.curves)
    if png:
        storage.write_bytes(out_png, png)
    storage.write_table(results_uri(storage, recipe, "doc_losses.parquet"), runs.doc_losses)
    storage.write_table(results_uri(storage, recipe), runs.results)  # written last: the leaderboard reads this one
    return EvalOutput(runs, png, results_uri(storage, recipe), out_curves, out_png, labels["mixture_version"])


def read_all_results(storage: Storage, recipes: Sequence[str], file: str = "results.parquet") -> pa.Table:
    """The eval results (or `doc_losses.parquet`) of every recipe in `recipes` that has them, concatenated."""
    schema = DOC_LOSSES_SCHEMA if file == "doc_losses.parquet" else RESULTS_SCHEMA
    tables = [
        storage.read_table(results_uri(storage, r, file))
        for r in sorted(recipes)
        if storage.exists(results_uri(storage, r)) and storage.exists(results_uri(storage, r, file))
    ]
    return pa.concat_tables(tables, promote_options="default") if tables else schema.empty_table()


def eval_results_verdict(storage: Storage, recipe: str) -> Verdict:
    """Whether a recipe's eval results are complete, finite, learned something, and match the current mixture."""
    table = storage.read_table(results_uri(storage, recipe)).to_pylist()
    curves = storage.read_table(storage.uri(EVAL_ASSET, recipe, "loss_curves.parquet")).to_pylist()
    version = read_summary(storage, recipe)["version"]
    seeds = sorted({r["seed"] for r in table})
    lrs = sorted({r["lr"] for r in table})
    sets = sorted({r["eval_set"] for r in table})
    problems = []
    if len(table) != len(seeds) * len(lrs) * len(sets) or not table:
        problems.append(f"{len(table)} result rows for {len(seeds)} seeds x {len(lrs)} lrs x {len(sets)} eval sets")
    problems += [
        f"seed {r['seed']} {r['eval_set']}: bits per byte {r['bpb']}"
        for r in table
        if not (math.isfinite(r["bpb"]) and r["bpb"] > 0)
    ]
    for lr in lrs:
        for seed in seeds:
            losses = [c["loss"] for c in curves if c["seed"] == seed and c["peak_lr"] == lr]
            if len(losses) < 2 or not losses[-1] < losses[0]:
                problems.append(f"seed {seed} lr {lr:g}: training loss did not fall ({losses[:1]} -> {losses[-1:]})")
    stale = sorted({r["mixture_version"] for r in table} - {version})
    if stale:
        problems.append(f"results are for mixture version(s) {stale}, the mixture is now {version}: re-evaluate")
    description = (
        f"{len(seeds)} seeds x {len(lrs)} lrs x {len(sets)} eval sets, finite bits per byte, falling loss, "
        f"mixture {version}"
        if not problems
        else "; ".join(problems[:5])
    )
    figures = {"mixture_version": version, "seeds": len(seeds), "lrs": len(lrs), "problems": len(problems)}
    return Verdict(not problems, description, figures)
