"""Building a recipe's mixture: candidates → token caches → sampling plan → manifest, shards, data card.

`build_mixture` writes `<lake>/mixture/<recipe>/`:
    manifest.parquet        one row per selected document (source, epochs, provenance)
    tokens/                 shard-NNNNN.bin + index.json + index.parquet (the training token stream)
    webdataset/             images-NNNNNN.tar (selected image–caption pairs)
    evalsets/<name>.txt     the held-out eval sets the recipe names, as used for decontamination and eval
    recipe.yaml             the recipe exactly as read
    data_card.md            the human-readable data card
    mixture.json            the summary every check reads; written last, it marks the build complete
Every file is written atomically; files of an earlier build that the new one does not list are removed.
Nothing depends on the clock, so the same recipe and inputs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrecipe.mixture.data_card import render_data_card
from mmrecipe.mixture.decontamination import ContaminationReport, contamination
from mmrecipe.mixture.manifest import (
    DATA_CARD_FILE,
    EVALSETS_DIR,
    MANIFEST_FILE,
    MANIFEST_SCHEMA,
    MIXTURE_ASSET,
    RECIPE_FILE,
    SUMMARY_FILE,
    TOKENS_DIR,
    WEBDATASET_DIR,
    doc_id_for,
    mixture_uri,
)
from mmrecipe.mixture.sampling import SamplingPlan, SourceSpec, interleave, plan_sampling
from mmrecipe.mixture.sources import (
    STAGE_COLUMNS,
    Candidates,
    MixtureInputError,
    StageInput,
    select_candidates,
    stage_inputs,
)
from mmrecipe.mixture.token_shards import (
    BpeTokenizer,
    PartitionTokens,
    TokenShardWriter,
    cached_partition_tokens,
    load_tokenizer,
)
from mmrecipe.mixture.webdataset import ImageSample, write_webdataset
from mmrecipe.recipe import DOC_KEY, TEXT_COLUMN, Recipe, Source
from mmrecipe.stage_output import (
    PROVENANCE_COLUMNS,
    REJECTS,
    committed_parts,
    is_committed,
    read_stage_table,
    stage_prefix,
)
from mmrecipe.storage import Storage


@dataclass
class StageTable:
    """All drops' rows of one stage with each row's token count and where its ids are cached."""

    table: pa.Table
    caches: list[PartitionTokens]
    token_counts: np.ndarray
    cache_of_row: np.ndarray
    row_in_cache: np.ndarray
    pii_redacted: dict[str, int] = field(default_factory=dict)

    def ids(self, row: int) -> np.ndarray:
        return self.caches[int(self.cache_of_row[row])].doc_tokens(int(self.row_in_cache[row]))


@dataclass
class MixtureResult:
    """What a mixture build produced: its summary (mixture.json), plan and decontamination report."""

    summary: dict[str, Any]
    plan: SamplingPlan
    contamination: ContaminationReport
    data_card: str
    manifest_preview: list[dict[str, Any]] = field(default_factory=list)
    cache_stats: dict[str, int] = field(default_factory=dict)  # run-specific: not part of mixture.json


def load_eval_sets(folder: str | Path, names: Sequence[str]) -> dict[str, str]:
    """The texts of the named eval sets (`<folder>/<name>.txt`); raises FileNotFoundError naming the missing."""
    folder = Path(folder)
    missing = [n for n in names if not (folder / f"{n}.txt").is_file()]
    if missing:
        raise FileNotFoundError(
            f"eval sets {missing} not found in {folder}: add <name>.txt there or point MMRECIPE_EVALSETS "
            "(or the asset's eval_sets_dir config) at the folder that has them"
        )
    return {n: (folder / f"{n}.txt").read_text(encoding="utf-8") for n in names}


def _stage_table(storage: Storage, tok: BpeTokenizer, inputs: Sequence[StageInput], stage: str) -> StageTable:
    """Read one stage's partitions, tokenizing each (or reusing its content-addressed cache)."""
    cols = PROVENANCE_COLUMNS + STAGE_COLUMNS[stage]
    text_col, key_col = TEXT_COLUMN[stage], DOC_KEY[stage]
    tables, caches = [], []
    pii: Counter[str] = Counter()
    for inp in (i for i in inputs if i.stage == stage):
        with storage.open_input(committed_parts(storage, stage, inp.drop)[0]) as f:
            names = pq.ParquetFile(f).schema_arrow.names
        absent = [c for c in cols if c not in names]
        if absent:
            raise MixtureInputError(f"{inp.data_uri} lacks columns {absent} that the {stage} contract promises")
        t = read_stage_table(storage, stage, inp.drop, columns=cols + (["pii_counts"] if "pii_counts" in names else []))
        pii.update(_pii_counts(t))
        t = t.select(cols)
        cache = cached_partition_tokens(
            storage, tok, stage, text_col, inp.sha256, t[key_col].to_pylist(), t[text_col].to_pylist()
        )
        n = t.num_rows
        t = t.append_column("_cache", pa.array(np.full(n, len(caches), dtype=np.int32)))
        t = t.append_column("_row", pa.array(np.arange(n, dtype=np.int64)))
        tables.append(t)
        caches.append(cache)
    table = pa.concat_tables(tables).sort_by([("drop", "ascending"), (key_col, "ascending")])
    cache_of_row = table["_cache"].to_numpy()
    row_in_cache = table["_row"].to_numpy()
    counts = np.array([caches[c].counts[r] for c, r in zip(cache_of_row, row_in_cache, strict=True)], dtype=np.int64)
    table = table.drop_columns(["_cache", "_row"])
    return StageTable(table, caches, counts, cache_of_row, row_in_cache, dict(sorted(pii.items())))


def _pii_counts(table: pa.Table) -> Counter[str]:
    """Per PII type, how many values the stage redacted in its kept rows (its optional `pii_counts` struct)."""
    out: Counter[str] = Counter()
    if "pii_counts" in table.column_names and pa.types.is_struct(table.schema.field("pii_counts").type):
        col = table["pii_counts"]
        for f in table.schema.field("pii_counts").type:
            out[f.name] += int(pc.sum(pc.struct_field(col, f.name)).as_py() or 0)
    return out


def _upstream_rejects(storage: Storage, inputs: Sequence[StageInput]) -> dict[str, dict[str, int]]:
    """Per stage, how many records upstream dropped or rejected, by `outcome:reason`."""
    out: dict[str, Counter[str]] = {}
    for inp in inputs:
        counter = out.setdefault(inp.stage, Counter())
        if is_committed(storage, inp.stage, inp.drop):
            t = read_stage_table(storage, inp.stage, inp.drop, REJECTS, ["outcome", "reason"])
            counter.update(f"{o}:{r}" for o, r in zip(t["outcome"].to_pylist(), t["reason"].to_pylist(), strict=True))
    return {stage: dict(sorted(c.items())) for stage, c in sorted(out.items())}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_mixture(
    storage: Storage,
    recipe: Recipe,
    drops: Sequence[str],
    eval_sets: Mapping[str, str],
    shard_tokens: int = 1 << 24,
    shard_images: int = 1000,
    upstream_figures: Mapping[str, Mapping[str, int]] | None = None,
    quarantined: Sequence[Mapping[str, Any]] = (),
) -> MixtureResult:
    """Build (or rebuild) the mixture of `recipe` over the admitted `drops` in `storage`; see the module docstring.

    `quarantined` names the drops left out and the checks that keep them out (`Quarantine.rows()`); it is
    recorded in mixture.json and the data card.
    """
    inputs = stage_inputs(storage, recipe.stages(), drops)
    tok = load_tokenizer(recipe.tokenizer, base_dir=str(Path(recipe.path).parent) if recipe.path else None)
    stages = {stage: _stage_table(storage, tok, inputs, stage) for stage in recipe.stages()}
    cands: dict[str, Candidates] = {}
    for src in recipe.sources:
        st = stages[src.stage]
        cands[src.name] = c = select_candidates(st.table, src, st.token_counts)
        if len(c.rows) == 0:
            raise MixtureInputError(
                f"{recipe.path}: source {src.name!r} has no candidate documents in {src.stage} over drops "
                f"{sorted(drops)} (excluded by filter: {dict(c.excluded)}); loosen its filters or remove it"
            )
    specs = [
        SourceSpec(s.name, s.weight, s.max_epochs, stages[s.stage].token_counts[cands[s.name].rows])
        for s in recipe.sources
    ]
    plan = plan_sampling(specs, recipe.total_tokens, recipe.seed, recipe.when_short)
    copies = {p.name: p.copies for p in plan.sources}
    files: dict[str, str] = {}

    def put(rel: str, data: bytes) -> None:
        storage.write_bytes(mixture_uri(storage, recipe.name, rel), data)
        files[rel] = _sha(data)

    # manifest: one row per selected document, sorted by source then (drop, document key)
    rows: list[dict[str, Any]] = []
    texts: list[tuple[str, str]] = []
    for src in recipe.sources:
        st, c = stages[src.stage], cands[src.name]
        t = st.table.take(pa.array(c.rows[copies[src.name] > 0]))
        n_copies = copies[src.name][copies[src.name] > 0]
        for r, k in zip(t.to_pylist(), n_copies, strict=True):
            text = r[src.text_column] or ""
            doc_id = doc_id_for(recipe.name, src.name, r[src.key_column])
            rows.append(
                {
                    "doc_id": doc_id,
                    "recipe": recipe.name,
                    "source": src.name,
                    "stage": src.stage,
                    **{p: r[p] for p in PROVENANCE_COLUMNS},
                    "url": r["url"],
                    "epochs": int(k),
                    "text_sha256": _sha(text.encode("utf-8")),
                    "utf8_bytes": len(text.encode("utf-8")),
                }
            )
            texts.append((doc_id, text))
    # token counts and cache keys per manifest row
    lookup = {}
    for src in recipe.sources:
        st, c = stages[src.stage], cands[src.name]
        for i in np.flatnonzero(copies[src.name]):
            row = int(c.rows[i])
            rid = st.table[src.key_column][row].as_py()
            cache = st.caches[int(st.cache_of_row[row])]
            lookup[doc_id_for(recipe.name, src.name, rid)] = (int(st.token_counts[row]), cache.key)
    for r in rows:
        r["tokens"], r["token_cache"] = lookup[r["doc_id"]]
    manifest = pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA)
    storage.write_table(mixture_uri(storage, recipe.name, MANIFEST_FILE), manifest)
    files[MANIFEST_FILE] = _sha(storage.read_bytes(mixture_uri(storage, recipe.name, MANIFEST_FILE)))

    # token stream in a seeded interleaved order
    writer = TokenShardWriter(storage, f"{MIXTURE_ASSET}/{recipe.name}/{TOKENS_DIR}", tok, shard_tokens)
    by_source = {s.name: s for s in recipe.sources}
    for source, cand_i, copy in interleave(copies, recipe.seed):
        st, c = stages[by_source[source].stage], cands[source]
        row = int(c.rows[cand_i])
        key = st.table[by_source[source].key_column][row].as_py()
        writer.add(doc_id_for(recipe.name, source, key), copy, st.ids(row))
    tokens_header = writer.close()
    for s in writer.shards:
        files[f"{TOKENS_DIR}/{s.file}"] = s.sha256
    for name in ("index.json", "index.parquet"):
        files[f"{TOKENS_DIR}/{name}"] = _sha(storage.read_bytes(mixture_uri(storage, recipe.name, TOKENS_DIR, name)))

    image_shards, clip_shards = (
        _write_pairs(storage, recipe, stage, _selected(recipe, stage, stages, cands, copies), shard_images)
        for stage in ("deduped_images", "video_clips")
    )
    for s in image_shards + clip_shards:
        files[f"{WEBDATASET_DIR}/{s['file']}"] = s["sha256"]
    for name, text in sorted(eval_sets.items()):
        put(f"{EVALSETS_DIR}/{name}.txt", text.encode("utf-8"))
    put(RECIPE_FILE, recipe.text.encode("utf-8"))
    report = contamination(texts, eval_sets, recipe.decontamination.ngram, recipe.decontamination.max_overlap)

    summary = _summary(recipe, tok, inputs, plan, cands, stages, report, tokens_header, image_shards, manifest)
    if any(src.stage == "video_clips" for src in recipe.sources):
        summary["video_webdataset"] = {"shards": clip_shards, "samples": sum(int(s["samples"]) for s in clip_shards)}
    summary["upstream_rejects"] = _upstream_rejects(storage, inputs)
    summary["eval_sets"] = {
        n: {"sha256": _sha(t.encode("utf-8")), "utf8_bytes": len(t.encode("utf-8"))}
        for n, t in sorted(eval_sets.items())
    }
    summary["upstream_figures"] = {k: dict(v) for k, v in sorted((upstream_figures or {}).items())}
    summary["drops"] = sorted(set(drops))
    summary["quarantined"] = [dict(r) for r in quarantined]
    card = render_data_card(summary)
    put(DATA_CARD_FILE, card.encode("utf-8"))
    summary["files"] = dict(sorted(files.items()))
    summary["version"] = _sha(json.dumps(summary["files"], sort_keys=True).encode())[:16]
    body = json.dumps(summary, indent=1, sort_keys=True).encode() + b"\n"
    storage.write_bytes(mixture_uri(storage, recipe.name, SUMMARY_FILE), body)
    _remove_stale(storage, recipe.name, set(files) | {SUMMARY_FILE})
    preview = manifest.slice(0, 5).select(["doc_id", "source", "drop", "url", "epochs", "tokens"]).to_pylist()
    caches = [c for st in stages.values() for c in st.caches]
    cache_stats = {
        "token_caches_reused": sum(c.reused for c in caches),
        "token_caches_built": sum(not c.reused for c in caches),
        "tokens_tokenized": int(sum(len(c.tokens) for c in caches if not c.reused)),
    }
    return MixtureResult(summary, plan, report, card, preview, cache_stats)


Selection = tuple[Source, pa.Table, np.ndarray]  # a source, the stage rows it selected, and their copy counts


def _selected(
    recipe: Recipe,
    stage: str,
    stages: Mapping[str, StageTable],
    cands: Mapping[str, Candidates],
    copies: Mapping[str, np.ndarray],
) -> list[Selection]:
    """Each source of `stage` with the rows it selected and their copy counts."""
    out: list[Selection] = []
    for src in (s for s in recipe.sources if s.stage == stage):
        picked = copies[src.name] > 0
        out.append((src, stages[stage].table.take(pa.array(cands[src.name].rows[picked])), copies[src.name][picked]))
    return out


PAIR_FIELDS = {  # what a WebDataset sample's JSON carries besides provenance, doc id and epochs
    "deduped_images": ("url", "page_url", "caption_source", "width", "height"),
    "video_clips": ("clip_id", "url", "page_url", "caption_source", "duration_s"),
}
SHARD_NAMES = {"deduped_images": "images", "video_clips": "clips"}


def _write_pairs(
    storage: Storage, recipe: Recipe, stage: str, selected: list[Selection], shard_samples: int
) -> list[dict[str, Any]]:
    """WebDataset shards (`images-`/`clips-NNNNNN.tar`) of the image–caption or video–text pairs sources selected.

    An image sample is its normalised JPEG; a clip sample its MP4 and keyframe from video_clips' own shards."""
    samples: list[ImageSample] = []
    for src, sel, n_copies in selected:
        members = _jpegs(storage, sel) if stage == "deduped_images" else _clip_members(storage, sel)
        for r, k in zip(sel.to_pylist(), n_copies, strict=True):
            key = r[DOC_KEY[stage]]
            meta = {p: r[p] for p in PROVENANCE_COLUMNS} | {f: r[f] for f in PAIR_FIELDS[stage]}
            meta |= {"doc_id": doc_id_for(recipe.name, src.name, key), "epochs": int(k)}
            found = members[key]
            extra = {ext: data for ext, data in found.items() if ext not in ("jpg", "txt", "json")}
            samples.append(ImageSample(f"{src.name}-{key}", found["jpg"], r["caption"] or "", meta, extra))
    folder = f"{MIXTURE_ASSET}/{recipe.name}/{WEBDATASET_DIR}"
    return write_webdataset(storage, folder, samples, shard_samples, SHARD_NAMES[stage]) if samples else []


def _jpegs(storage: Storage, selected: pa.Table) -> dict[str, dict[str, bytes]]:
    """The normalised JPEG bytes of selected deduped_images rows, read per drop."""
    out: dict[str, dict[str, bytes]] = {}
    for drop in sorted(set(selected["drop"].to_pylist())):
        ids = selected.filter(pc.equal(selected["drop"], drop))["record_id"]
        t = read_stage_table(storage, "deduped_images", drop, columns=["record_id", "normalized_jpeg"])
        t = t.filter(pc.is_in(t["record_id"], value_set=ids.combine_chunks()))
        out |= {
            r: {"jpg": j} for r, j in zip(t["record_id"].to_pylist(), t["normalized_jpeg"].to_pylist(), strict=True)
        }
    return out


def _clip_members(storage: Storage, selected: pa.Table) -> dict[str, dict[str, bytes]]:
    """The shard members (mp4, jpg, ...) of selected video_clips rows, read from each drop's shards."""
    from mmrecipe.images.webdataset import read_shard
    from mmrecipe.video.stage import shards_prefix  # the video stage's imports only for a video recipe

    wanted = set(selected["clip_id"].to_pylist())
    out: dict[str, dict[str, bytes]] = {}
    for drop in sorted(set(selected["drop"].to_pylist())):
        for uri in sorted(storage.list_files(shards_prefix(storage, drop))):
            out |= {k: v for k, v in read_shard(storage.read_bytes(uri)).items() if k in wanted}
    missing = sorted(wanted - set(out))
    if missing:
        raise MixtureInputError(
            f"video_clips shards lack clips {missing[:5]} ({len(missing)} in all): re-materialize video_clips "
            "for their drops"
        )
    return out


def _summary(
    recipe: Recipe,
    tok: BpeTokenizer,
    inputs: Sequence[StageInput],
    plan: SamplingPlan,
    cands: Mapping[str, Candidates],
    stages: Mapping[str, StageTable],
    report: ContaminationReport,
    tokens_header: Mapping[str, Any],
    image_shards: Sequence[Mapping[str, Any]],
    manifest: pa.Table,
) -> dict[str, Any]:
    """The content of mixture.json (everything but the file list and version)."""
    achieved = plan.achieved_shares()
    by_name = {s.name: s for s in recipe.sources}
    caches = {st: sorted({c.key for c in t.caches}) for st, t in stages.items()}
    return {
        "recipe": recipe.name,
        "recipe_sha256": recipe.sha256,
        "description": recipe.description,
        "seed": recipe.seed,
        "tokenizer": tok.name,
        "tokenizer_fingerprint": tok.fingerprint,
        "total_tokens_budget": recipe.total_tokens,
        "when_short": recipe.when_short,
        "share_tolerance": recipe.share_tolerance,
        "achieved_tokens": plan.achieved_tokens,
        "documents": manifest.num_rows,
        "document_copies": int(pc.sum(manifest["epochs"]).as_py() or 0),
        "sources": [
            {
                "name": p.name,
                "stage": by_name[p.name].stage,
                "filters": by_name[p.name].filters,
                "weight": by_name[p.name].weight,
                "max_epochs": p.max_epochs,
                "target_share": round(p.target_share, 6),
                "achieved_share": round(achieved[p.name], 6),
                "candidates": p.candidates,
                "available_tokens": p.available_tokens,
                "target_tokens": p.target_tokens,
                "planned_tokens": p.planned_tokens,
                "achieved_tokens": p.achieved_tokens,
                "selected_docs": p.selected_docs,
                "epochs": round(p.epochs, 4),
                "too_small": p.too_small,
                "note": p.note,
                "excluded_by_filter": dict(sorted(cands[p.name].excluded.items())),
                "thresholds": {k: round(v, 6) for k, v in cands[p.name].thresholds.items()},
            }
            for p in plan.sources
        ],
        "inputs": [
            {
                "stage": i.stage,
                "drop": i.drop,
                "rows": i.rows,
                "sha256": i.sha256,
                "path": stage_prefix(i.stage, i.drop),
            }
            for i in inputs
        ],
        "token_caches": caches,
        "pii_redacted": {st: t.pii_redacted for st, t in stages.items() if t.pii_redacted},
        "tokens": dict(tokens_header),
        "webdataset": {"shards": list(image_shards), "samples": sum(int(s["samples"]) for s in image_shards)},
        "decontamination": {
            "ngram": report.n,
            "max_overlap": report.max_overlap,
            "worst_overlap": round(report.worst, 6),
            "passed": report.passed,
            "eval_sets": report.rows(),
        },
        "eval_sets": {},
    }


def _remove_stale(storage: Storage, recipe: str, keep: set[str]) -> None:
    """Delete files of an earlier build of this mixture that the current one does not list."""
    root = mixture_uri(storage, recipe)
    for uri in storage.list_files(root):
        rel = uri[len(root) + 1 :]
        if rel not in keep and not rel.rsplit("/", 1)[-1].startswith(".tmp-"):
            storage.delete(uri)


def read_summary(storage: Storage, recipe: str) -> dict[str, Any]:
    """A built mixture's mixture.json; raises FileNotFoundError saying what to materialize."""
    uri = mixture_uri(storage, recipe, SUMMARY_FILE)
    if not storage.exists(uri):
        raise FileNotFoundError(f"recipe {recipe!r} has no built mixture ({uri}): materialize mixture[{recipe}]")
    return json.loads(storage.read_bytes(uri))


__all__ = ["MIXTURE_ASSET", "MixtureResult", "build_mixture", "load_eval_sets", "read_summary"]
