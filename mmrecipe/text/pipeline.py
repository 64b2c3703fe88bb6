"""Filtered text of a drop: every HTML record read by offset and run through the per-document steps.

Order of the steps, each of which can end a record with its own reason code:
HTTP status → read by offset → decode → opt-out (`noai`) → extraction → language ID → Gopher
repetition → Gopher quality → C4 → FineWeb (the rule set of the `rules_preset` for the document's language:
datatrove's exact verdicts for English, see `fineweb_rules`) → PII redaction (never drops) → quality classifier →
toxicity. Documents that pass every step are the candidates of cross-drop dedup: they are kept
rows of `filtered_text`, and their exact keys and LSH bands go to the drop's dedup index.
Every step after extraction depends on the extracted text alone, so a text already decided in this
run (the same article behind several URLs) reuses that verdict instead of being filtered again.

Records are processed in (warc_path, warc_offset) order, in batches (the models run per batch),
and every output is written in that order, so the same inputs always give the same bytes.
Memory is bounded by a few batches of documents, plus the raw_crawl rows of the drop's HTML
records (~200 bytes each) and the index entries (~250 bytes per candidate).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import multiprocessing
import sys
from collections import Counter, OrderedDict, deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from mmrecipe.crawl_index import read_records
from mmrecipe.dedup import IndexEntries, MinHashConfig
from mmrecipe.stage_output import PROVENANCE_COLUMNS, PROVENANCE_FIELDS, StageWriter
from mmrecipe.storage import Storage
from mmrecipe.text.extraction import DEFAULT_MAX_DEPTH, EXTRACTORS, RESILIPARSE
from mmrecipe.text.fineweb_rules import FINEWEB_LANGUAGE, PRESETS, rules_for
from mmrecipe.text.language_id import LanguageIdentifier
from mmrecipe.text.pages import DEFAULT_MAX_PAGE_BYTES, DROPPED, Outcome, Page, read_page
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
    workers: int = 1  # processes for the per-document steps; outputs are identical for any number
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
        if self.batch_size < 1 or self.workers < 1:
            raise ValueError(f"batch_size and workers must be at least 1, got {self.batch_size} and {self.workers}")
        if self.max_html_depth < 1:
            raise ValueError(f"max_html_depth must be at least 1, got {self.max_html_depth}")


@dataclass
class TextStageReport:
    """What a drop's filtering produced besides the tables: histograms and the dedup index version."""

    languages: Counter[str] = field(default_factory=Counter)  # of kept documents
    quality_scores: list[float] = field(default_factory=list)  # of every scored document
    charset_sources: Counter[str] = field(default_factory=Counter)
    entries: list[IndexEntries] = field(default_factory=list)
    repeated_texts: int = 0  # documents whose extracted text was already decided in this run (verdict reused)


# outcome per row; quality score per scored document; how many documents reused an earlier text's verdict
BatchResults = tuple[list["_Doc | Outcome"], list[float], int]
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
    def of(cls, doc: _Doc, result: _Doc | Outcome) -> _Verdict:
        if isinstance(result, Outcome):
            return cls(result, None, doc.quality)
        return cls(None, replace(doc, row={}, page=_NO_PAGE), doc.quality)  # row and page belong to one record

    def applied_to(self, doc: _Doc) -> _Doc | Outcome:
        """This verdict for a document with the same extracted text."""
        return self.outcome or replace(self.doc, row=doc.row, page=doc.page)  # type: ignore[type-var]


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

    def thresholds(self, language: str) -> RuleThresholds:
        if language not in self._thresholds:
            base, per_language = self.config.thresholds, self.config.language_thresholds
            self._thresholds[language] = thresholds_for(language, base, per_language)
        return self._thresholds[language]

    def run_batch(self, reader: RecordReader, rows: Sequence[dict[str, Any]]) -> BatchResults:
        """The outcome of every row (a passing document, or why it was dropped or rejected), and the quality scores."""
        results: list[_Doc | Outcome] = []
        for row in rows:
            page = read_page(reader, row, self.config.extractor, self.config.max_page_bytes, self.config.max_html_depth)
            results.append(_Doc(row, page, page.text) if isinstance(page, Page) else page)
        keys = {i: text_key(r.text) for i, r in enumerate(results) if isinstance(r, _Doc)}
        fresh: dict[bytes, _Doc] = {}
        for i, key in keys.items():
            if key not in self._memo and key not in fresh:
                fresh[key] = results[i]  # type: ignore[assignment]
        todo: list[_Doc | Outcome] = list(fresh.values())
        self._language(todo)
        self._rules(todo)
        self._scores(todo)
        for (key, doc), result in zip(fresh.items(), todo, strict=True):
            self._memo[key] = _Verdict.of(doc, result)
        scores: list[float] = []
        for i, key in keys.items():
            verdict = self._memo[key]
            self._memo.move_to_end(key)
            results[i] = verdict.applied_to(results[i])  # type: ignore[arg-type]
            if verdict.quality is not None:
                scores.append(verdict.quality)
        while len(self._memo) > max(MEMO_TEXTS, len(rows)):
            self._memo.popitem(last=False)
        return results, scores, len(keys) - len(fresh)

    def _alive(self, results: list[_Doc | Outcome]) -> list[tuple[int, _Doc]]:
        return [(i, r) for i, r in enumerate(results) if isinstance(r, _Doc)]

    def _language(self, results: list[_Doc | Outcome]) -> None:
        alive = self._alive(results)
        for (i, doc), (lang, score) in zip(alive, self.lid.predict([d.text for _, d in alive]), strict=True):
            doc.language, doc.language_score = lang, score
            if score < self.config.min_language_score:
                detail = f"{lang or '?'} at {score:.3f} < {self.config.min_language_score}"
                results[i] = Outcome(DROPPED, "low_language_score", detail)
            elif (allowed := self.config.allowed_languages) and lang not in allowed:
                results[i] = Outcome(DROPPED, "language_not_allowed", f"{lang} not in {list(allowed)}")

    def _rules(self, results: list[_Doc | Outcome]) -> None:
        for i, doc in self._alive(results):
            rules = rules_for(self.config.rules_preset, doc.language)
            verdict = rules(doc.text, self.thresholds(doc.language))
            doc.signals = verdict.signals
            if verdict.reason:
                results[i] = Outcome(DROPPED, verdict.reason, verdict.detail)
                continue
            doc.text, doc.pii_counts = redact(verdict.text)

    def _scores(self, results: list[_Doc | Outcome]) -> None:
        alive = self._alive(results)
        quality = self.scorer.score([d.text for _, d in alive])
        for (i, doc), q in zip(alive, quality, strict=True):
            doc.quality = float(q)
            if doc.quality < self.config.quality_min_score:
                detail = f"P(hq)={doc.quality:.4f} < {self.config.quality_min_score:.4f} ({self.scorer.version})"
                results[i] = Outcome(DROPPED, "low_quality_score", detail)
        alive = self._alive(results)  # toxicity is only scored on what the quality classifier kept
        for (i, doc), t in zip(alive, toxicity_scores([d.text for _, d in alive]), strict=True):
            doc.toxicity = float(t)
            if doc.toxicity > self.config.toxicity_threshold:
                results[i] = Outcome(DROPPED, "toxic", f"P(offensive)={doc.toxicity:.4f}")


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


_WORKER: dict[str, Any] = {}


def _init_worker(config: TextStageConfig, model: bytes, info: ClassifierInfo, landing: Storage) -> None:
    _WORKER["steps"] = TextFilter(config, QualityScorer(model, info))
    _WORKER["reader"] = RecordReader(landing)


def _worker_batch(rows: list[dict[str, Any]]) -> BatchResults:
    return _WORKER["steps"].run_batch(_WORKER["reader"], rows)


@contextlib.contextmanager
def _batch_results(
    landing: Storage, config: TextStageConfig, scorer: QualityScorer, batches: Iterator[list[dict[str, Any]]]
) -> Iterator[Iterator[tuple[list[dict[str, Any]], BatchResults]]]:
    """(batch, its results) in batch order, computed here or, with `config.workers` > 1, by a process pool.

    The pool gets at most two batches per worker ahead of the writer, so memory does not grow with the drop.
    """
    if config.workers == 1:
        steps = TextFilter(config, scorer)
        with RecordReader(landing) as reader:
            yield ((batch, steps.run_batch(reader, batch)) for batch in batches)
        return
    context = multiprocessing.get_context("spawn")  # no fork: the calling process may run threads (Dagster)
    init = (config, scorer.model_bytes, scorer.info, landing)
    with context.Pool(config.workers, initializer=_init_worker, initargs=init) as pool:

        def ordered() -> Iterator[tuple[list[dict[str, Any]], BatchResults]]:
            pending: deque[tuple[list[dict[str, Any]], Any]] = deque()
            for batch in batches:
                pending.append((batch, pool.apply_async(_worker_batch, (batch,))))
                if len(pending) >= 2 * config.workers:
                    done, result = pending.popleft()
                    yield done, result.get()
            while pending:
                done, result = pending.popleft()
                yield done, result.get()

        yield ordered()


def filter_drop(
    lake: Storage, landing: Storage, drop: str, writer: StageWriter, config: TextStageConfig, scorer: QualityScorer
) -> TextStageReport:
    """Run every HTML record of `drop` through the text filters into `writer`; returns histograms and index entries."""
    rows = read_records(lake, drop, "html", columns=READ_COLUMNS)
    report = TextStageReport()
    with _batch_results(landing, config, scorer, _batches(rows, config.batch_size)) as results:
        for batch, (outcomes, scores, repeated) in results:
            kept: list[dict[str, Any]] = []
            for row, result in zip(batch, outcomes, strict=True):
                if isinstance(result, Outcome):
                    (writer.drop if result.outcome == DROPPED else writer.reject)(row, result.reason, result.detail)
                    continue
                kept.append(_row(result, config.extractor))
                report.languages[result.language] += 1
                report.charset_sources[result.page.charset_source] += 1
            entries = IndexEntries.from_texts([r["record_id"] for r in kept], [r["text"] for r in kept], config.minhash)
            for out, key in zip(kept, entries.exact_keys.tolist(), strict=True):
                writer.keep(out | {"exact_key": f"{key:016x}"})
            report.entries.append(entries)
            report.quality_scores += scores
            report.repeated_texts += repeated
            release_free_memory()
    return report
