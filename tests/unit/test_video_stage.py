"""The video_clips stage over the real video sample drops and planted cases: outcomes, dedup across drops, shards."""

import io
import json
from pathlib import Path

import av
import numpy as np
import pytest

from mmrecipe.audio.transcription import TranscriberSettings, default_model_dir
from mmrecipe.crawl_index import index_drop
from mmrecipe.drops import verify_drop
from mmrecipe.images.image_filters import NsfwScorer
from mmrecipe.images.webdataset import read_shard
from mmrecipe.stage_output import REJECTS, committed_parts, read_stage_table
from mmrecipe.storage import Storage
from mmrecipe.video import clip_index
from mmrecipe.video.stage import ASSET, VideoStageConfig, run_video_stage, video_conservation
from mmrecipe.warc_index import normalize_uri
from tests.unit.test_images_stage import land
from tests.video_samples import PLANTED, VIDEO_DROPS, reencode, video
from tests.warc_fixtures import HttpResponse


@pytest.fixture
def lake(tmp_path: Path) -> Storage:
    """A lake with the raw_crawl index of both committed video sample drops."""
    source, lake = Storage(str(VIDEO_DROPS)), Storage(str(tmp_path / "lake"), scratch=str(tmp_path / "scratch"))
    for drop in PLANTED["drops"]:
        index_drop(source, lake, drop, verify_drop(source, drop).warc_files)
    return lake


def outcomes(lake: Storage, drop: str) -> tuple[list[dict], dict[str, list[str]]]:
    """(kept rows without the JPEG, url -> reasons of its drops and rejects) of one drop."""
    index = read_stage_table(lake, "raw_crawl", drop).to_pylist()
    urls = {r["record_id"]: normalize_uri(r["target_uri"]) for r in index}
    kept = read_stage_table(lake, ASSET, drop).drop(["keyframe_jpeg"]).to_pylist()
    reasons: dict[str, list[str]] = {}
    for r in read_stage_table(lake, ASSET, drop, REJECTS).to_pylist():
        reasons.setdefault(urls[r["record_id"]], []).append(r["reason"])
    return kept, reasons


def url_of(name: str) -> str:
    return next(u for u in PLANTED["videos"] if u.endswith("/" + name))


@pytest.mark.slow  # Whisper over the launch video
def test_the_countdown_clip_is_transcribed(lake: Storage) -> None:
    asr = TranscriberSettings(model_dir=default_model_dir())
    run_video_stage(lake, "video-a", VideoStageConfig(), NsfwScorer, asr)
    first, second = [r for r in outcomes(lake, "video-a")[0] if r["url"] == url_of("oa4_launch.webm")]
    assert (first["transcript_status"], second["transcript_status"]) == ("kept", "kept")
    words = first["transcript"].lower()  # the countdown is said before the cut at 3.086 s, once
    assert all(words.count(w) == 1 for w in PLANTED["countdown_words"]), words
    assert "lift" in second["transcript"].lower() and "lift" not in words, (words, second["transcript"])
    for clip in (first, second):  # each clip's segments lie inside its span, in source-video times
        assert all(clip["start_s"] <= s["start"] < s["end"] <= clip["end_s"] for s in clip["segments"]), clip


@pytest.mark.slow  # NudeNet and Whisper over ~28 s of real video
def test_sample_drops_end_to_end(lake: Storage) -> None:
    scorer, asr = NsfwScorer, TranscriberSettings(model_dir=default_model_dir())
    a = run_video_stage(lake, "video-a", VideoStageConfig(), scorer, asr)
    b = run_video_stage(lake, "video-b", VideoStageConfig(), scorer, asr)
    assert a.output.counts.as_metadata() == {
        "total": 12, "kept": 9, "dropped": 2, "rejected": 1,
        "dropped_clip_too_short": 1, "dropped_opt_out": 1, "rejected_truncated_video": 1,
    }  # fmt: skip
    assert b.output.counts.as_metadata() == {
        "total": 6,
        "kept": 0,
        "dropped": 6,
        "rejected": 0,
        "dropped_clip_too_short": 1,
        "dropped_near_duplicate": 5,
    }
    kept, reasons = outcomes(lake, "video-a")
    assert reasons == {
        url_of("bikes.mp4"): ["clip_too_short"],  # the 0.32 s after the wheel passes the lens
        url_of("city-private.avi"): ["opt_out"],
        url_of("launch-cut.webm"): ["truncated_video"],
    }
    by_url: dict[str, list[dict]] = {}
    for row in kept:
        by_url.setdefault(row["url"], []).append(row)
    launch, bikes, city = (by_url[url_of(n)] for n in ("oa4_launch.webm", "bikes.mp4", "city.mpg"))
    assert [(r["start_s"], r["end_s"]) for r in launch] == [(0.0, 3.086), (3.086, 8.0867)]
    assert [r["start_s"] for r in bikes] == [0.0, 1.2, 3.04, 5.48, 7.48]
    assert {r["caption_source"] for r in launch} == {"track"}
    assert launch[0]["caption"] == "Mission control counts down to the launch."  # the cue over 0-3.1 s only
    assert {(r["caption_source"], r["caption"]) for r in bikes} == {("title", "Bikes in the street")}
    assert {(r["caption_source"], r["caption"]) for r in city} == {("aria_label", "A city skyline at dusk")}
    assert {r["transcript_status"] for r in launch} == {"kept"}
    assert {r["transcript_status"] for r in bikes + city} == {"no_audio"}
    assert all(r["nsfw_score"] is not None and r["nsfw_score"] < 0.5 for r in kept)
    assert all(r["detector"].startswith("pyscenedetect-content-") for r in kept)
    _, b_reasons = outcomes(lake, "video-b")
    assert b_reasons == {url_of("bikes-copy.webm"): ["near_duplicate"] * 5 + ["clip_too_short"]}
    for drop in PLANTED["drops"]:
        assert video_conservation(lake, drop).passed
    [shard] = a.report.shards
    samples = read_shard(lake.read_bytes(shard))
    assert len(samples) == 9  # every kept clip has a caption
    sample = samples[launch[1]["clip_id"]]
    assert set(sample) == {"mp4", "jpg", "txt", "json"}
    assert json.loads(sample["json"])["transcript"] == launch[1]["transcript"]
    with av.open(io.BytesIO(sample["mp4"])) as clip:
        stream = clip.streams.video[0]
        assert (stream.codec_context.name, stream.codec_context.width, stream.codec_context.height) == (
            "h264",
            320,
            180,
        )
        assert clip.duration / 1e6 == pytest.approx(5.0, abs=0.05)


@pytest.mark.slow  # six stage runs with clip encoding (~20 s on a shared core)
def test_near_duplicates_collapse_across_drops_in_both_orders(lake: Storage, tmp_path: Path) -> None:
    """b first keeps its copy; then a (earlier key) keeps its original and b goes stale; b re-run drops its copy."""
    cfg = VideoStageConfig()
    run_video_stage(lake, "video-b", cfg)
    assert outcomes(lake, "video-b")[1] == {url_of("bikes-copy.webm"): ["clip_too_short"]}
    run_video_stage(lake, "video-a", cfg)
    assert clip_index.stale_drops(lake) == ["video-b"]
    first_a = [lake.read_bytes(u) for u in committed_parts(lake, ASSET, "video-a")]
    result = run_video_stage(lake, "video-b", cfg)
    assert result.report.stale_drops == []
    assert result.output.counts.dropped["near_duplicate"] == 5
    kept_b_then_a = {d: [r["clip_id"] for r in outcomes(lake, d)[0]] for d in PLANTED["drops"]}
    # the other order, from scratch: the same survivors
    other = Storage(str(tmp_path / "lake2"), scratch=str(tmp_path / "scratch2"))
    source = Storage(str(VIDEO_DROPS))
    for drop in PLANTED["drops"]:
        index_drop(source, other, drop, verify_drop(source, drop).warc_files)
        run_video_stage(other, drop, cfg)
    assert {d: [r["clip_id"] for r in outcomes(other, d)[0]] for d in PLANTED["drops"]} == kept_b_then_a
    assert clip_index.stale_drops(other) == []
    assert clip_index.kept_conflicts(lake, "video-b", [], np.zeros(0, np.int64)) == []
    # idempotent and deterministic: re-running a drop changes no byte of its kept table
    run_video_stage(lake, "video-a", cfg)
    assert [lake.read_bytes(u) for u in committed_parts(lake, ASSET, "video-a")] == first_a


@pytest.mark.slow  # NudeNet
def test_static_opted_out_http_error_and_nsfw_clips(tmp_path: Path) -> None:
    landing, lake = Storage(str(tmp_path / "landing")), Storage(str(tmp_path / "lake"), scratch=str(tmp_path / "s"))
    still = reencode(video("bikes.mp4"), "mp4", "libx264", frames=50, still=True)
    page = b'<html><body><video src="/still.mp4" title="Still"></video><video src="/city.mpg"></video></body></html>'
    land(landing, lake, "drop-x", [
        HttpResponse("http://v.example/index.html", page),
        HttpResponse("http://v.example/still.mp4", still, "video/mp4"),
        HttpResponse("http://v.example/city.mpg", video("city.mpg"), "video/mpeg"),
        HttpResponse("http://v.example/private.mp4", video("bikes.mp4"), "video/mp4", headers={"X-Robots-Tag": "noai"}),
        HttpResponse("http://v.example/gone.mp4", b"not found", "video/mp4", status=404),
    ])  # fmt: skip
    result = run_video_stage(lake, "drop-x", VideoStageConfig(nsfw_threshold=0.0), NsfwScorer)  # every score >= 0
    assert result.output.counts.as_metadata() == {
        "total": 5, "kept": 0, "dropped": 4, "rejected": 1,
        "dropped_nsfw": 2, "dropped_opt_out": 1, "dropped_static_clip": 1, "rejected_http_error": 1,
    }  # fmt: skip
    rejects = read_stage_table(lake, ASSET, "drop-x", REJECTS).to_pylist()
    details = {r["reason"]: r["detail"] for r in rejects}
    assert details["static_clip"].startswith("clip 0 [0.00-2.00 s]: motion 0.0000")
    assert "X-Robots-Tag: noai" in details["opt_out"]
    assert details["nsfw"].startswith("clip ") and ">= 0.0" in details["nsfw"]
    assert video_conservation(lake, "drop-x").passed
