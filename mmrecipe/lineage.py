"""The lineage of a mixture document: recipe → manifest row → stage row → raw_crawl record → WARC bytes.

`explain(lake, doc_id)` follows the provenance columns every table carries and reads the WARC record by
its offset, so a researcher can see exactly which HTTP response a training document came from.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import pyarrow.compute as pc

from mmrecipe.mixture.build import read_summary
from mmrecipe.mixture.manifest import doc_key, manifest_row, parse_doc_id, read_manifest
from mmrecipe.recipe import DOC_KEY, TEXT_COLUMN
from mmrecipe.stage_output import is_committed, read_stage_table
from mmrecipe.storage import Storage
from mmrecipe.warc_index import RecordReader


class LineageError(LookupError):
    """A link of a document's lineage that could not be followed, and where it broke."""


@dataclass
class Lineage:
    """Every hop from a mixture document back to its WARC record."""

    doc_id: str
    recipe: dict[str, Any]
    manifest: dict[str, Any]
    stage_row: dict[str, Any]
    raw_record: dict[str, Any]
    warc_headers: dict[str, str] = field(default_factory=dict)
    http_status: int | None = None
    http_headers: dict[str, str] = field(default_factory=dict)
    payload_length: int = 0
    payload_sha256_matches: bool = False


def _one_row(storage: Storage, asset: str, drop: str, key: str, column: str = "record_id") -> dict[str, Any]:
    if not is_committed(storage, asset, drop):
        raise LineageError(f"{asset}[{drop}] has no committed output (was it materialized or deleted?)")
    table = read_stage_table(storage, asset, drop)
    hit = table.filter(pc.equal(table[column], key))
    if hit.num_rows != 1:
        raise LineageError(f"{asset}[{drop}]: {hit.num_rows} rows with {column} {key}, expected 1")
    return hit.to_pylist()[0]


def resolve_doc_id(storage: Storage, doc_id: str, recipes: list[str] | None = None) -> str:
    """A full doc id from `RECIPE:SOURCE:KEY` or a bare record or clip id (searched in the recipes' manifests)."""
    if ":" in doc_id:
        parse_doc_id(doc_id)
        return doc_id
    for recipe in recipes or storage.list_dirs(storage.uri("mixture")):
        try:
            m = read_manifest(storage, recipe, columns=["doc_id", "record_id"])
        except FileNotFoundError:
            continue
        hit = m.filter(pc.or_(pc.equal(m["record_id"], doc_id), pc.ends_with(m["doc_id"], f":{doc_id}")))
        if hit.num_rows:
            return str(hit["doc_id"][0].as_py())
    raise LineageError(f"record {doc_id} is in no mixture manifest: use a doc id from manifest.parquet")


def explain(lake: Storage, doc_id: str, landing: Storage | None = None, with_payload: bool = True) -> Lineage:
    """The lineage of `doc_id` in `lake`; WARC bytes are read through `landing` (default: `lake`'s filesystem)."""
    try:
        doc_id = resolve_doc_id(lake, doc_id)
        summary = read_summary(lake, parse_doc_id(doc_id)[0])
        row = manifest_row(lake, doc_id)
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise LineageError(str(e).strip("\"'")) from None
    stage, drop, record_id = str(row["stage"]), str(row["drop"]), str(row["record_id"])
    key = doc_key(doc_id)
    stage_row = _one_row(lake, stage, drop, key, DOC_KEY[stage])
    text = stage_row.get(TEXT_COLUMN[stage]) or ""
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != row["text_sha256"] or stage_row["record_id"] != record_id:
        raise LineageError(f"{stage}[{drop}] row {key} changed since the mixture was built: rebuild the mixture")
    raw = _one_row(lake, "raw_crawl", drop, record_id)
    recipe = {k: summary[k] for k in ("recipe", "recipe_sha256", "seed", "tokenizer", "version")}
    lineage = Lineage(doc_id, recipe, row, stage_row, raw)
    if with_payload:
        with RecordReader(landing or lake) as reader:
            try:
                rec = reader.read(str(raw["warc_path"]), int(raw["warc_offset"]), int(raw["warc_length"]))
            except (ValueError, OSError) as e:
                raise LineageError(f"WARC record {raw['warc_path']}@{raw['warc_offset']} unreadable: {e}") from e
        lineage.warc_headers = dict(rec.warc_headers)
        lineage.http_status = rec.http_status
        lineage.http_headers = dict(rec.http_headers)
        lineage.payload_length = len(rec.payload)
        lineage.payload_sha256_matches = hashlib.sha256(rec.payload).hexdigest() == raw["payload_sha256"]
    return lineage


def format_lineage(lin: Lineage) -> str:
    """A human-readable account of a document's lineage, one hop per section."""
    m, s, r = lin.manifest, lin.stage_row, lin.raw_record
    text_col = TEXT_COLUMN[str(m["stage"])]
    snippet = (s.get(text_col) or "").replace("\n", " ")[:160]
    lines = [
        f"document {lin.doc_id}",
        f"1. recipe    {lin.recipe['recipe']} (sha256 {lin.recipe['recipe_sha256'][:16]}, seed {lin.recipe['seed']}, "
        f"tokenizer {lin.recipe['tokenizer']}, mixture version {lin.recipe['version']})",
        f"2. mixture   source={m['source']} epochs={m['epochs']} tokens={m['tokens']} bytes={m['utf8_bytes']}",
        f"3. {m['stage']}[{m['drop']}]  record_id={m['record_id']}{_clip(s)} url={s.get('url')}",
        f"             {text_col}: {snippet!r}",
        f"4. raw_crawl[{m['drop']}]  {r['record_type']} {r['target_uri']} HTTP {r['http_status']} {r['mime_type']} "
        f"payload {r['payload_length']} bytes sha256 {str(r['payload_sha256'])[:16]}",
        f"5. WARC      {r['warc_path']} offset {r['warc_offset']} length {r['warc_length']}",
    ]
    if lin.warc_headers:
        lines += [f"             {k}: {v}" for k, v in lin.warc_headers.items()]
        lines.append(f"             HTTP {lin.http_status}")
        lines += [f"             {k}: {v}" for k, v in lin.http_headers.items()]
        ok = "matches" if lin.payload_sha256_matches else "DOES NOT match"
        lines.append(f"             payload {lin.payload_length} bytes; sha256 {ok} the raw_crawl index")
    return "\n".join(lines)


def _clip(stage_row: dict[str, Any]) -> str:
    """A video clip's id and span in its source video, for the lineage's stage hop ("" for other stages)."""
    if "clip_id" not in stage_row:
        return ""
    return f" clip_id={stage_row['clip_id']} span={stage_row['start_s']:.2f}-{stage_row['end_s']:.2f} s"


def unresolved_manifest_rows(lake: Storage, recipe: str) -> tuple[int, list[str]]:
    """(rows checked, problems): manifest rows whose raw_crawl record is missing or has other provenance."""
    manifest = read_manifest(lake, recipe, columns=["doc_id", "record_id", "drop", "warc_path", "warc_offset"])
    problems: list[str] = []
    for drop in sorted(set(manifest["drop"].to_pylist())):
        rows = manifest.filter(pc.equal(manifest["drop"], drop)).to_pylist()
        if not is_committed(lake, "raw_crawl", drop):
            problems += [f"{r['doc_id']}: raw_crawl[{drop}] is missing" for r in rows]
            continue
        index = read_stage_table(
            lake, "raw_crawl", drop, columns=["record_id", "warc_path", "warc_offset", "record_type"]
        )
        where = {
            rid: (path, off, rtype)
            for rid, path, off, rtype in zip(
                index["record_id"].to_pylist(),
                index["warc_path"].to_pylist(),
                index["warc_offset"].to_pylist(),
                index["record_type"].to_pylist(),
                strict=True,
            )
        }
        for r in rows:
            hit = where.get(r["record_id"])
            if hit is None:
                problems.append(f"{r['doc_id']}: no raw_crawl[{drop}] record {r['record_id']}")
            elif hit[:2] != (r["warc_path"], r["warc_offset"]) or hit[2] != "response":
                problems.append(
                    f"{r['doc_id']}: raw_crawl says {hit}, manifest says {r['warc_path']}@{r['warc_offset']}"
                )
    return manifest.num_rows, problems
