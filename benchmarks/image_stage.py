"""Benchmark: the image stage's decode + filter + pHash path against `PIL.Image.open` + `imagehash.phash`.

All sides process the same in-memory image bytes in the same run, in alternating rounds (each
round times every corpus and side once):

- decode floor: only the decodes the stage cannot skip, nothing else: an image its header filters
  drop is only opened, a JPEG decodes its grey `draft()` at the stage's hash size, any other
  image is decoded in full (`Image.open(...).load()`);
- baseline: `imagehash.phash(Image.open(io.BytesIO(data)))` per image, one thread;
- stage: what pass 2 of the stage runs, i.e. `analyse_image` per image (header probe, size/format
  filters, grey pHash input: DCT-scaled draft for JPEGs, full decode for PNG/WebP/GIF) through the
  stage's thread helper `map_in_order`, then one batched `phash_batch`; with `workers=1` (per core)
  and with the stage's default workers;
- stage+normalize: the same plus pass 3 for every image (`normalize_image`: second decode, sRGB,
  512 px JPEG re-encode, pixel hash), the full per-image cost of a kept image.

Corpora:
- `crawl`: every image payload Pillow can open in `samples/drops/*` (as crawled: photos, icons, a
  1x1 pixel...) plus the real photos of `tests/fixtures/images` and matplotlib's grace_hopper.jpg;
- `crawl-kept`: the same, only the images that pass the stage's filters (no icons), also split into
  its JPEGs and its other formats;
- `large`: those real photos upscaled (Lanczos) to a 2048 px longer side, JPEG q90, i.e. the size of
  typical camera photos on the web (synthetic upscales: say so when quoting the figure).

It also reports how far the stage's hash is from imagehash's on each corpus (Hamming bits).
Usage: `python benchmarks/image_stage.py [--rounds 5] [--workers N] [--write benchmarks/image_stage_results.md]`.
"""

import argparse
import io
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import imagehash
import matplotlib
import numpy as np
from fastwarc.warc import ArchiveIterator, WarcRecordType
from PIL import Image

from mmrecipe.images.decoding import HASH_MIN_SIDE, ImageRejected
from mmrecipe.images.image_analysis import (
    ImageFiltered,
    ImageStageConfig,
    analyse_image,
    default_workers,
    map_in_order,
    normalize_image,
)
from mmrecipe.images.phash import hamming, phash_batch

REPO = Path(__file__).resolve().parent.parent
PHOTOS = [
    REPO / "tests" / "fixtures" / "images" / f"{n}.jpg"
    for n in ("astronaut", "chelsea", "coffee", "hubble_deep_field", "rocket")
]
PHOTOS.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
CONFIG = ImageStageConfig()
NOTES = """## How to read this

- *baseline* is `imagehash.phash(PIL.Image.open(...))` per image on one thread. *stage* is pass 2
  of the stage (`analyse_image` through the stage's `map_in_order` thread helper, then a batched
  `phash_batch`): *w=1* runs it inline (the per-core figure), *w={w}* on the stage's default
  number of threads on this machine. Ratios are stage / baseline.
- *decode floor* is the stage's decodes alone (header-filtered images only opened, JPEGs as grey
  drafts, other formats in full) with no hashing, filtering or bookkeeping; *floor/baseline* is
  therefore the best per-core ratio any path making the same decodes could reach.
- JPEGs are hashed from a grey decode DCT-scaled by `Image.draft` to >= 128 px (the Huffman decoding
  stays; it is most of the floor at 512 px), so the stage's gain grows with photo size (`large`).
  A 64 px draft would save 0.07-0.1 ms per 512 px JPEG (about 10%; nothing at 2048 px) but moves
  hashes further (4 bits between a JPEG and its own PNG copy, 12 bits for an 80% resize + x1.3
  brightness copy, against 0 and 10 at 128 px; measured on 11 photos), so it is not used.
- PNG/WebP/GIF have no reduced-scale decoder: the stage decodes them in full, and that decode is
  the floor. Other decoders are no faster on the sample's kept PNG/GIF/WebP (measured outside this
  script on the same 5 images, ms per image: Pillow 1.66-1.84, pyspng 1.65, imagecodecs 1.59,
  OpenCV 1.76-2.78; PNG is bound by zlib inflate). So the per-core ratio on these formats cannot
  exceed *floor/baseline*; the stage gets close to it by greying and box-reducing
  (`reducing_gap=2`) before the Lanczos resize, and goes past it only with threads. Transparent
  palette images are composited over white through their 256 palette entries rather than per
  pixel (the same pixels, tested; 0.73 -> 0.16 ms on the sample's 384x303 one).
- *stage+normalize* adds pass 3 for every image (what a kept image costs: PNG/WebP/GIF are decoded
  a second time there, since pass 2 keeps only the 32x32 hash input). The stage normalizes only
  kept images and near duplicates within 2 bits of their owner.
- The `crawl` rows include icons and a tracking pixel that the stage drops from the header alone.
- *max/mean bits vs imagehash*: JPEG draft decodes differ from imagehash's hash by <= 2 bits;
  full decodes differ only through the box reduction (up to 4 bits, on one 512 px grey texture
  PNG) and, by 8 bits, on the palette PNG with a transparent background, which the stage
  composites over white (imagehash hashes the hidden palette colour)."""


def crawl_images() -> list[bytes]:
    """Image payloads of the sample drops that Pillow can open, plus the fixture photos."""
    out: list[bytes] = []
    for warc in sorted((REPO / "samples" / "drops").glob("*/*.warc*")):
        with warc.open("rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                if (rec.http_headers.get("Content-Type") or "").startswith("image/"):
                    out.append(rec.reader.read())
    out += [p.read_bytes() for p in PHOTOS]
    return [d for d in out if _opens(d)]


def _opens(data: bytes) -> bool:
    try:
        imagehash.phash(Image.open(io.BytesIO(data)))
        return True
    except Exception:  # broken or vector images: neither path is timed on them
        return False


def passes_filters(data: bytes) -> bool:
    try:
        analyse_image(data, CONFIG)
        return True
    except (ImageFiltered, ImageRejected):
        return False


def large_images(side: int) -> list[bytes]:
    out = []
    for p in PHOTOS:
        img = Image.open(p).convert("RGB")
        scale = side / max(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def decode_floor(images: list[bytes]) -> None:
    """The decodes pass 2 cannot skip: none for header-filtered images, a grey draft for JPEGs."""
    for d in images:
        im = Image.open(io.BytesIO(d))
        if CONFIG.filters.header_drop(str(im.format), *im.size):
            continue
        if im.format == "JPEG":
            im.draft("L" if im.mode in ("RGB", "L") else None, (HASH_MIN_SIDE, HASH_MIN_SIDE))
        im.load()


def baseline(images: list[bytes]) -> list[int]:
    return [int(str(imagehash.phash(Image.open(io.BytesIO(d)))), 16) for d in images]


def stage(images: list[bytes], workers: int, normalize: bool = False) -> list[int | None]:
    """Pass 2 (and, with `normalize`, pass 3) of the stage over in-memory payloads; the hashes."""
    greys, slots = [], []
    for (i, _), future in map_in_order(lambda item: analyse_image(item[1], CONFIG), enumerate(images), workers):
        try:
            greys.append(future.result().grey)
            slots.append(i)
        except (ImageFiltered, ImageRejected):
            pass
    hashes: list[int | None] = [None] * len(images)
    if greys:
        for i, h in zip(slots, phash_batch(np.stack(greys)).tolist(), strict=True):
            hashes[i] = int(h)
    if normalize:
        kept = [images[i] for i in slots]
        for _, future in map_in_order(lambda data: normalize_image(data, CONFIG), kept, workers):
            future.result()  # a failed normalization raises here, as it would reject the image in the stage
    return hashes


def timed(fn: Callable[[list[bytes]], object], images: list[bytes], reps: int) -> float:
    """Images per second of one timed round: `fn` over one batch of the corpus repeated `reps` times.

    One batch, as the stage takes a drop's records in one pass (one thread pool per pass): a pool per
    copy of a 5-image corpus would mostly measure thread start-up and a 3-vs-2 split of the images.
    """
    batch = images * reps
    t0 = time.perf_counter()
    fn(batch)
    return len(batch) / (time.perf_counter() - t0)


def sides(workers: int) -> dict[str, Callable[[list[bytes]], object]]:
    """The timed paths, by column name."""
    return {
        "decode floor": decode_floor,
        "baseline": baseline,
        "stage w=1": lambda x: stage(x, 1),
        f"stage w={workers}": lambda x: stage(x, workers),
        "stage+normalize w=1": lambda x: stage(x, 1, normalize=True),
        f"stage+normalize w={workers}": lambda x: stage(x, workers, normalize=True),
    }


def measure(
    corpora: list[tuple[str, list[bytes]]], rounds: int, min_seconds: float, workers: int
) -> dict[str, dict[str, list[float]]]:
    """Rates (img/s) per corpus and side, one per round.

    Every round visits every corpus and every side (in a rotated order), so that a busy spell of
    the shared machine hits all of them alike instead of spoiling one corpus's rounds.
    """
    fns = sides(workers)
    reps = {}
    for name, images in corpora:
        t0 = time.perf_counter()
        baseline(images)
        reps[name] = max(1, math.ceil(min_seconds / max(time.perf_counter() - t0, 1e-6)))  # >= min_seconds
    rates: dict[str, dict[str, list[float]]] = {name: {s: [] for s in fns} for name, _ in corpora}
    for r in range(rounds):
        order = list(fns)[r % len(fns) :] + list(fns)[: r % len(fns)]
        for name, images in corpora:
            for s in order:
                rates[name][s].append(timed(fns[s], images, reps[name]))
    return rates


def summarize(name: str, images: list[bytes], rates: dict[str, list[float]], workers: int) -> dict[str, dict]:
    """Best-of and median table rows of one corpus, with the stage's hash distances from imagehash."""
    ref, ours = baseline(images), stage(images, workers)
    dist = [hamming(a, b) for a, b in zip(ref, ours, strict=True) if b is not None]
    head = {"corpus": name, "images": len(images), "MB": round(sum(len(d) for d in images) / 1e6, 2)}
    out = {}
    for stat, agg in (("best", max), ("median", statistics.median)):
        rate = {s: agg(v) for s, v in rates.items()}
        out[stat] = {
            **head,
            "hashed": len(dist),
            "decode floor img/s": round(rate["decode floor"], 1),
            "baseline img/s": round(rate["baseline"], 1),
            "floor/baseline": round(rate["decode floor"] / rate["baseline"], 2),
            "stage w=1 img/s": round(rate["stage w=1"], 1),
            f"stage w={workers} img/s": round(rate[f"stage w={workers}"], 1),
            "ratio w=1": round(rate["stage w=1"] / rate["baseline"], 2),
            f"ratio w={workers}": round(rate[f"stage w={workers}"] / rate["baseline"], 2),
            "stage+normalize w=1 img/s": round(rate["stage+normalize w=1"], 1),
            f"stage+normalize w={workers} img/s": round(rate[f"stage+normalize w={workers}"], 1),
            "max bits vs imagehash": max(dist, default=0),
            "mean bits": round(float(np.mean(dist)) if dist else 0.0, 2),
        }
    return out


def verdict(best: list[dict], median: list[dict], workers: int) -> str:
    """Which corpora reach the issue's >= 3x target, per core and on the default threads."""
    lines = []
    for col in ("ratio w=1", f"ratio w={workers}"):
        hits = [f"{b['corpus']} ({b[col]}x best, {m[col]}x median)" for b, m in zip(best, median, strict=True)]
        met = [h for h, b, m in zip(hits, best, median, strict=True) if min(b[col], m[col]) >= 3]
        missed = [h for h, b, m in zip(hits, best, median, strict=True) if min(b[col], m[col]) < 3]
        lines.append(f"- {col}: >= 3x on {', '.join(met) or 'none'}; below on {', '.join(missed) or 'none'}.")
    head = "Against the >= 3x target (a corpus counts when both its best-of and median ratios reach 3x):"
    return head + "\n\n" + "\n".join(lines)


def table(rows: list[dict[str, object]]) -> str:
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--large-side", type=int, default=2048)
    parser.add_argument("--min-seconds", type=float, default=0.4, help="length of one timed round per side")
    parser.add_argument("--workers", type=int, default=default_workers(), help="the stage's threads (default: its own)")
    parser.add_argument("--write", type=Path, help="also write the results as markdown to this file")
    args = parser.parse_args()
    w = args.workers
    load_before = os.getloadavg()
    crawl = crawl_images()
    kept = [d for d in crawl if passes_filters(d)]
    corpora = [
        ("crawl", crawl),
        ("crawl-kept", kept),
        ("crawl-kept JPEG", [d for d in kept if d[:3] == b"\xff\xd8\xff"]),
        ("crawl-kept PNG/WebP/GIF", [d for d in kept if d[:3] != b"\xff\xd8\xff"]),
        (f"large ({args.large_side} px)", large_images(args.large_side)),
    ]
    rates = measure(corpora, args.rounds, args.min_seconds, w)
    results = [summarize(name, images, rates[name], w) for name, images in corpora]
    load_after = os.getloadavg()
    best, median = [r["best"] for r in results], [r["median"] for r in results]
    for r in best:
        print(f"{r['corpus']}: stage w=1 {r['ratio w=1']}x, w={w} {r[f'ratio w={w}']}x of baseline (best of rounds)")
    md = (
        f"### Best of {args.rounds} rounds\n\n{table(best)}\n\n"
        f"### Median of {args.rounds} rounds\n\n{table(median)}\n\n"
        f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after the run (shared machine: "
        f"other jobs lower the medians more than the best-of rates).\n\n{verdict(best, median, w)}"
    )
    print(md)
    if args.write:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        env = f"Python {platform.python_version()}, Pillow {Image.__version__}, {platform.machine()}, {cpus} CPUs"
        args.write.write_text(
            "# Image stage benchmark results\n\n"
            f"Command: `python benchmarks/image_stage.py --rounds {args.rounds} --min-seconds {args.min_seconds} "
            f"{'' if w == default_workers() else f'--workers {w} '}--write {args.write}`. {env}; "
            f"the stage's default workers here: {default_workers()}.\n"
            f"{args.rounds} alternating rounds, each timing every corpus and side once (>= {args.min_seconds} s "
            f"each) over the same in-memory bytes; best-of and median rates are shown.\n\n{md}\n\n"
            f"{NOTES.format(w=w)}\n"
        )


if __name__ == "__main__":
    main()
