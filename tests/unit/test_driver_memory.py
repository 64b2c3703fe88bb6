"""The drivers' memory does not depend on the drop's size: they hold shard specs, summaries and duplicate edges only.

The same number of shards (4) at 1x and 8x of a synthetic drop on the local engine, and the driver's peak traced
allocation (`tracemalloc`) without the engine's work (shards, bucket-range and span tasks): filtered_text (planning,
publishing, summing histograms, merging the dedup index from side parts), extracted_text (decisions written per
part), transcribed_audio's dedup (index and decisions from the shards' staged entries), deduped_images
(decisions of the candidates with a duplicate edge only; captions, edges, normalization and the index in
tasks) and video_clips (the same for clips: captions and track files, prior matches, edges, the clip index and
the WebDataset in tasks). Reading the index entries back (~300 bytes per candidate document, as the text driver
did before), holding every candidate's decision or keeping every quality score would grow it by tens of kB at 8x.
"""

import io
import random
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import av
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from mmrecipe.audio.transcript_postprocessing import dedup_parts, write_entries
from mmrecipe.crawl_index import index_drop, read_records
from mmrecipe.dedup import BandIndex, band_index
from mmrecipe.dedup.band_index import DecisionParts
from mmrecipe.engine import LocalEngine, Shard
from mmrecipe.images.image_analysis import ImageStageConfig
from mmrecipe.images.stage import run_image_stage
from mmrecipe.storage import Storage
from mmrecipe.text.dedup_stage import EXTRACTED, FILTERED, dedup_drop
from mmrecipe.text.pipeline import TextStageConfig, filter_drop
from mmrecipe.text.quality_classifier import QualityScorer
from mmrecipe.video.stage import VideoStageResult, run_video_stage
from tests.unit.test_text_pipeline import html, scorer  # noqa: F401  (the module's classifier fixture)
from tests.warc_fixtures import HttpResponse, warc_bytes

WORDS = sorted({w for name in ("exceptions", "execmodel", "naming", "import") for w in topics[name].split()})
DOCS_1X = 30
SHARDS = 4


class DriverTrace:
    """The driver's peak traced allocation with the engine's work left out (on a pool it runs in other processes).

    Tracing pauses while the engine runs shards or tasks; a segment's peak counts on top of what earlier
    segments still held when they ended (an upper bound of the driver's own peak)."""

    def __init__(self) -> None:
        self.held = self.peak = 0

    def pause(self) -> None:
        current, peak = tracemalloc.get_traced_memory()
        self.peak, self.held = max(self.peak, self.held + peak), self.held + current
        tracemalloc.stop()


@dataclass(frozen=True)
class UntracedEngine:
    """The local engine (inline, one worker): its shards and tasks run with the driver's tracing paused."""

    trace: DriverTrace
    name: str = "local"

    def run(self, fn: Callable[[Shard], Any], shards: Sequence[Shard], crashed: Callable[[Shard, str], Any]) -> list:
        self.trace.pause()
        try:
            return LocalEngine(1).run(fn, shards, crashed)
        finally:
            tracemalloc.start()

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list:
        self.trace.pause()
        try:
            return LocalEngine(1).map(fn, items)
        finally:
            tracemalloc.start()


def page(rng: random.Random) -> str:
    """Four paragraphs of three sentences of words of the Python reference: a distinct page the rules keep."""
    sentences = [" ".join(["The", *rng.choices(WORDS, k=11)]) + "." for _ in range(12)]
    return "\n\n".join(" ".join(sentences[i : i + 3]) for i in range(0, 12, 3))


def driver_peak(root: Path, docs: int, scorer: QualityScorer, stage: str = FILTERED) -> tuple[int, int]:  # noqa: F811
    """The driver's peak traced bytes after the shards of `stage` (filtered_text, or extracted_text after it) over
    `docs` pages ran, and how many documents filtered_text kept (extracted_text's candidates)."""
    rng = random.Random(docs)
    pages = [HttpResponse(f"http://example.org/{i}.html", html(page(rng)).encode()) for i in range(docs)]
    landing, lake = Storage(str(root / "landing")), Storage(str(root / "lake"), scratch=str(root / "tmp"))
    data = warc_bytes(pages)
    landing.write_bytes(landing.uri("d1", "crawl.warc.gz"), data)
    index_drop(landing, lake, "d1", ["crawl.warc.gz"])
    config = TextStageConfig(rules_preset="whitespace", toxicity_threshold=1.0)
    trace = DriverTrace()
    engine = UntracedEngine(trace)
    if stage == FILTERED:
        tracemalloc.start()
    run, report = filter_drop(
        engine if stage == FILTERED else LocalEngine(1), lake, landing, "d1", config, scorer,
        shard_bytes=len(data) // SHARDS + 1,
    )  # fmt: skip
    if stage == EXTRACTED:
        tracemalloc.start()
        extracted, decisions = dedup_drop(engine, lake, "d1", BandIndex(lake, FILTERED, map_tasks=engine.map))
    trace.pause()
    assert run.shards_total == SHARDS and report.index_version
    assert sum(report.quality_bins) == run.output.counts.kept  # every kept document was scored, none dropped after
    if stage == EXTRACTED:
        assert extracted.shards_total == SHARDS and decisions.counts["kept"] == extracted.output.counts.kept
        assert extracted.output.counts.kept + sum(extracted.output.counts.dropped.values()) > run.output.counts.kept
    return trace.peak, run.output.counts.kept


def test_the_text_drivers_peak_memory_is_flat_from_1x_to_8x(
    tmp_path: Path,
    scorer: QualityScorer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A drop of fewer than TASK_KEYS dedup keys is one bucket range gathered in the driver (a constant bound);
    lowered here, the 8x drop's ranges are engine tasks, as a large drop's are."""
    monkeypatch.setattr(band_index, "TASK_KEYS", 1_000)
    driver_peak(tmp_path / "warm-up", DOCS_1X, scorer)  # first-time imports and caches
    small, kept_small = driver_peak(tmp_path / "1x", DOCS_1X, scorer)
    large, kept_large = driver_peak(tmp_path / "8x", 8 * DOCS_1X, scorer)
    assert kept_small > DOCS_1X * 0.6 and kept_large > 8 * DOCS_1X * 0.6  # most are candidates, with index entries
    assert large < small + 16 * 1024, (small, large)  # ~150 more candidates x ~300 bytes would be ~45 kB


def transcripts(n: int, seed: int) -> list[dict]:
    """`n` distinct kept transcripts (redacted rows as the audio pass stages them: id and text)."""
    rng = random.Random(seed)
    return [{"record_id": f"clip-{seed}-{i:05d}", "transcript": page(rng)} for i in range(n)]


def audio_driver_peak(root: Path, clips: int) -> tuple[int, DecisionParts]:
    """The driver's peak traced bytes while transcribed_audio[d2] decides `clips` transcripts (3 copies of d1's)."""
    lake = Storage(str(root / "lake"))
    earlier = transcripts(DOCS_1X, 1)
    rows = earlier[:3] + transcripts(clips - 3, 2)  # the same 3 duplicates at 1x and 8x
    staged = lake.uri("staging")
    first = [write_entries(lake, staged, "d1-0", earlier, 16)]
    dedup_parts(lake, "d1", first, lake.uri("decisions", "d1"), buckets=16)
    cut = [len(rows) * i // SHARDS for i in range(SHARDS + 1)]  # what the shards stage, before the driver runs
    parts = [write_entries(lake, staged, f"d2-{i}", rows[cut[i] : cut[i + 1]], 16) for i in range(SHARDS)]
    trace = DriverTrace()
    engine = UntracedEngine(trace)
    tracemalloc.start()
    try:
        decided = dedup_parts(lake, "d2", parts, lake.uri("decisions", "d2"), buckets=16, map_tasks=engine.map)
        trace.pause()
    finally:
        tracemalloc.stop()
    decisions = pa.concat_tables([lake.read_table(u) for u in decided.parts])
    assert decisions["record_id"].to_pylist() == [r["record_id"] for r in rows]  # every clip, in order
    return trace.peak, decided


def test_the_audio_drivers_dedup_memory_is_flat_from_1x_to_8x(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The drop's index and each shard's decisions are written in engine tasks from the shards' staged entries;
    the driver holds part names, counts and the duplicate edges (3 at both sizes). Holding a decision per clip
    (as the driver did before: ~250 bytes each, ids and verdicts) would grow it by ~50 kB at 8x."""
    monkeypatch.setattr(band_index, "TASK_KEYS", 1_000)
    audio_driver_peak(tmp_path / "warm-up", DOCS_1X)
    small, one = audio_driver_peak(tmp_path / "1x", DOCS_1X)
    large, eight = audio_driver_peak(tmp_path / "8x", 8 * DOCS_1X)
    assert one.counts == {"kept": DOCS_1X - 3, "exact_duplicate": 3, "near_duplicate": 0, "cross_partition": 3}
    assert eight.counts == {"kept": 8 * DOCS_1X - 3, "exact_duplicate": 3, "near_duplicate": 0, "cross_partition": 3}
    assert large < small + 16 * 1024, (small, large)


def test_the_extracted_text_drivers_peak_memory_is_flat_from_1x_to_8x(
    tmp_path: Path,
    scorer: QualityScorer,  # noqa: F811
) -> None:
    """extracted_text's decisions are written per filtered_text part in tasks (`BandIndex.decide_parts`), and
    each shard reads its own part: the driver holds part names, counts and duplicate edges. Holding every
    candidate's decision (`BandIndex.decide`, as the driver did before) grew it by ~29 kB at 8x."""
    driver_peak(tmp_path / "warm-up", DOCS_1X, scorer, EXTRACTED)
    small, kept_small = driver_peak(tmp_path / "1x", DOCS_1X, scorer, EXTRACTED)
    large, kept_large = driver_peak(tmp_path / "8x", 8 * DOCS_1X, scorer, EXTRACTED)
    assert kept_small > DOCS_1X * 0.6 and kept_large > 8 * DOCS_1X * 0.6
    assert large < small + 16 * 1024, (small, large)


def noise_png(rng: np.random.Generator) -> bytes:
    """A 96 x 96 image of random 12 x 12 blocks: kept by the filters, and far (in pHash) from any other."""
    blocks = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(blocks).resize((96, 96), Image.Resampling.NEAREST).save(out, "PNG")
    return out.getvalue()


def images_driver_peak(root: Path, images: int) -> tuple[int, int]:
    """The images driver's peak traced bytes over a drop of `images` distinct images in SHARDS shards, and kept."""
    rng = np.random.default_rng(images)
    responses = [HttpResponse(f"http://example.org/{i}.png", noise_png(rng), "image/png") for i in range(images)]
    landing, lake = Storage(str(root / "landing")), Storage(str(root / "lake"), scratch=str(root / "tmp"))
    data = warc_bytes(responses)
    landing.write_bytes(landing.uri("d1", "crawl.warc.gz"), data)
    index_drop(landing, lake, "d1", ["crawl.warc.gz"])
    trace = DriverTrace()
    tracemalloc.start()
    try:
        result = run_image_stage(lake, "d1", ImageStageConfig(workers=1, index_buckets=16),
                                 engine=UntracedEngine(trace), shard_bytes=len(data) // SHARDS + 1)  # fmt: skip
        trace.pause()
    finally:
        tracemalloc.stop()
    assert result.run.shards_total == SHARDS
    return trace.peak, result.run.output.counts.kept


def test_the_images_drivers_peak_memory_is_flat_from_1x_to_8x(tmp_path: Path) -> None:
    """The bound the text and audio drivers meet. The driver holds three 64-bit numbers per candidate (position,
    pHash, byte-hash key: ~5 kB more at 8x; ~33 kB at 30 images, ~40 kB at 240) and decides only the candidates
    with a duplicate edge; every caption reference, index entry and decision of a candidate without an edge stays
    in the tasks. Before (every candidate, decision, URL, caption and index entry in the driver) it grew by ~4 kB
    per image: 166 kB at 30 images, 1.0 MB at 240."""
    images_driver_peak(tmp_path / "warm-up", DOCS_1X)
    small, kept_small = images_driver_peak(tmp_path / "1x", DOCS_1X)
    large, kept_large = images_driver_peak(tmp_path / "8x", 8 * DOCS_1X)
    assert (kept_small, kept_large) == (DOCS_1X, 8 * DOCS_1X)  # distinct images: every one kept
    assert large < small + 16 * 1024, (small, large)


VIDEOS_1X = 8  # of similar sizes: each of the SHARDS byte cells starts a record


def scrolling_mp4(rng: np.random.Generator) -> bytes:
    """A 1.2 s, 64 x 48 H.264 MP4 of random 8 x 8 blocks scrolling 1 pixel a frame: one shot, moving, kept by
    the clip filters, and far (in pHash) from any other."""
    blocks = np.repeat(np.repeat(rng.integers(0, 256, (6, 16, 3), dtype=np.uint8), 8, 0), 8, 1)
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.roll(blocks, i, 1)[:, :64]), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out.getvalue()


def video_driver_peak(root: Path, videos: int) -> tuple[int, VideoStageResult]:
    """The video driver's peak traced bytes over a drop of `videos` distinct videos in SHARDS shards, each embedded
    with a title by its own page (captions), and the stage's result."""
    rng = np.random.default_rng(videos)
    responses = []
    for i in range(videos):
        url = f"http://example.org/v{i}.mp4"
        body = f'<html><body><p>clip {i}</p><video src="{url}" title="Clip number {i}"></video></body></html>'
        responses += [HttpResponse(f"http://example.org/{i}.html", body.encode()),
                      HttpResponse(url, scrolling_mp4(rng), "video/mp4")]  # fmt: skip
    landing, lake = Storage(str(root / "landing")), Storage(str(root / "lake"), scratch=str(root / "tmp"))
    data = warc_bytes(responses)
    landing.write_bytes(landing.uri("d1", "crawl.warc.gz"), data)
    index_drop(landing, lake, "d1", ["crawl.warc.gz"])
    shard_bytes = sum(read_records(lake, "d1", "video", ["warc_length"])["warc_length"].to_pylist()) // SHARDS + 1
    trace = DriverTrace()
    tracemalloc.start()
    try:
        result = run_video_stage(lake, "d1", engine=UntracedEngine(trace), shard_bytes=shard_bytes)
        trace.pause()
    finally:
        tracemalloc.stop()
    assert result.run.shards_total == SHARDS
    return trace.peak, result


def test_the_video_drivers_peak_memory_is_flat_from_1x_to_8x(tmp_path: Path) -> None:
    """The images driver's bound. The driver holds three 64-bit numbers per candidate clip (position and clip index,
    pHash, byte-hash key) and decides only the clips with a duplicate edge; captions, track files, index entries
    and the WebDataset stay in the tasks. Before (every video URL, caption, candidate, decision and index entry
    in the driver, and the WebDataset written there) it grew by ~10 kB per video: 8.50 MB at 8 videos, 9.06 MB at
    64 (after: 31 kB and 33 kB)."""
    video_driver_peak(tmp_path / "warm-up", VIDEOS_1X)
    small, one = video_driver_peak(tmp_path / "1x", VIDEOS_1X)
    large, eight = video_driver_peak(tmp_path / "8x", 8 * VIDEOS_1X)
    for result, n in ((one, VIDEOS_1X), (eight, 8 * VIDEOS_1X)):  # distinct moving clips: each kept, captioned
        assert (result.output.counts.kept, result.report.records, result.report.shard_samples) == (n, n, n)
        assert result.report.caption_sources == {"title": n} and result.report.pages == n
    assert large < small + 16 * 1024, (small, large)
