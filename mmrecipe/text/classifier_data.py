"""The quality classifier's training data: reference (positive) documents and a fixed-seed crawl sample.

Positives are the documents of a reference text file (separated by blank lines; by default the
Python Language Reference installed with the package, see `default_reference_texts`) and/or the
crawled pages whose URL is in a reference list. The other HTTP-200 HTML pages of the chosen drops
are ordered by sha256(seed:record_id); the first half (at most `max_negatives`) become negatives and
the rest (at most `max_calibration`) a held-out calibration sample whose scores define the
percentile → score-threshold mapping. Only with fewer than two other pages does calibration fall
back to the training negatives (recorded in the result).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from mmrecipe.crawl_index import read_records
from mmrecipe.package_data import bundled
from mmrecipe.storage import Storage
from mmrecipe.text.pages import Page, read_page
from mmrecipe.warc_index import RecordReader, normalize_uri

_BLANK_LINES = re.compile(r"\n\s*\n")
COLUMNS = ["record_id", "drop", "warc_path", "warc_offset", "warc_length", "target_uri", "http_status"]


@dataclass
class TrainingSet:
    """Texts to train and calibrate the classifier on, and where they came from."""

    positives: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)
    calibration: list[str] = field(default_factory=list)
    positive_ids: list[str] = field(default_factory=list)
    calibration_is_heldout: bool = True


def default_reference_texts() -> str:
    """The default positives installed with the package: 63 topics of the Python Language Reference.

    Real edited prose (PSF License v2) from CPython's `pydoc_data`, independent of what was crawled;
    built by `samples/make_reference_texts.py`.
    """
    return str(bundled("reference", "python_reference.txt"))


def read_url_list(path: str | Path) -> list[str]:
    """URLs of a reference list file: one per line, blank lines and `#` comments ignored."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [u for line in lines if (u := normalize_uri(line.split("#", 1)[0].strip()))]


def read_text_documents(path: str | Path) -> list[str]:
    """Documents of a reference text file, separated by blank lines."""
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"reference text file {str(path)!r} does not exist: point the quality classifier's positive_texts_file "
            "(or `mmrecipe ingest --reference-texts`) at a UTF-8 file of documents separated by blank lines"
        )
    text = Path(path).read_text(encoding="utf-8")
    return [d.strip() for d in _BLANK_LINES.split(text) if d.strip()]


def _order_key(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}:{record_id}".encode()).hexdigest()


def _usable(reader: RecordReader, rows: Iterable[dict], extractor: str) -> Iterator[tuple[str, str]]:
    """(text, record_id) of the rows whose page can be read and has text, in order."""
    for row in rows:
        page = read_page(reader, row, extractor)
        if isinstance(page, Page):
            yield page.text, row["record_id"]


def _texts(usable: Iterator[tuple[str, str]], n: int | None = None) -> tuple[list[str], list[str]]:
    pairs = list(itertools.islice(usable, n))
    return [t for t, _ in pairs], [i for _, i in pairs]


def training_set(
    lake: Storage,
    landing: Storage,
    drops: Sequence[str],
    positive_urls: Iterable[str] = (),
    positive_texts: Sequence[str] = (),
    max_negatives: int = 2000,
    max_calibration: int = 2000,
    seed: int = 0,
    extractor: str = "resiliparse",
) -> TrainingSet:
    """Positives (reference URLs found in the crawl, plus reference texts), negatives and a calibration sample."""
    wanted = {u for u in (normalize_uri(x) for x in positive_urls) if u}
    tables = [read_records(lake, d, "html", columns=COLUMNS) for d in sorted(drops)]
    rows = pa.concat_tables(tables) if tables else pa.table({c: [] for c in COLUMNS})
    rows = rows.filter(pc.equal(rows["http_status"], 200)).to_pylist()
    positive_rows = [r for r in rows if r["target_uri"] in wanted]
    others = sorted((r for r in rows if r["target_uri"] not in wanted), key=lambda r: _order_key(seed, r["record_id"]))
    n_neg = min(max_negatives, (len(others) + 1) // 2) if len(others) >= 2 else len(others)
    out = TrainingSet()
    with RecordReader(landing) as reader:
        out.positives, out.positive_ids = _texts(_usable(reader, positive_rows, extractor))
        crawl = _usable(reader, others, extractor)  # unusable pages (e.g. page_too_large) are skipped, not counted
        out.negatives, _ = _texts(crawl, n_neg)
        out.calibration, _ = _texts(crawl, max_calibration)
    out.positives += list(positive_texts)
    if not out.calibration:
        out.calibration, out.calibration_is_heldout = list(out.negatives), False
    return out
