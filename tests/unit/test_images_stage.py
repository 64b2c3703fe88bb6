"""The image stage on real WARC bytes (no Dagster): outcomes per record, cross-drop order independence."""

import dataclasses
import io
import os
import random
import struct
import threading
import time
import zlib
from pathlib import Path

import matplotlib
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageEnhance

from mmrecipe.crawl_index import index_drop
from mmrecipe.drops import MANIFEST, manifest_for_folder, verify_drop
from mmrecipe.engine import Engine, LocalEngine
from mmrecipe.images import phash_index
from mmrecipe.images.image_analysis import ImageStageConfig, default_workers, map_in_order
from mmrecipe.images.image_filters import NsfwScorer
from mmrecipe.images.stage import run_image_stage
from mmrecipe.images.webdataset import read_shard
from mmrecipe.stage_output import REJECTS, read_stage_table
from mmrecipe.storage import Storage
from tests.warc_fixtures import HttpResponse, warc_bytes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "images"
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
SITE = "http://site.example"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def encode(img: Image.Image, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def page(url: str, body: str, head: str = "") -> HttpResponse:
    return HttpResponse(url, f"<!doctype html><html><head>{head}</head><body>{body}</body></html>".encode())


def image(path: str, data: bytes, mime: str = "image/jpeg", status: int = 200, **headers: str) -> HttpResponse:
    return HttpResponse(f"{SITE}{path}", data, mime, status, {k.replace("_", "-"): v for k, v in headers.items()})


def drop_a() -> list[HttpResponse]:
    """Drop A: pages with alt/title/figure captions and an opted-out page; real, odd and broken images."""
    astronaut = Image.open(FIXTURES / "astronaut.jpg").convert("RGB")
    photo = Image.open(FIXTURES / "coffee.jpg").convert("RGB")
    gallery = (
        '<h1>Gallery</h1><img src="img/astronaut.jpg" alt="Eileen Collins in her flight suit">'
        '<img src="/img/astronaut-small.jpg" alt="Astronaut, small"><img src="img/astronaut-copy.jpg" alt="Copy">'
        '<img src="img/astronaut.png" alt="Astronaut PNG">'
        '<figure><img src="img/chelsea.webp"><figcaption>Chelsea the cat</figcaption></figure>'
        '<p><img src="img/coffee.jpg" title="An espresso"></p><img src="img/rocket.jpg">'
        '<img src="img/tiny.png" alt=""><img src="img/banner.jpg" alt="Banner"><img src="img/broken.jpg" alt="x">'
        '<img src="img/bomb.gif" alt="bomb"><img src="img/hopper.bmp" alt="bmp"><img src="img/logo.svg" alt="logo">'
        '<img src="img/missing.jpg" alt="gone"><img src="img/cmyk.jpg" alt="CMYK sample">'
        '<img src="img/coins.png" alt="Palette with transparency"><img src="img/anim.gif" alt="Animated GIF">'
    )
    return [
        page(f"{SITE}/gallery.html", gallery),
        page(
            f"{SITE}/private.html",
            '<img src="/img/hubble.jpg" alt="Deep field">',
            '<meta name="robots" content="noimageai">',
        ),
        image("/img/astronaut.jpg", fixture("astronaut.jpg")),
        image("/img/astronaut-small.jpg", encode(astronaut.resize((410, 410), Image.Resampling.LANCZOS), quality=60)),
        image("/img/astronaut-copy.jpg", fixture("astronaut.jpg")),
        image(
            "/img/astronaut.png",
            encode(Image.open(io.BytesIO(fixture("astronaut.jpg"))).convert("RGB"), "PNG"),
            "image/png",
        ),
        image(
            "/img/chelsea.webp",
            encode(Image.open(FIXTURES / "chelsea.jpg"), "WEBP"),
            "image/webp",
            x_robots_tag="noimageai",
        ),
        image("/img/coffee.jpg", fixture("coffee.jpg")),
        image("/img/rocket.jpg", fixture("rocket.jpg")),
        image("/img/tiny.png", encode(Image.new("RGBA", (1, 1)), "PNG"), "image/png"),
        image("/img/banner.jpg", encode(photo.crop((0, 0, 510, 100)), quality=90)),
        image("/img/broken.jpg", fixture("truncated_jpeg.jpg")),
        image("/img/bomb.gif", fixture("decompression_bomb.gif"), "image/gif"),
        image("/img/hopper.bmp", encode(Image.open(FIXTURES / "hopper.jpg"), "BMP"), "image/bmp"),
        image("/img/logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml"),
        image("/img/missing.jpg", b"not found", "image/jpeg", status=404),
        image("/img/cmyk.jpg", fixture("pil_sample_cmyk.jpg")),
        image("/img/coins.png", fixture("pil123p.png"), "image/png"),
        image("/img/anim.gif", fixture("dispose_bgnd.gif"), "image/gif"),
        image("/img/hubble.jpg", fixture("hubble_deep_field.jpg")),
        image("/img/unreferenced.jpg", GRACE_HOPPER.read_bytes()),
    ]


def drop_b() -> list[HttpResponse]:
    """Drop B: a brightened astronaut and coffee's exact bytes (cross-drop copies) and new photos."""
    astronaut = Image.open(FIXTURES / "astronaut.jpg").convert("RGB")
    body = (
        '<img src="b/astronaut-bright.jpg" alt="Collins, brighter"><img src="b/coffee.jpg" alt="Coffee again">'
        '<img src="b/hubble.jpg" alt="Hubble Deep Field"><img src="b/chelsea.jpg" alt="A cat">'
    )
    return [
        page(f"{SITE}/b.html", body),
        image("/b/astronaut-bright.jpg", encode(ImageEnhance.Brightness(astronaut).enhance(1.2), quality=85)),
        image("/b/coffee.jpg", fixture("coffee.jpg")),
        image("/b/hubble.jpg", fixture("hubble_deep_field.jpg")),
        image("/b/chelsea.jpg", fixture("chelsea.jpg")),
    ]


EXPECTED_A = {
    "/img/astronaut.jpg": "kept",
    "/img/astronaut-small.jpg": "near_duplicate",
    "/img/astronaut-copy.jpg": "exact_duplicate",
    "/img/astronaut.png": "pixel_duplicate",
    "/img/chelsea.webp": "opt_out",
    "/img/coffee.jpg": "kept",
    "/img/rocket.jpg": "kept",
    "/img/tiny.png": "too_small",
    "/img/banner.jpg": "bad_aspect_ratio",
    "/img/broken.jpg": "truncated_image",
    "/img/bomb.gif": "decompression_bomb",
    "/img/hopper.bmp": "format_not_allowed",
    "/img/logo.svg": "format_not_allowed",
    "/img/missing.jpg": "http_error",
    "/img/cmyk.jpg": "kept",
    "/img/coins.png": "kept",
    "/img/anim.gif": "kept",
    "/img/hubble.jpg": "opt_out",
    "/img/unreferenced.jpg": "kept",
}


def land(landing: Storage, lake: Storage, drop: str, responses: list[HttpResponse]) -> None:
    """Write a drop's WARC into the landing root and its raw_crawl index into the lake."""
    folder = Path(landing.root) / drop
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "crawl-00000.warc.gz").write_bytes(warc_bytes(responses))
    (folder / MANIFEST).write_text(manifest_for_folder(str(folder), drop).to_json())
    index_drop(landing, lake, drop, verify_drop(landing, drop).warc_files)


def outcomes(lake: Storage, drop: str) -> dict[str, str]:
    """URL path -> 'kept' or the drop/reject reason, from the published tables."""
    index = {r["record_id"]: r["target_uri"] for r in read_stage_table(lake, "raw_crawl", drop).to_pylist()}
    data = read_stage_table(lake, "deduped_images", drop, columns=["record_id"]).to_pylist()
    rejects = read_stage_table(lake, "deduped_images", drop, REJECTS).to_pylist()
    out = {index[r["record_id"]]: "kept" for r in data}
    for r in rejects:
        assert index[r["record_id"]] not in out, "a record appears twice"
        out[index[r["record_id"]]] = r["reason"]
    return {url.removeprefix(SITE): v for url, v in out.items()}


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Storage, Storage]:
    landing, lake = Storage(str(tmp_path / "landing")), Storage(str(tmp_path / "lake"))
    land(landing, lake, "2024-01-a", drop_a())
    land(landing, lake, "2024-02-b", drop_b())
    return landing, lake


def test_every_image_record_gets_exactly_one_outcome_with_the_right_reason(roots: tuple[Storage, Storage]) -> None:
    _, lake = roots
    result = run_image_stage(lake, "2024-01-a", ImageStageConfig())
    assert outcomes(lake, "2024-01-a") == EXPECTED_A
    counts = result.output.counts
    assert counts.total == len(EXPECTED_A) and counts.kept == 7
    assert counts.rejected == {"truncated_image": 1, "decompression_bomb": 1, "http_error": 1}
    assert counts.dropped["opt_out"] == 2 and counts.dropped["format_not_allowed"] == 2
    steps = result.run.steps  # each drop or reject counted at the declared step that made it
    assert list(steps) == ["screen", "analyse", "normalize", "dedup"] and steps["screen"].seen == len(EXPECTED_A)
    assert (steps["screen"].rejected, steps["screen"].dropped) == (
        {"http_error": 1},
        {"opt_out": 2, "format_not_allowed": 1},  # the SVG, by its MIME type
    )
    assert steps["analyse"].rejected == {"truncated_image": 1, "decompression_bomb": 1}
    assert steps["analyse"].dropped == {"too_small": 1, "bad_aspect_ratio": 1, "format_not_allowed": 1}
    assert steps["dedup"].dropped == {"near_duplicate": 1, "exact_duplicate": 1, "pixel_duplicate": 1}
    assert steps["dedup"].seen == 10 and steps["normalize"].seen >= 7 and steps["analyse"].seconds > 0


def test_kept_rows_carry_captions_sizes_hashes_and_normalized_jpegs(roots: tuple[Storage, Storage]) -> None:
    _, lake = roots
    result = run_image_stage(lake, "2024-01-a", ImageStageConfig(max_side=256))
    rows = {r["url"].removeprefix(SITE): r for r in pq.read_table(result.output.data_uri).to_pylist()}
    astro = rows["/img/astronaut.jpg"]
    assert (astro["caption"], astro["caption_source"], astro["page_url"]) == (
        "Eileen Collins in her flight suit",
        "alt",
        f"{SITE}/gallery.html",
    )
    assert (astro["width"], astro["height"], astro["format"], astro["norm_width"]) == (512, 512, "JPEG", 256)
    assert astro["dedup_cluster"] == astro["record_id"] and astro["nsfw_score"] is None
    assert Image.open(io.BytesIO(astro["normalized_jpeg"])).size == (256, 256)
    assert (rows["/img/coffee.jpg"]["caption"], rows["/img/coffee.jpg"]["caption_source"]) == ("An espresso", "title")
    assert (rows["/img/unreferenced.jpg"]["caption_source"], rows["/img/unreferenced.jpg"]["page_url"]) == (
        "none",
        None,
    )
    assert rows["/img/anim.gif"]["n_frames"] == 5 and rows["/img/cmyk.jpg"]["format"] == "JPEG"
    assert result.report.caption_coverage == round(5 / 7, 4)  # rocket and unreferenced have no text
    shard_keys = {k for uri in result.report.shards for k in read_shard(lake.read_bytes(uri))}
    assert shard_keys == {r["record_id"] for r in rows.values() if r["caption"]}
    assert result.report.formats == {"JPEG": 5, "PNG": 1, "GIF": 1}
    rejects = pq.read_table(result.output.rejects_uri).to_pylist()
    dup = next(r for r in rejects if r["reason"] == "near_duplicate")
    assert astro["record_id"] in dup["detail"]


def test_surrounding_text_is_used_only_when_enabled(roots: tuple[Storage, Storage]) -> None:
    landing, lake = roots
    land(
        landing,
        lake,
        "2024-03-c",
        [
            page(f"{SITE}/c.html", '<p>Launch of DSCOVR: <img src="/c/r.jpg"></p>'),
            image("/c/r.jpg", fixture("rocket.jpg")),
        ],
    )
    on = run_image_stage(lake, "2024-03-c", ImageStageConfig(surrounding_text=True))
    assert pq.read_table(on.output.data_uri, columns=["caption", "caption_source"]).to_pylist() == [
        {"caption": "Launch of DSCOVR:", "caption_source": "surrounding_text"}
    ]
    off = run_image_stage(lake, "2024-03-c", ImageStageConfig(surrounding_text=False))
    assert pq.read_table(off.output.data_uri, columns=["caption_source"]).to_pylist() == [{"caption_source": "none"}]


def _tables(lake: Storage) -> list[pa.Table]:
    trees = ("data", REJECTS)
    return [read_stage_table(lake, "deduped_images", d, t) for d in ("2024-01-a", "2024-02-b") for t in trees]


def _side_files(lake: Storage) -> dict[str, bytes]:
    return {k: v for k, v in _files(lake).items() if "/side/" in k or k.startswith("/image_phash_index")}


def _files(lake: Storage) -> dict[str, bytes]:
    return {
        uri.removeprefix(lake.root): lake.read_bytes(uri)
        for prefix in ("deduped_images", "image_phash_index")
        for uri in lake.list_files(lake.uri(prefix))
    }


@pytest.mark.parametrize("buckets", [1, 4, 64])
def test_drop_order_does_not_change_the_outcome_and_reruns_change_nothing(tmp_path: Path, buckets: int) -> None:
    landing = Storage(str(tmp_path / "landing"))
    in_order, reversed_ = Storage(str(tmp_path / "lake1")), Storage(str(tmp_path / "lake2"))
    for lake in (in_order, reversed_):
        land(landing, lake, "2024-01-a", drop_a())
        land(landing, lake, "2024-02-b", drop_b())
    cfg = ImageStageConfig(index_buckets=buckets)
    run_image_stage(in_order, "2024-01-a", cfg)
    b_after_a = run_image_stage(in_order, "2024-02-b", cfg)
    assert outcomes(in_order, "2024-02-b") == {
        "/b/astronaut-bright.jpg": "near_duplicate",
        "/b/coffee.jpg": "exact_duplicate",
        "/b/hubble.jpg": "kept",  # drop A's copy was opted out, so B's is the first kept one
        "/b/chelsea.jpg": "kept",  # drop A's WebP was opted out by its X-Robots-Tag
    }
    assert b_after_a.report.stale_drops == []

    first_b = run_image_stage(reversed_, "2024-02-b", cfg)
    assert first_b.output.counts.kept == 4  # nothing earlier to collide with yet
    late_a = run_image_stage(reversed_, "2024-01-a", cfg)
    assert late_a.report.stale_drops == ["2024-02-b"] == phash_index.stale_drops(reversed_)
    rerun_b = run_image_stage(reversed_, "2024-02-b", cfg)
    assert rerun_b.report.stale_drops == []
    assert _files(reversed_) == _files(in_order)  # byte-identical tables, shards and index entries

    before = _files(reversed_)
    again = run_image_stage(reversed_, "2024-02-b", cfg)
    assert _files(reversed_) == before and again.report.stale_drops == []


@pytest.mark.parametrize("nsfw", [False, True], ids=["plain", "nsfw_scorer"])
def test_output_is_byte_identical_whatever_the_number_of_workers(tmp_path: Path, nsfw: bool) -> None:
    landing = Storage(str(tmp_path / "landing"))
    lakes = {w: Storage(str(tmp_path / f"lake-{w}")) for w in (1, 3)}
    reports: dict[int, list] = {}
    for workers, lake in lakes.items():
        land(landing, lake, "2024-01-a", drop_a())
        land(landing, lake, "2024-02-b", drop_b())
        cfg = ImageStageConfig(workers=workers, nsfw=nsfw)
        scorer = SizeFlagScorer() if nsfw else None
        for drop in ("2024-01-a", "2024-02-b"):
            report = run_image_stage(lake, drop, cfg, scorer).report
            report.shards = [uri.removeprefix(lake.root) for uri in report.shards]
            reports.setdefault(workers, []).append(report)
    one, three = _files(lakes[1]), _files(lakes[3])
    assert sorted(one) == sorted(three) and any("/shards/" in k for k in one)
    assert all(one[k] == three[k] for k in one)  # tables, shards and index entries, byte for byte
    assert reports[1] == reports[3]
    assert outcomes(lakes[3], "2024-01-a") == (
        EXPECTED_A | {"/img/cmyk.jpg": "nsfw", "/img/anim.gif": "nsfw"} if nsfw else EXPECTED_A
    )


def _run_drops(tmp_path: Path, name: str, engine: Engine, shard_bytes: int, nsfw: bool) -> tuple[Storage, list]:
    """Both drops through the stage on `engine` in shards of `shard_bytes`, in a lake of their own."""
    landing, lake = Storage(str(tmp_path / "landing")), Storage(str(tmp_path / name))
    land(landing, lake, "2024-01-a", drop_a())
    land(landing, lake, "2024-02-b", drop_b())
    reports = []
    for drop in ("2024-01-a", "2024-02-b"):
        cfg = ImageStageConfig(workers=2, nsfw=nsfw, shard_samples=3)
        scorer = SizeFlagScorer() if nsfw else None
        result = run_image_stage(lake, drop, cfg, scorer, engine=engine, shard_bytes=shard_bytes)
        result.report.shards = [uri.removeprefix(lake.root) for uri in result.report.shards]
        reports.append((result.report, result.run.shards_total, result.run.output.counts))
    assert not lake.list_files(lake.uri("deduped_images", "staging"))  # staging removed after the commit
    return lake, reports


@pytest.mark.parametrize("nsfw", [False, True], ids=["plain", "nsfw_scorer"])
def test_output_is_the_same_whatever_the_shard_size(tmp_path: Path, nsfw: bool) -> None:
    runs = {size: _run_drops(tmp_path, f"lake-{size}", LocalEngine(1), size, nsfw) for size in (64 << 20, 60_000, 1)}
    shards = {size: [r[1] for r in reports] for size, (_, reports) in runs.items()}
    assert shards[64 << 20] == [1, 1] and shards[1] == [19, 4] and 1 < shards[60_000][0] < 19
    tables = {size: _tables(lake) for size, (lake, _) in runs.items()}
    assert tables[1] == tables[60_000] == tables[64 << 20]  # kept rows, rejects: the same rows in the same order
    side = {size: _side_files(lake) for size, (lake, _) in runs.items()}
    assert side[1] == side[60_000] == side[64 << 20]  # WebDataset shards and index entries, byte for byte
    assert sum("/shards/" in k for k in side[1]) >= 2  # WebDataset shards of 3 samples span engine shards
    reports = {size: [r[0] for r in reps] for size, (_, reps) in runs.items()}
    assert reports[1] == reports[60_000] == reports[64 << 20]
    assert outcomes(runs[1][0], "2024-01-a") == (
        EXPECTED_A | {"/img/cmyk.jpg": "nsfw", "/img/anim.gif": "nsfw"} if nsfw else EXPECTED_A
    )


def test_map_in_order_yields_in_input_order_with_a_bounded_window() -> None:
    pulled: list[int] = []
    lag: list[int] = []

    def items():
        for i in range(40):
            pulled.append(i)
            yield i

    def work(i: int) -> int:
        time.sleep(random.Random(i).random() / 500)  # finish out of order
        if i % 7 == 3:
            raise ValueError(f"bad {i}")
        return i * i

    got = []
    for i, future in map_in_order(work, items(), workers=3, window=5):
        lag.append(len(pulled) - i)
        got.append(future.exception().args[0] if future.exception() else future.result())
    assert got == [f"bad {i}" if i % 7 == 3 else i * i for i in range(40)]
    assert max(lag) <= 5  # never more than `window` items read ahead of the one being taken back
    inline = [(i, f.result()) for i, f in map_in_order(lambda i: i + 1, range(5), workers=1)]
    assert inline == [(i, i + 1) for i in range(5)]


def test_map_in_order_runs_work_on_several_threads_and_stops_cleanly() -> None:
    names: set[str] = set()
    ran: list[int] = []
    barrier = threading.Barrier(2, timeout=5)

    def work(i: int) -> int:
        names.add(threading.current_thread().name)
        ran.append(i)
        if i < 2:
            barrier.wait()  # only passes if two calls run at the same time
        return i

    results = map_in_order(work, range(100), workers=2, window=4)
    assert [next(results)[1].result() for _ in range(3)] == [0, 1, 2]
    results.close()  # abandoned early: queued calls are cancelled, running ones finish
    assert len(names) == 2 and all(n.startswith("mmrecipe-images") for n in names)
    assert len(ran) <= 6  # items 0-5 at most were submitted (3 taken back + a window of 4 - 1)


def test_default_workers_are_the_usable_cpus_capped() -> None:
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert 1 <= default_workers() <= min(8, usable)
    assert default_workers(cap=1) == 1
    assert ImageStageConfig().workers == default_workers()


class SizeFlagScorer:
    """A fake NSFW scorer for the plumbing test: flags 100x100 images."""

    def score(self, image: Image.Image) -> float:
        return 0.9 if image.size == (100, 100) else 0.1


def test_nsfw_filter_drops_images_scoring_at_or_above_the_threshold(roots: tuple[Storage, Storage]) -> None:
    _, lake = roots
    result = run_image_stage(lake, "2024-01-a", ImageStageConfig(nsfw=True, nsfw_threshold=0.5), SizeFlagScorer())
    got = outcomes(lake, "2024-01-a")
    assert got["/img/cmyk.jpg"] == got["/img/anim.gif"] == "nsfw"
    assert result.output.counts.dropped["nsfw"] == 2
    scores = pq.read_table(result.output.data_uri, columns=["nsfw_score"])["nsfw_score"].to_pylist()
    assert scores and all(abs(s - 0.1) < 1e-6 for s in scores)


def test_real_nudenet_detector_runs_offline_on_a_real_portrait() -> None:
    scorer = NsfwScorer()
    portrait = Image.open(GRACE_HOPPER).convert("RGB")
    classes = {d["class"]: d["score"] for d in scorer.detections(portrait)}
    assert classes.get("FACE_FEMALE", 0) > 0.4  # it sees the face...
    assert scorer.score(portrait) == 0.0  # ...and nothing explicit


def test_filtered_images_are_never_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Format and size filters run on the header alone: a PNG whose EXIF chunk follows its pixels is not loaded."""
    from PIL import ImageFile

    from mmrecipe.images.image_analysis import ImageFiltered, analyse_image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: the filters do not need it (every rule is symmetric in width and height)
    png = io.BytesIO()
    Image.new("L", (4000, 3000), 128).save(png, "PNG")
    chunk = b"eXIf" + exif.tobytes()[6:]  # the TIFF body after b"Exif\0\0"
    at = png.getvalue().rindex(b"IEND") - 4  # the eXIf chunk goes after the pixel data, before IEND
    data = png.getvalue()
    data = data[:at] + struct.pack(">I", len(chunk) - 4) + chunk + struct.pack(">I", zlib.crc32(chunk)) + data[at:]
    loads: list[str] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: loads.append(im.format) or real_load(im))
    config = ImageStageConfig(workers=1)
    strict = ImageStageConfig(filters=dataclasses.replace(config.filters, max_pixels=1_000_000), workers=1)
    with pytest.raises(ImageFiltered) as dropped:
        analyse_image(data, strict)
    assert dropped.value.reason == "too_many_pixels" and loads == []
    kept = analyse_image(data, config)  # the same image, kept: now decoded, and its EXIF rotation read
    assert loads and (kept.header.width, kept.header.height, kept.header.orientation) == (3000, 4000, 6)


def test_frames_of_an_animated_gif_are_counted_only_when_it_is_normalized(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pass 2 only asks "animated?" (frame 0 is walked); the count for the kept row comes with normalization."""
    from PIL import GifImagePlugin

    from mmrecipe.images.image_analysis import analyse_image

    frames = [Image.new("L", (200, 160), i * 40) for i in range(6)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=40)
    data = buf.getvalue()
    assert analyse_image(data, ImageStageConfig(workers=1), normalize_now=True).header.n_frames == 6
    counted = GifImagePlugin.GifImageFile.n_frames

    def no_walk(im: GifImagePlugin.GifImageFile) -> int:
        raise AssertionError("pass 2 walked every frame")

    monkeypatch.setattr(GifImagePlugin.GifImageFile, "n_frames", property(no_walk))
    header = analyse_image(data, ImageStageConfig(workers=1)).header
    assert header.animated and header.n_frames == 2  # "at least two", not counted
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "n_frames", counted)
