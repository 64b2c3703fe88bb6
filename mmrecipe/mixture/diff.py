"""What differs between two built mixtures: documents only in one side, token shares, and the recipe changes.

A document is a stage row (stage, record or clip id): the same page drawn by two recipes under different source
names is in both. Documents only in one side are counted by source, language and drop (the WARC drop they came
from), with a deterministic sample of each side (lowest text sha256) and the start of its text. Shares come
from each mixture's summary; the recipe changes are read from the `recipe.yaml` each mixture was built with.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mmrecipe.mixture.build import read_summary
from mmrecipe.mixture.manifest import RECIPE_FILE, doc_key, mixture_uri, read_manifest
from mmrecipe.mixture.sources import STAGE_COLUMNS
from mmrecipe.recipe import DOC_KEY, TEXT_COLUMN, Recipe, parse_recipe
from mmrecipe.stage_output import is_committed, markdown_table, read_stage_table
from mmrecipe.storage import Storage

RECIPE_FIELDS = ("tokenizer", "seed", "total_tokens", "share_tolerance", "when_short", "eval_sets", "decontamination")
SOURCE_FIELDS = ("stage", "weight", "max_epochs")
SNIPPET_CHARS = 160


@dataclass
class RecipeDiff:
    """Two mixtures compared: per side the documents only it has (counted and sampled), shares and changes."""

    a: str
    b: str
    only: dict[str, list[dict[str, Any]]]  # side -> counts by (source, language, drop)
    only_docs: dict[str, int]
    shared_docs: int
    shares: list[dict[str, Any]]
    changes: list[str]
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def markdown(self) -> str:
        """The diff as markdown."""
        parts = [f"## mixture[{self.a}] vs mixture[{self.b}]", ""]
        counts = f"only in {self.a}: {self.only_docs[self.a]}; only in {self.b}: {self.only_docs[self.b]}"
        parts += [f"Documents in both: {self.shared_docs}; {counts}.", ""]
        parts += ["### Recipe changes", "", *([f"- {c}" for c in self.changes] or ["- none"]), ""]
        parts += ["### Token shares", "", markdown_table(self.shares, ["source", self.a, self.b]), ""]
        for side in (self.a, self.b):
            parts += [f"### Only in {side}, by source, language and drop", ""]
            parts += [markdown_table(self.only[side], ["source", "language", "drop", "documents", "tokens"]), ""]
            parts += [f"Sample of documents only in {side}:", ""]
            parts += [markdown_table(self.samples[side], ["doc_id", "language", "url", "text"], max_chars=90), ""]
        return "\n".join(parts)


def built_recipe(storage: Storage, recipe: str) -> Recipe:
    """The recipe a mixture was built with (its copy in the mixture folder)."""
    uri = mixture_uri(storage, recipe, RECIPE_FILE)
    if not storage.exists(uri):
        raise FileNotFoundError(f"mixture[{recipe}] is not built ({uri} is missing): materialize mixture[{recipe}]")
    return parse_recipe(storage.read_bytes(uri).decode("utf-8"), uri, expected_name=recipe)


def recipe_changes(a: Recipe, b: Recipe) -> list[str]:
    """The recipe fields, sources and filters that differ from `a` to `b`, one line each."""
    out = [f"{f}: {getattr(a, f)!r} -> {getattr(b, f)!r}" for f in RECIPE_FIELDS if getattr(a, f) != getattr(b, f)]
    sa, sb = {s.name: s for s in a.sources}, {s.name: s for s in b.sources}
    out += [f"source {n} only in {a.name} ({sa[n].stage}, filters {sa[n].filters})" for n in sorted(set(sa) - set(sb))]
    out += [f"source {n} only in {b.name} ({sb[n].stage}, filters {sb[n].filters})" for n in sorted(set(sb) - set(sa))]
    for n in sorted(set(sa) & set(sb)):
        x, y = sa[n], sb[n]
        changed = [f for f in SOURCE_FIELDS if getattr(x, f) != getattr(y, f)]
        out += [f"source {n}: {f} {getattr(x, f)!r} -> {getattr(y, f)!r}" for f in changed]
        for key in sorted(set(x.filters) | set(y.filters)):
            if x.filters.get(key) != y.filters.get(key):
                out.append(
                    f"source {n}: filter {key} {x.filters.get(key, '(none)')!r} -> {y.filters.get(key, '(none)')!r}"
                )
    return out


def _stage_rows(storage: Storage, manifest: pa.Table) -> dict[tuple[str, str], dict[str, Any]]:
    """(stage, document key) -> language and text of the stage rows the manifest names."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for stage, drop in sorted(set(zip(manifest["stage"].to_pylist(), manifest["drop"].to_pylist(), strict=True))):
        if not is_committed(storage, stage, drop):
            continue  # the stage partition was re-materialized away: counts still come from the manifest
        cols = [DOC_KEY[stage], TEXT_COLUMN[stage], *(["language"] if "language" in STAGE_COLUMNS[stage] else [])]
        for r in read_stage_table(storage, stage, drop, columns=cols).to_pylist():
            out[(stage, r[DOC_KEY[stage]])] = {
                "language": r.get("language") or "-",
                "text": r[TEXT_COLUMN[stage]] or "",
            }
    return out


def diff_mixtures(storage: Storage, a: str, b: str, known: Sequence[str] | None = None, sample: int = 3) -> RecipeDiff:
    """Compare mixture[a] with mixture[b]; raises ValueError for an unknown recipe, FileNotFoundError if unbuilt."""
    for name in (a, b):
        if known is not None and name not in known:
            raise ValueError(f"unknown recipe {name!r}: recipes are {sorted(known)}")
    recipes = {name: built_recipe(storage, name) for name in (a, b)}
    cols = ["doc_id", "source", "stage", "record_id", "drop", "url", "tokens", "epochs", "text_sha256"]
    manifests = {name: read_manifest(storage, name, cols) for name in (a, b)}
    keys = {
        name: {(r["stage"], doc_key(r["doc_id"])) for r in m.select(["stage", "doc_id"]).to_pylist()}
        for name, m in manifests.items()
    }
    only, only_docs, samples = {}, {}, {}
    for side, other in ((a, b), (b, a)):
        m = manifests[side]
        rows = [r for r in m.to_pylist() if (r["stage"], doc_key(r["doc_id"])) not in keys[other]]
        found = _stage_rows(
            storage, m.filter(pc.is_in(m["record_id"], pa.array([r["record_id"] for r in rows], pa.string())))
        )
        counts: Counter[tuple[str, str, str]] = Counter()
        tokens: Counter[tuple[str, str, str]] = Counter()
        for r in rows:
            r |= found.get((r["stage"], doc_key(r["doc_id"])), {"language": "?", "text": ""})
            key = (r["source"], r["language"], r["drop"])
            counts[key] += 1
            tokens[key] += r["tokens"] * r["epochs"]
        only[side] = [
            {"source": s, "language": lang, "drop": d, "documents": n, "tokens": tokens[(s, lang, d)]}
            for (s, lang, d), n in sorted(counts.items())
        ]
        only_docs[side] = len(rows)
        samples[side] = [
            {"doc_id": r["doc_id"], "language": r["language"], "url": r["url"], "text": r["text"][:SNIPPET_CHARS]}
            for r in sorted(rows, key=lambda r: r["text_sha256"])[:sample]
        ]
    summaries = {
        name: {s["name"]: s["achieved_share"] for s in read_summary(storage, name)["sources"]} for name in (a, b)
    }
    shares = [
        {"source": s, a: round(summaries[a].get(s, 0.0), 4), b: round(summaries[b].get(s, 0.0), 4)}
        for s in sorted(set(summaries[a]) | set(summaries[b]))
    ]
    shared = len(keys[a] & keys[b])
    return RecipeDiff(a, b, only, only_docs, shared, shares, recipe_changes(recipes[a], recipes[b]), samples)
