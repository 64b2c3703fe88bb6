"""What the image stage learns from one image's bytes, its settings, and the threads that run it within a shard.

Pass 1 (`analyse_image`): header probe, size/format filters, then the pHash input, the same way
for every format: JPEGs from a grey decode at 1/2-1/8 scale (`Image.draft`, both sides >= 128 px),
other formats from a full decode composited over white; then an integer box reduction and a
Lanczos resize to 32x32. Nothing is normalized yet, except when the NSFW scorer is on (it needs the
normalized pixels now). Pass 2 (`normalize_image`): decode again and normalize (sRGB/ICC, resize to
`max_side`, JPEG re-encode, pixel hash), only for kept images and close near duplicates.

Within a shard, payloads are read in the calling thread (the record reader is not thread-safe)
and the per-image work runs on `workers` threads (`map_in_order`: Pillow releases the GIL while it
decodes and resizes); results are taken back in record order, so the output is byte-identical
whatever `workers` is.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

from mmrecipe.dedup.bucket_file import DEFAULT_BUCKETS
from mmrecipe.images.decoding import (
    DEFAULT_MAX_DECODE_PIXELS,
    ImageHeader,
    NormalizedImage,
    decode_image,
    hash_frame,
    normalize,
    open_image,
    read_header,
)
from mmrecipe.images.image_filters import ImageFilters
from mmrecipe.images.phash import phash_batch, reduced_phash_input

MAX_DEFAULT_WORKERS = 8
T = TypeVar("T")
R = TypeVar("R")


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


def thumbnail(jpeg: bytes, side: int = 96) -> str:
    """A small JPEG data URI of an image, for markdown previews."""
    im = Image.open(io.BytesIO(jpeg))
    im.thumbnail((side, side))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=70)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
