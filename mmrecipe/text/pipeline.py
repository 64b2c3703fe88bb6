"""Filtered text of a drop: every HTML record read by offset and run through the per-document steps.

Order of the steps, each of which can end a record with its own reason code:
HTTP status → read by offset → decode → opt-out (`noai`) → extraction → language ID → Gopher
repetition → Gopher quality → C4 → FineWeb (the rule set of the `rules_preset` for the document's language:
datatrove's exact verdicts for English, see `fineweb_rules`) → PII redaction (never drops) → quality classifier →
toxicity. Documents that pass every step are the candidates of cross-drop dedup: they are kept
rows of `filtered_text`, and their exact keys and LSH bands go to the drop's dedup index.
Every step after extraction depends on the extracted text alone, so a text already decided in this
run (the same article behind several URLs) reuses that verdict instead of being filtered again.

The stage runs on shards (`mmrecipe.engine`): `filter_drop` is the driver (plan, run on the engine, publish),
`filter_shard` the pure shard function, which runs its records through the declared steps `read`,
`language_id`, `quality_rules`, `quality_classifier`, `toxicity` (and `repeated_text`, which applies an earlier
verdict to a text already decided in this shard) in batches (the models run per batch). A shard writes its
kept rows, rejects and its dedup index entries (side part `index`) in (warc_path, warc_offset) order, so the
same inputs always give the same table, whatever the engine, shard size or number of workers.
Memory is bounded by a few batches of documents per worker, plus one shard's raw_crawl rows (~200 bytes each).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import sys
from collections import Counter, OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from mmrecipe.dedup import BandIndex, IndexEntries, MinHashConfig
from mmrecipe.dedup.bucket_file import DEFAULT_BUCKETS, write_bucketed_to
from mmrecipe.engine import (
    DROPPED,
    Engine,
    Item,
    Outcome,
    Shard,
    ShardOutput,
    ShardStage,
    StageRun,
    Step,
    StepStats,
    fingerprint,
    plan_shards,
    read_shard,
    run_stage,
    run_steps,
    worker_cached,
)
from mmrecipe.settings import DEFAULT_SHARD_BYTES
from mmrecipe.stage_output import PROVENANCE_COLUMNS, PROVENANCE_FIELDS, commit_version, committed, committed_parts
from mmrecipe.storage import Storage
from mmrecipe.text.extraction import DEFAULT_MAX_DEPTH, EXTRACTORS, RESILIPARSE
from mmrecipe.text.fineweb_rules import FINEWEB_LANGUAGE, PRESETS, rules_for
from mmrecipe.text.language_id import LanguageIdentifier
from mmrecipe.text.pages import DEFAULT_MAX_PAGE_BYTES, Page, read_page
from mmrecipe.text.pii import PII_TYPES, redact
from mmrecipe.text.quality_classifier import ClassifierInfo, QualityScorer
from mmrecipe.text.quality_rules import SIGNALS, RuleThresholds, thresholds_for
from mmrecipe.text.toxicity import toxicity_scores
from mmrecipe.warc_index import RecordReader

_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None
PII_COUNTS_TYPE = pa.struct([pa.field(t, pa.int32()) for t in PII_TYPES])
FILTERED_TEXT_SCHEMA = pa.schema(
    [
        *PROVENANCE_FIELDS,
        pa.field("warc_length", pa.int64()),
        pa.field("url", pa.string()),
        pa.field("text", pa.string()),
        pa.field("language", pa.string()),
        pa.field("language_score", pa.float64()),
        pa.field("extractor", pa.string()),
        pa.field("charset", pa.string()),
        pa.field("charset_source", pa.string()),
        pa.field("quality_score", pa.float64()),
        pa.field("toxicity_score", pa.float64()),
        pa.field("pii_counts", PII_COUNTS_TYPE),
        pa.field("noimageai", pa.bool_()),
        pa.field("exact_key", pa.string()),
        *[pa.field(s, pa.float64()) for s in SIGNALS],
    ]
)
EXTRACTED_TEXT_SCHEMA = FILTERED_TEXT_SCHEMA.append(pa.field("dedup_cluster", pa.string()))
READ_COLUMNS = [*PROVENANCE_COLUMNS, "warc_length", "target_uri", "http_status"]
WRITE_BATCH_ROWS = 512  # rows per Parquet row group: text rows are large, so memory stays flat past this


@dataclass(frozen=True)
class TextStageConfig:
    """Everything that decides which documents pass, with FineWeb's defaults where FineWeb has one."""

    extractor: str = RESILIPARSE
    lid_model: str | None = None
    min_language_score: float = 0.65
    languages: tuple[str, ...] = ()  # allowed languages; empty means all (English only with the `fineweb` preset)
    rules_preset: str = "multilingual"  # or "fineweb" (English only, as FineWeb) or "whitespace"; see fineweb_rules
    thresholds: RuleThresholds = field(default_factory=RuleThresholds)
    language_thresholds: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    quality_min_score: float = 0.0
    toxicity_threshold: float = 0.9
    max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES
    max_html_depth: int = DEFAULT_MAX_DEPTH  # deeper pages are rejected as html_too_deep (resiliparse)
    batch_size: int = 128
    minhash: MinHashConfig = field(default_factory=MinHashConfig)

    @property
    def allowed_languages(self) -> tuple[str, ...]:
        """The languages a document may have to be kept (empty: any)."""
        return (FINEWEB_LANGUAGE,) if self.rules_preset == "fineweb" else self.languages

    def __post_init__(self) -> None:
        if self.rules_preset not in PRESETS:
            raise ValueError(
                f"unknown rules_preset {self.rules_preset!r} in the text stage config: use one of {PRESETS}"
            )
        if self.rules_preset == "fineweb" and set(self.languages) - {FINEWEB_LANGUAGE}:
            raise ValueError(
                f"rules_preset 'fineweb' keeps English only, but languages is {list(self.languages)}: "
                "drop the other languages, or use the 'multilingual' preset"
            )
        if self.extractor not in EXTRACTORS:
            raise ValueError(f"unknown extractor {self.extractor!r} in the text stage config: use one of {EXTRACTORS}")
        for language, overrides in self.language_thresholds.items():
            try:
                self.thresholds.with_overrides(overrides)
            except ValueError as e:
                raise ValueError(f"language_thresholds[{language!r}]: {e}") from None
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_html_depth < 1:
            raise ValueError(f"max_html_depth must be at least 1, got {self.max_html_depth}")


@dataclass
class TextStageReport:
    """What a drop's filtering produced besides the tables: histograms and the dedup index version."""

    languages: Counter[str] = field(default_factory=Counter)  # of kept documents
    quality_bins: list[int] = field(default_factory=lambda: [0] * QUALITY_BINS)  # scored documents per bin of [0, 1]
    charset_sources: Counter[str] = field(default_factory=Counter)
    repeated_texts: int = 0  # documents whose extracted text was already decided in this run (verdict reused)
    index_version: str = ""  # the version of the drop's dedup index (`BandIndex.write_parts`)


FILTERED = "filtered_text"
INDEX_SIDE = "index"  # the side part of each shard: its candidates' dedup index entries
KEYS_SIDE = "index_keys"  # the side part of each shard: those entries' keys, bucketed (`bucket_file`)
QUALITY_BINS = 20  # equal bins of [0, 1]: a shard's quality-score histogram, summed by the driver
MEMO_TEXTS = 1024  # verdicts of this many recent distinct texts are remembered (a few MB)


@dataclass
class _Doc:
    row: dict[str, Any]
    page: Page
    text: str = ""
    language: str = ""
    language_score: float = 0.0
    signals: dict[str, float] = field(default_factory=dict)
    pii_counts: dict[str, int] = field(default_factory=dict)
    quality: float | None = None  # None until scored (documents dropped earlier are never scored)
    toxicity: float = 0.0


@dataclass(frozen=True)
class _Verdict:
    """What the text-only steps (language ID to toxicity) decided about one extracted text."""

    outcome: Outcome | None  # None: the document passed them all
    doc: _Doc | None  # a passing document's language, signals, redacted text, PII counts and scores
    quality: float | None  # the quality score, if the document got that far

    @classmethod
    def of(cls, item: Item) -> _Verdict:
        doc: _Doc = item.value
        if item.outcome is not None:
            return cls(item.outcome, None, doc.quality)
        return cls(None, replace(doc, row={}, page=_NO_PAGE), doc.quality)  # row and page belong to one record

    def apply(self, item: Item) -> None:
        """Give `item` (a document with the same extracted text) this verdict."""
        if self.outcome is not None:
            item.outcome = self.outcome
        else:
            item.value = replace(self.doc, row=item.value.row, page=item.value.page)  # type: ignore[type-var]


_NO_PAGE = Page("", "", "", False)


def text_key(text: str) -> bytes:
    """A 128-bit content key of an extracted text (equal keys: the text steps decide the same)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class TextFilter:
    """The per-document steps of the text stage, with their models loaded once and recent texts' verdicts kept."""

    def __init__(self, config: TextStageConfig, scorer: QualityScorer) -> None:
        self.config, self.scorer = config, scorer
        self.lid = LanguageIdentifier(config.lid_model)
        self._thresholds: dict[str, RuleThresholds] = {}
        self._memo: OrderedDict[bytes, _Verdict] = OrderedDict()
        self.text_steps = [
            Step("language_id", self._language),
            Step("quality_rules", self._rules),
            Step("quality_classifier", self._quality),
            Step("toxicity", self._toxicity),
        ]

    def thresholds(self, language: str) -> RuleThresholds:
        if language not in self._thresholds:
            base, per_language = self.config.thresholds, self.config.language_thresholds
            self._thresholds[language] = thresholds_for(language, base, per_language)
        return self._thresholds[language]

    def forget(self) -> None:
        """Drop the remembered verdicts (a shard starts with none, so its output does not depend on scheduling)."""
        self._memo.clear()

    def run_batch(
        self, reader: RecordReader, rows: Sequence[dict[str, Any]], stats: dict[str, StepStats]
    ) -> tuple[list[Item], list[float], int]:
        """Every row's item (a passing `_Doc`, or its outcome), the quality scores, and how many texts were repeats."""
        items = [Item(dict(r)) for r in rows]
        run_steps([Step("read", lambda alive: self._read(reader, alive))], items, stats)
        keys = {id(it): text_key(it.value.text) for it in items if it.outcome is None}
        fresh: dict[bytes, Item] = {}
        repeats: list[Item] = []
        for it in items:
            key = keys.get(id(it))
            if key is None:
                continue
            if key in self._memo or key in fresh:
                repeats.append(it)
            else:
                fresh[key] = it
        run_steps(self.text_steps, list(fresh.values()), stats)
        for key, it in fresh.items():
            self._memo[key] = _Verdict.of(it)
        run_steps([Step("repeated_text", lambda alive: [self._memo[keys[id(it)]].apply(it) for it in alive])],
                  repeats, stats)  # fmt: skip
        scores: list[float] = []
        for it in items:
            if id(it) in keys:
                self._memo.move_to_end(keys[id(it)])
                if (quality := self._memo[keys[id(it)]].quality) is not None:
                    scores.append(quality)
        while len(self._memo) > max(MEMO_TEXTS, len(rows)):
            self._memo.popitem(last=False)
        return items, scores, len(repeats)

    def _read(self, reader: RecordReader, items: list[Item]) -> None:
        for it in items:
            page = read_page(reader, it.row, self.config.extractor, self.config.max_page_bytes,
                             self.config.max_html_depth)  # fmt: skip
            if isinstance(page, Page):
                it.value = _Doc(it.row, page, page.text)
            else:
                it.outcome = page

    def _language(self, items: list[Item]) -> None:
        for it, (lang, score) in zip(items, self.lid.predict([it.value.text for it in items]), strict=True):
            it.value.language, it.value.language_score = lang, score
            if score < self.config.min_language_score:
                detail = f"{lang or '?'} at {score:.3f} < {self.config.min_language_score}"
                it.outcome = Outcome(DROPPED, "low_language_score", detail)
            elif (allowed := self.config.allowed_languages) and lang not in allowed:
                it.outcome = Outcome(DROPPED, "language_not_allowed", f"{lang} not in {list(allowed)}")

    def _rules(self, items: list[Item]) -> None:
        for it in items:
            doc: _Doc = it.value
            rules = rules_for(self.config.rules_preset, doc.language)
            verdict = rules(doc.text, self.thresholds(doc.language))
            doc.signals = verdict.signals
            if verdict.reason:
                it.outcome = Outcome(DROPPED, verdict.reason, verdict.detail)
                continue
            doc.text, doc.pii_counts = redact(verdict.text)

    def _quality(self, items: list[Item]) -> None:
        for it, q in zip(items, self.scorer.score([it.value.text for it in items]), strict=True):
            it.value.quality = float(q)
            if it.value.quality < self.config.quality_min_score:
                detail = f"P(hq)={it.value.quality:.4f} < {self.config.quality_min_score:.4f} ({self.scorer.version})"
                it.outcome = Outcome(DROPPED, "low_quality_score", detail)

    def _toxicity(self, items: list[Item]) -> None:  # only scored on what the quality classifier kept
        for it, t in zip(items, toxicity_scores([it.value.text for it in items]), strict=True):
            it.value.toxicity = float(t)
            if it.value.toxicity > self.config.toxicity_threshold:
                it.outcome = Outcome(DROPPED, "toxic", f"P(offensive)={it.value.toxicity:.4f}")


def _row(doc: _Doc, extractor: str) -> dict[str, Any]:
    row = {c: doc.row[c] for c in PROVENANCE_COLUMNS}
    row |= {
        "warc_length": doc.row["warc_length"],
        "url": doc.row.get("target_uri"),
        "text": doc.text,
        "language": doc.language,
        "language_score": doc.language_score,
        "extractor": extractor,
        "charset": doc.page.charset,
        "charset_source": doc.page.charset_source,
        "quality_score": doc.quality,
        "toxicity_score": doc.toxicity,
        "pii_counts": doc.pii_counts,
        "noimageai": doc.page.noimageai,
    }
    return row | {s: float(doc.signals.get(s, float("nan"))) for s in SIGNALS}


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (glibc), so that a long drop's RSS stays at one batch's worth.

    Streaming many large strings through Python fragments glibc's heap; without this, RSS creeps up to a
    plateau that depends on how many batches were processed rather than on the batch size.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _batches(table: pa.Table, size: int) -> Iterator[list[dict[str, Any]]]:
    for batch in table.to_batches(max_chunksize=size):
        yield batch.to_pylist()


def quality_bins(scores: Sequence[float]) -> list[int]:
    """Counts of `scores` in `QUALITY_BINS` equal bins of [0, 1] (a shard's share of the drop's histogram)."""
    return np.histogram(np.asarray(scores, dtype=np.float64), bins=QUALITY_BINS, range=(0.0, 1.0))[0].tolist()


@dataclass(frozen=True)
class TextShardTask:
    """What every shard of a drop's filtered_text needs: the landing, the stage config and the classifier."""

    lake: Storage
    landing: Storage
    config: TextStageConfig
    model: bytes
    info: ClassifierInfo
    key: str  # the fingerprint of config and classifier: the per-worker cache key of the models
    buckets: int  # of the dedup index (`MMRECIPE_DEDUP_BUCKETS`): a shard's keys part is bucketed the same


def filter_shard(task: TextShardTask, shard: Shard, out: ShardOutput) -> dict[str, Any]:
    """One shard of a drop through the text steps into `out`; its histograms and its index side parts."""
    steps = worker_cached(("text", task.key), lambda: TextFilter(task.config, QualityScorer(task.model, task.info)))
    steps.forget()
    languages: Counter[str] = Counter()
    charset_sources: Counter[str] = Counter()
    scores: list[float] = []
    entries: list[IndexEntries] = []
    repeated = 0
    rows = read_shard(task.lake, shard, READ_COLUMNS)
    with RecordReader(task.landing) as reader:
        for batch in _batches(rows, task.config.batch_size):
            items, batch_scores, batch_repeated = steps.run_batch(reader, batch, out.steps)
            kept: list[dict[str, Any]] = []
            for it in items:
                if it.outcome is not None:
                    (out.drop if it.outcome.outcome == DROPPED else out.reject)(it.row, it.outcome.reason,
                                                                                 it.outcome.detail)  # fmt: skip
                    continue
                kept.append(_row(it.value, task.config.extractor))
                languages[it.value.language] += 1
                charset_sources[it.value.page.charset_source] += 1
            batch_entries = IndexEntries.from_texts([r["record_id"] for r in kept], [r["text"] for r in kept],
                                                    task.config.minhash)  # fmt: skip
            for row, key in zip(kept, batch_entries.exact_keys.tolist(), strict=True):
                out.keep(row | {"exact_key": f"{key:016x}"})
            entries.append(batch_entries)
            scores += batch_scores
            repeated += batch_repeated
            release_free_memory()
    shard_entries = IndexEntries.concat(entries, task.config.minhash.bands)
    out.write_side(INDEX_SIDE, shard_entries.table())
    out.write_side(KEYS_SIDE, shard_entries.keys(), lambda sink, keys: write_bucketed_to(sink, keys, task.buckets, {}))
    return {"languages": dict(languages), "charset_sources": dict(charset_sources),
            "quality_bins": quality_bins(scores), "repeated_texts": repeated}  # fmt: skip


def filter_drop(
    engine: Engine,
    lake: Storage,
    landing: Storage,
    drop: str,
    config: TextStageConfig,
    scorer: QualityScorer,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    code_version: str = "1",
    buckets: int = DEFAULT_BUCKETS,
) -> tuple[StageRun, TextStageReport]:
    """The driver of filtered_text[drop]: every HTML record through the text steps on `engine`, published.

    It holds shard specs and per-shard summaries, never records: the quality histogram is summed from the
    shards' fixed bins, and the drop's dedup index is written from the shards' side parts (`write_parts`)."""
    key = fingerprint(FILTERED, code_version, config, scorer.version)
    task = TextShardTask(lake, landing, config, scorer.model_bytes, scorer.info, key, buckets)
    inputs = commit_version(lake, "raw_crawl", drop)
    stage = ShardStage(FILTERED, drop, lake, FILTERED_TEXT_SCHEMA, filter_shard, task,
                       fingerprint(key, buckets, inputs), WRITE_BATCH_ROWS)  # fmt: skip
    run = run_stage(engine, stage, plan_shards(lake, drop, "html", shard_bytes))
    report = TextStageReport()
    for r in run.results:
        report.languages.update(r.extra.get("languages", {}))
        report.charset_sources.update(r.extra.get("charset_sources", {}))
        if bins := r.extra.get("quality_bins"):  # a crashed record's shard has none
            report.quality_bins = [a + b for a, b in zip(report.quality_bins, bins, strict=True)]
        report.repeated_texts += r.extra.get("repeated_texts", 0)
    records = committed(lake, FILTERED, drop, side=INDEX_SIDE)
    keys = committed_parts(lake, FILTERED, drop, side=KEYS_SIDE)
    index = BandIndex(lake, FILTERED, config.minhash, buckets, map_tasks=engine.map)  # bucket ranges: engine tasks
    report.index_version = index.write_parts(drop, [p.uri for p in records], keys, [p.rows for p in records])
    return run, report
