"""The deduped_images stage of one drop: image records → filtered, deduplicated, captioned images.

Every image record of the drop (raw_crawl rows of kind "image") ends as exactly one kept row or
one drop/reject, in four passes:

1. **Captions and opt-outs.** Every HTML page of the drop is parsed for `<img>` references
   (`captions.CaptionIndex`).
2. **Per record** (in WARC order): HTTP status, robots opt-out (of a referencing page, or the
   image's own `X-Robots-Tag`), header probe (bomb limit, format, size, aspect, pixels), then the
   pHash input (`analyse_image`), the same way for every format: JPEGs from a grey decode at
   1/2-1/8 scale (`Image.draft`, both sides >= 128 px), other formats from a full decode
   composited over white; then an integer box reduction and a Lanczos resize to 32x32. Nothing is
   normalized yet, except when the NSFW scorer is on (it needs the normalized pixels now).
   Byte-identical payloads are analysed once.
3. **Dedup** against the kept images of earlier drops and earlier records (`phash_index.decide`).
   Only kept images and near duplicates within `PIXEL_CHECK_BITS` (to tell `pixel_duplicate` from
   `near_duplicate`) are then decoded again and normalized (`normalize_image`: sRGB/ICC, resize to
   `max_side`, JPEG re-encode, pixel hash); if that fails for a kept image, it is rejected and the
   decisions are redone without it, so nothing is ever dropped as a duplicate of a rejected image.
4. **Output** in WARC order: kept rows with the normalized JPEG, drops/rejects with reasons,
   WebDataset shards of captioned images, and the drop's index entries.

Payloads are read in the main thread (the record reader is not thread-safe); the per-image work
of passes 2 and 3 runs on `workers` threads (`map_in_order`: Pillow releases the GIL while it
decodes and resizes), and its results are taken back in WARC order, so the output is
byte-identical whatever `workers` is.
"""

from __future__ import annotations

import base64
import io
import math
import os
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
from PIL import Image

from mmrecipe.crawl_index import read_records
from mmrecipe.dedup.bucket_file import DEFAULT_BUCKETS
from mmrecipe.images import phash_index
from mmrecipe.images.captions import Caption, CaptionIndex, scan_page
from mmrecipe.images.decoding import (
    DEFAULT_MAX_DECODE_PIXELS,
    ImageHeader,
    ImageRejected,
    NormalizedImage,
    decode_image,
    hash_frame,
    normalize,
    open_image,
    read_header,
)
from mmrecipe.images.image_filters import ImageFilters, NsfwScorer
from mmrecipe.images.phash import phash_batch, reduced_phash_input, to_int64
from mmrecipe.images.webdataset import ShardWriter
from mmrecipe.opt_out import OPT_OUT_REASON, opts_out_of_images, robots_directives
from mmrecipe.stage_output import (
    PROVENANCE_COLUMNS,
    PROVENANCE_FIELDS,
    SIDE,
    StageOutput,
    StageWriter,
    stage_prefix,
)
from mmrecipe.storage import Storage
from mmrecipe.warc_index import RecordReader, normalize_uri

ASSET = "deduped_images"
PIXEL_CHECK_BITS = 2  # near duplicates this close are compared pixel by pixel (pixel_duplicate)
MAX_DEFAULT_WORKERS = 8
T = TypeVar("T")
R = TypeVar("R")

IMAGE_SCHEMA = pa.schema(
    [
        *PROVENANCE_FIELDS,
        pa.field("url", pa.string()),
        pa.field("page_url", pa.string()),
        pa.field("width", pa.int32(), nullable=False),  # original size, after EXIF rotation
        pa.field("height", pa.int32(), nullable=False),
        pa.field("format", pa.string(), nullable=False),  # Pillow format: JPEG, PNG, WEBP, GIF
        pa.field("mime_type", pa.string()),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("n_frames", pa.int32(), nullable=False),  # > 1: animated, frame 0 kept
        pa.field("sha256", pa.string(), nullable=False),  # of the original bytes
        pa.field("pixel_sha256", pa.string(), nullable=False),  # of the normalized RGB pixels
        pa.field("phash", pa.int64(), nullable=False),  # 64-bit pHash, uint64 bits stored as int64
        pa.field("dedup_cluster", pa.string(), nullable=False),
        pa.field("caption", pa.string(), nullable=False),
        pa.field("caption_source", pa.string(), nullable=False),  # alt, title, surrounding_text, none
        pa.field("nsfw_score", pa.float32()),  # null when the NSFW filter is off
        pa.field("norm_width", pa.int32(), nullable=False),
        pa.field("norm_height", pa.int32(), nullable=False),
        pa.field("normalized_jpeg", pa.binary(), nullable=False),
    ]
)


def _cgroup_cpus() -> int | None:
    """The CPU quota of this process's cgroup (v2 `cpu.max` or v1 CFS quota), rounded up; None if unlimited."""
    root = Path("/sys/fs/cgroup")
    try:
        if (root / "cpu.max").is_file():
            quota, period = (root / "cpu.max").read_text().split()[:2]
        else:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1"):
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


def default_workers(cap: int = MAX_DEFAULT_WORKERS) -> int:
    """The CPUs this process may use (affinity mask, and cgroup CPU quota if any), at most `cap`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity outside Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cap, cpus, _cgroup_cpus() or cpus))


@dataclass(frozen=True)
class ImageStageConfig:
    """Everything that decides the stage's output (see the asset's Config for the defaults' reasons).

    `workers` (threads for the per-image work) changes only the speed, never the output.
    """

    max_side: int = 512
    filters: ImageFilters = field(default_factory=ImageFilters)
    max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS
    hamming_k: int = 10
    hash_bands: int = 4
    index_buckets: int = DEFAULT_BUCKETS  # of the cross-drop pHash index (MMRECIPE_DEDUP_BUCKETS)
    surrounding_text: bool = True
    nsfw: bool = False
    nsfw_threshold: float = 0.5
    nsfw_model_path: str | None = None
    shard_samples: int = 1000
    shard_uncaptioned: bool = False
    workers: int = field(default_factory=default_workers)


def map_in_order(
    fn: Callable[[T], R], items: Iterable[T], workers: int, window: int | None = None
) -> Iterator[tuple[T, Future[R]]]:
    """`fn` over `items` on `workers` threads: (item, future) pairs in input order, at most `window` in flight.

    `items` is consumed in the calling thread, so it may read from non-thread-safe sources; the
    futures hold `fn`'s result or exception. With `workers <= 1` everything runs inline. An
    abandoned iteration cancels the calls that have not started and waits for the running ones.
    """
    if workers <= 1:
        for item in items:
            future: Future[R] = Future()
            try:
                future.set_result(fn(item))
            except Exception as e:
                future.set_exception(e)
            yield item, future
        return
    pool = ThreadPoolExecutor(workers, thread_name_prefix="mmrecipe-images")
    pending: deque[tuple[T, Future[R]]] = deque()
    limit = window or 4 * workers
    try:
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) >= limit:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class _Encoded:
    """A normalized image reduced to what the stage keeps of it: its JPEG, pixel hash, size and NSFW score."""

    jpeg: bytes
    pixel_sha256: str
    size: tuple[int, int]
    n_frames: int
    nsfw_score: float | None


@dataclass
class _Normalized:
    """A normalized image spilled to the local scratch file."""

    offset: int
    length: int
    pixel_sha256: str
    size: tuple[int, int]
    n_frames: int
    nsfw_score: float | None = None


@dataclass
class _Features:
    """What pass 2 learned about an image that passed the filters."""

    pos: int
    sha256: str
    header: ImageHeader
    grey: np.ndarray | None  # 32x32 pHash input until hashed
    phash: int = 0
    norm: _Normalized | None = None


@dataclass
class ImageStageReport:
    """What the stage did beyond the counts: histograms, captions, shards, index state."""

    formats: Counter[str] = field(default_factory=Counter)
    sizes: Counter[str] = field(default_factory=Counter)
    caption_sources: Counter[str] = field(default_factory=Counter)
    pages: int = 0
    opted_out_pages: int = 0
    unreadable_pages: int = 0
    animated: int = 0
    shards: list[str] = field(default_factory=list)
    shard_samples: int = 0
    clusters: int = 0
    digest: str = ""
    index_bytes_read: int = 0  # pHash index bytes (footers, row groups) read to decide against earlier drops
    stale_drops: list[str] = field(default_factory=list)
    thumbnails: list[dict[str, Any]] = field(default_factory=list)

    @property
    def caption_coverage(self) -> float:
        kept = sum(self.caption_sources.values())
        return round(1 - self.caption_sources["none"] / kept, 4) if kept else 0.0


@dataclass
class ImageStageResult:
    """The published stage output and its report."""

    output: StageOutput
    report: ImageStageReport


class _Spill:
    """Normalized JPEGs parked in a local temporary file until the output pass."""

    def __init__(self, scratch: str) -> None:
        self.file = tempfile.TemporaryFile(dir=scratch)  # noqa: SIM115 (closed by close())
        self.end = 0

    def put(self, data: bytes) -> tuple[int, int]:
        self.file.seek(self.end)
        self.file.write(data)
        self.end += len(data)
        return self.end - len(data), len(data)

    def get(self, offset: int, length: int) -> bytes:
        self.file.seek(offset)
        return self.file.read(length)

    def close(self) -> None:
        self.file.close()


class ImageFiltered(Exception):
    """A decodable image that a header-level policy filter drops: a reason code and a detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class AnalysedImage:
    """An image that passed the filters: header facts, 32x32 pHash input and, if asked for, its normalization."""

    header: ImageHeader
    grey: np.ndarray
    normalized: NormalizedImage | None


def analyse_image(data: bytes, config: ImageStageConfig, normalize_now: bool = False) -> AnalysedImage:
    """Pass 2 for one payload: probe, header filters, pHash input (raises ImageRejected or ImageFiltered).

    The format and size are filtered before anything past the header is read. The pHash input is
    the same for every format: `hash_frame` (a DCT-scaled grey decode for JPEGs, a full decode
    otherwise), then `reduced_phash_input`. `normalize_now` also normalizes the image (the NSFW scorer needs it
    before dedup); a PNG/WebP/GIF reuses its decoded frame for that, a JPEG is decoded again.
    """
    im = open_image(data, config.max_decode_pixels)
    dropped = config.filters.header_drop(str(im.format), *im.size)
    if dropped:
        raise ImageFiltered(*dropped)
    header = read_header(im, count_frames=normalize_now)  # frames are counted for kept images only
    grey = reduced_phash_input(hash_frame(im))
    if not normalize_now:
        return AnalysedImage(header, grey, None)
    if header.format == "JPEG":  # the hash decode was a grey draft: decode again
        return AnalysedImage(header, grey, normalize_image(data, config))
    return AnalysedImage(header, grey, normalize(im, header, config.max_side))


def normalize_image(data: bytes, config: ImageStageConfig) -> NormalizedImage:
    """Pass 3 for one payload: decode and normalize (sRGB, `max_side`, fixed-settings JPEG, pixel hash)."""
    return decode_image(data, config.max_side, config.max_decode_pixels)


def image_phash(data: bytes, max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS) -> int:
    """The unsigned 64-bit pHash the stage gives image bytes (raises ImageRejected like the stage)."""
    return int(phash_batch(reduced_phash_input(hash_frame(open_image(data, max_decode_pixels)))[None])[0])


def size_bucket(width: int, height: int) -> str:
    """A histogram bucket for an image's longer side."""
    side = max(width, height)
    for limit in (128, 256, 512, 1024, 2048):
        if side < limit:
            return f"<{limit}"
    return ">=2048"


def collect_captions(storage: Storage, drop: str, reader: RecordReader, surrounding_text: bool) -> CaptionIndex:
    """Image references of every HTML page of the drop (unreadable pages are counted, not fatal)."""
    index = CaptionIndex(surrounding_text=surrounding_text)
    pages = read_records(storage, drop, "html", columns=["warc_path", "warc_offset", "warc_length", "target_uri"])
    for order, page in enumerate(pages.to_pylist()):
        try:
            rec = reader.read(page["warc_path"], page["warc_offset"], page["warc_length"])
        except ValueError:
            index.pages += 1
            index.unreadable_pages += 1
            continue
        url = page["target_uri"] or ""
        opt_out, refs = scan_page(rec.payload, url, rec.http_headers, order)
        index.add_page(opt_out, refs)
    return index


class ImageStage:
    """One run of the stage over one drop."""

    def __init__(self, storage: Storage, drop: str, config: ImageStageConfig, scorer: Any = None) -> None:
        self.storage, self.drop, self.cfg = storage, drop, config
        self.scorer = scorer if scorer is not None else (NsfwScorer(config.nsfw_model_path) if config.nsfw else None)
        self.reader = RecordReader(storage)
        self.spill = _Spill(storage.scratch_dir())
        self.report = ImageStageReport()
        self.rows: list[dict[str, Any]] = []
        self.captions: list[Caption] = []
        self.terminal: dict[int, tuple[str, str, str]] = {}  # pos -> (outcome, reason, detail)
        self.features: dict[int, _Features] = {}

    # --- pass 2: one record ---------------------------------------------------------------------
    def _payload(self, row: dict[str, Any]) -> tuple[bytes, dict[str, str], int | None]:
        rec = self.reader.read(row["warc_path"], row["warc_offset"], row["warc_length"])
        return rec.payload, rec.http_headers, rec.http_status

    def _encoded(self, nimg: NormalizedImage) -> _Encoded:
        """Runs on a worker thread: what is kept of a normalized image, scored if the NSFW filter is on."""
        score = self.scorer.score(nimg.image) if self.scorer is not None else None
        return _Encoded(nimg.jpeg, nimg.pixel_sha256, nimg.size, nimg.header.n_frames, score)

    def _spilled(self, enc: _Encoded) -> _Normalized:
        offset, length = self.spill.put(enc.jpeg)
        return _Normalized(offset, length, enc.pixel_sha256, enc.size, enc.n_frames, enc.nsfw_score)

    def _analyse(self, data: bytes) -> tuple[ImageHeader, np.ndarray, _Encoded | None]:
        """Runs on a worker thread: `analyse_image` (raises ImageRejected / ImageFiltered)."""
        result = analyse_image(data, self.cfg, normalize_now=self.scorer is not None)  # NSFW needs pixels now
        return result.header, result.grey, self._encoded(result.normalized) if result.normalized else None

    def _screen(
        self, pos: int, row: dict[str, Any], seen: dict[str, int], copies: list[tuple[int, int]]
    ) -> bytes | None:
        """The payload of a record that needs analysing; records every other record's outcome (or copy)."""
        caption = self.captions[pos]
        try:
            data, headers, status = self._payload(row)
        except ValueError as e:
            self.terminal[pos] = ("rejected", "unreadable_record", str(e))
            return None
        if status is None or not 200 <= status < 300:
            self.terminal[pos] = ("rejected", "http_error", f"HTTP status {status} for an image/* response")
            return None
        if caption.opt_out:
            self.terminal[pos] = ("dropped", OPT_OUT_REASON, f"referenced by {caption.opt_out_page} (noimageai/noai)")
            return None
        if opts_out_of_images(robots_directives(headers)):
            self.terminal[pos] = ("dropped", OPT_OUT_REASON, f"X-Robots-Tag: {headers.get('x-robots-tag', '')}")
            return None
        mime_drop = self.cfg.filters.mime_drop(row["mime_type"])
        if mime_drop:
            self.terminal[pos] = ("dropped", *mime_drop)
            return None
        sha = row["payload_sha256"]
        if sha in seen:  # same bytes as an earlier record: same header, filters and hash
            copies.append((pos, seen[sha]))
            return None
        seen[sha] = pos
        return data

    def _to_analyse(self, copies: list[tuple[int, int]]) -> Iterator[tuple[int, bytes]]:
        seen: dict[str, int] = {}
        for pos, row in enumerate(self.rows):
            data = self._screen(pos, row, seen, copies)
            if data is not None:
                yield pos, data

    def analyse_all(self) -> None:
        index = collect_captions(self.storage, self.drop, self.reader, self.cfg.surrounding_text)
        self.report.pages, self.report.opted_out_pages = index.pages, index.opted_out_pages
        self.report.unreadable_pages = index.unreadable_pages
        self.rows = read_records(self.storage, self.drop, "image").to_pylist()
        self.captions = [index.caption_for(normalize_uri(r["target_uri"])) for r in self.rows]
        copies: list[tuple[int, int]] = []  # (pos, pos of the first record with the same bytes)
        work = map_in_order(lambda item: self._analyse(item[1]), self._to_analyse(copies), self.cfg.workers)
        for (pos, _), future in work:
            try:
                header, grey, enc = future.result()
            except ImageFiltered as d:
                self.terminal[pos] = ("dropped", d.reason, d.detail)
                continue
            except ImageRejected as e:
                self.terminal[pos] = ("rejected", e.reason, e.detail)
                continue
            sha = self.rows[pos]["payload_sha256"]
            self.features[pos] = _Features(pos, sha, header, grey, norm=self._spilled(enc) if enc else None)
        for pos, first in copies:
            if first in self.terminal:
                self.terminal[pos] = self.terminal[first]
            else:
                self.features[pos] = replace(self.features[first], pos=pos)
        self.features = dict(sorted(self.features.items()))
        for pos, f in list(self.features.items()):
            score = f.norm.nsfw_score if f.norm else None
            if score is not None and score >= self.cfg.nsfw_threshold:
                del self.features[pos]
                self.terminal[pos] = ("dropped", "nsfw", f"NudeNet score {score:.3f} >= {self.cfg.nsfw_threshold}")
        feats = list(self.features.values())  # byte-identical copies hold the same grey pixels
        for start in range(0, len(feats), 1024):
            batch = feats[start : start + 1024]
            for f, h in zip(batch, phash_batch(np.stack([f.grey for f in batch])).tolist(), strict=True):
                f.phash, f.grey = int(to_int64(h)), None

    # --- pass 3: decisions -------------------------------------------------------------------------
    def _normalize_late(self, todo: list[tuple[int, bool]]) -> bool:
        """Normalize the images at `todo` (pos, kept) on the worker threads; whether a kept one failed."""
        items = ((pos, kept, self._payload(self.rows[pos])[0]) for pos, kept in todo)
        kept_failed = False
        for (pos, kept, _), future in map_in_order(
            lambda item: self._encoded(normalize_image(item[2], self.cfg)), items, self.cfg.workers
        ):
            try:
                self.features[pos].norm = self._spilled(future.result())
            except ImageRejected as e:
                self.terminal[pos] = ("rejected", e.reason, e.detail)
                kept_failed |= kept
        return kept_failed

    def decide(self, prior: phash_index.PriorKept) -> dict[int, phash_index.Decision]:
        """Dedup decisions, normalizing the kept images; redone if a kept image fails to normalize."""
        prior_pixels = dict(zip(prior.record_id, prior.pixel_sha256, strict=True))
        while True:
            order = sorted(self.features)
            cands = [
                phash_index.Candidate(self.rows[p]["record_id"], self.features[p].sha256, self.features[p].phash)
                for p in order
            ]
            decisions = dict(
                zip(order, phash_index.decide(cands, prior, self.cfg.hamming_k, self.cfg.hash_bands), strict=True)
            )
            todo = [
                (pos, d.kept)
                for pos, d in decisions.items()
                if self.features[pos].norm is None and (d.kept or _pixel_candidate(d))
            ]
            kept_failed = self._normalize_late(todo)
            for pos in [p for p in self.features if p in self.terminal]:
                del self.features[pos]
            if not kept_failed:
                break
        by_id = {self.rows[p]["record_id"]: self.features[p] for p in decisions if p in self.features}
        for pos, d in list(decisions.items()):
            if pos not in self.features:
                del decisions[pos]
            elif _pixel_candidate(d):
                owner = prior_pixels.get(d.owner or "") or (
                    by_id[d.owner].norm.pixel_sha256 if d.owner in by_id else None
                )
                if owner is not None and owner == self.features[pos].norm.pixel_sha256:
                    decisions[pos] = replace(d, reason="pixel_duplicate")
        return decisions

    # --- pass 4: output ------------------------------------------------------------------------------
    def _kept_row(self, pos: int, d: phash_index.Decision) -> dict[str, Any]:
        row, f, cap = self.rows[pos], self.features[pos], self.captions[pos]
        assert f.norm is not None
        return {
            **{c: row[c] for c in PROVENANCE_COLUMNS},
            "url": normalize_uri(row["target_uri"]),
            "page_url": cap.page_url,
            "width": f.header.width,
            "height": f.header.height,
            "format": f.header.format,
            "mime_type": row["mime_type"],
            "bytes": int(row["payload_length"] or 0),
            "n_frames": f.norm.n_frames,  # counted when normalized (pass 2 only asks "animated?")
            "sha256": f.sha256,
            "pixel_sha256": f.norm.pixel_sha256,
            "phash": f.phash,
            "dedup_cluster": d.cluster,
            "caption": cap.caption,
            "caption_source": cap.source,
            "nsfw_score": f.norm.nsfw_score,
            "norm_width": f.norm.size[0],
            "norm_height": f.norm.size[1],
            "normalized_jpeg": self.spill.get(f.norm.offset, f.norm.length),
        }

    def write(self, out: StageWriter, decisions: dict[int, phash_index.Decision], shards: ShardWriter) -> pa.Table:
        """Kept rows, drops and rejects in WARC order, and shards; returns the drop's index entries."""
        entries: list[dict[str, Any]] = []
        for pos, row in enumerate(self.rows):
            if pos in self.terminal:
                outcome, reason, detail = self.terminal[pos]
                (out.drop if outcome == "dropped" else out.reject)(row, reason, detail)
                continue
            d, f = decisions[pos], self.features[pos]
            entries.append(
                {
                    **{c: row[c] for c in ("record_id", "drop", "warc_path", "warc_offset")},
                    "url": normalize_uri(row["target_uri"]),
                    "sha256": f.sha256,
                    "pixel_sha256": f.norm.pixel_sha256 if f.norm else None,
                    "phash": f.phash,
                    "kept": d.kept,
                    "dedup_cluster": d.cluster,
                    "reason": d.reason,
                    "hamming": d.hamming,
                }
            )
            if not d.kept:
                where = f" in drop {d.owner_drop}" if d.owner_drop else ""
                out.drop(row, d.reason or "near_duplicate", f"of {d.owner}{where}, hamming {d.hamming}")
                continue
            kept = self._kept_row(pos, d)
            out.keep(kept)
            self._account(kept, shards)
        return pa.Table.from_pylist(entries, schema=phash_index.ENTRY_SCHEMA)

    def _account(self, kept: dict[str, Any], shards: ShardWriter) -> None:
        rep = self.report
        rep.formats[kept["format"]] += 1
        rep.sizes[size_bucket(kept["width"], kept["height"])] += 1
        rep.caption_sources[kept["caption_source"]] += 1
        rep.animated += int(kept["n_frames"] > 1)
        rep.clusters += 1
        if len(rep.thumbnails) < 4:
            rep.thumbnails.append(
                {**{k: kept[k] for k in ("url", "caption")}, "thumb": thumbnail(kept["normalized_jpeg"])}
            )
        if kept["caption"] or self.cfg.shard_uncaptioned:
            meta = {k: kept[k] for k in (*PROVENANCE_COLUMNS, "url", "page_url", "caption_source", "width", "height")}
            meta |= {"format": kept["format"], "sha256": kept["sha256"], "phash": f"{kept['phash'] & (2**64 - 1):016x}"}
            meta |= {"dedup_cluster": kept["dedup_cluster"]}
            shards.add(kept["record_id"], kept["normalized_jpeg"], kept["caption"], meta)

    def close(self) -> None:
        self.reader.close()
        self.spill.close()


def _pixel_candidate(d: phash_index.Decision) -> bool:
    """Whether a near duplicate is close enough that its pixels may be identical to its owner's."""
    return d.reason == "near_duplicate" and (d.hamming or 0) <= PIXEL_CHECK_BITS


def thumbnail(jpeg: bytes, side: int = 96) -> str:
    """A small JPEG data URI of an image, for markdown previews."""
    im = Image.open(io.BytesIO(jpeg))
    im.thumbnail((side, side))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def shards_prefix(storage: Storage, drop: str) -> str:
    """Where a drop's WebDataset shards live."""
    return storage.uri(stage_prefix(ASSET, drop, SIDE), "shards")


def run_image_stage(
    storage: Storage, drop: str, config: ImageStageConfig = ImageStageConfig(), scorer: Any = None
) -> ImageStageResult:
    """Run the stage for one drop: publish its tables, shards and index entries; return what it did."""
    stage = ImageStage(storage, drop, config, scorer)
    try:
        stage.analyse_all()
        match = phash_index.match_prior(
            storage, drop, np.array([f.phash for f in stage.features.values()], np.int64),
            [f.sha256 for f in stage.features.values()], config.hamming_k, bands=config.hash_bands,
            buckets=config.index_buckets,
        )  # fmt: skip
        stage.report.index_bytes_read = match.bytes_read
        decisions = stage.decide(match.prior)
        shards = ShardWriter(storage, shards_prefix(storage, drop), config.shard_samples)
        with StageWriter(storage, ASSET, drop, IMAGE_SCHEMA) as out:
            try:
                entries = stage.write(out, decisions, shards)
            except BaseException:
                shards.abort()
                raise
            stage.report.shards = shards.close()
            stage.report.shard_samples = shards.samples
            output = out.close()
        stage.report.digest = phash_index.write_entries(
            storage, drop, entries, match.basis, config.hamming_k, config.hash_bands, config.index_buckets
        )
        stage.report.stale_drops = phash_index.stale_drops(storage)
        return ImageStageResult(output, stage.report)
    finally:
        stage.close()
