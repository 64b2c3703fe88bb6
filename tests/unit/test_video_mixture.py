"""Video–text pairs in a mixture: the example recipe over the video sample drops, its data card and `explain`."""

import hashlib
import io
import json
from pathlib import Path

import av
import pyarrow.compute as pc
import pytest

from mmrecipe.crawl_index import index_drop
from mmrecipe.drops import verify_drop
from mmrecipe.lineage import explain, format_lineage
from mmrecipe.mixture.build import MixtureResult, build_mixture, load_eval_sets
from mmrecipe.mixture.checks import mixture_texts
from mmrecipe.mixture.manifest import mixture_uri, read_manifest
from mmrecipe.mixture.webdataset import read_webdataset
from mmrecipe.recipe import default_eval_sets_dir, load_recipe
from mmrecipe.stage_output import read_stage_table
from mmrecipe.storage import Storage
from mmrecipe.video.stage import ASSET, run_video_stage
from tests.conftest import REPO
from tests.video_samples import PLANTED, VIDEO_DROPS

RECIPE = load_recipe(str(REPO / "samples" / "recipes"), "video_pairs")
pytestmark = pytest.mark.slow  # ~9 s: decoding every sample video once, shared by the module


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Storage, MixtureResult]:
    """Both video sample drops through raw_crawl and video_clips (no NSFW or ASR models), then the example recipe."""
    root: Path = tmp_path_factory.mktemp("video-mixture")
    source, lake = Storage(str(VIDEO_DROPS)), Storage(str(root / "lake"), scratch=str(root / "scratch"))
    for drop in PLANTED["drops"]:
        index_drop(source, lake, drop, verify_drop(source, drop).warc_files)
        run_video_stage(lake, drop)
    evals = load_eval_sets(default_eval_sets_dir(), RECIPE.eval_sets)
    return lake, build_mixture(lake, RECIPE, PLANTED["drops"], evals)


def test_each_kept_captioned_clip_is_a_document_keyed_by_its_clip_id(built: tuple[Storage, MixtureResult]) -> None:
    lake, result = built
    clips = read_stage_table(lake, ASSET, "video-a", columns=["clip_id", "record_id", "caption_source"]).to_pylist()
    manifest = read_manifest(lake, "video_pairs").to_pylist()
    by_source = {s["name"]: s for s in result.summary["sources"]}
    subtitled = sorted(c["clip_id"] for c in clips if c["caption_source"] == "track")
    titled = sorted(c["clip_id"] for c in clips if c["caption_source"] in ("title", "aria_label"))
    assert (len(subtitled), len(titled)) == (2, 7)  # the launch's 2 clips; bikes' 5 and the city's 2
    assert sorted(r["doc_id"] for r in manifest if r["source"] == "clips_subtitled") == [
        f"video_pairs:clips_subtitled:{c}" for c in subtitled
    ]
    assert sorted(r["doc_id"] for r in manifest if r["source"] == "clips_titled") == [
        f"video_pairs:clips_titled:{c}" for c in titled
    ]
    record_of = {c["clip_id"]: c["record_id"] for c in clips}
    assert all(r["record_id"] == record_of[r["doc_id"].rsplit(":", 1)[1]] for r in manifest)
    assert by_source["clips_titled"]["excluded_by_filter"] == {
        "caption_sources": 2,
        "empty_text": 0,
        "min_caption_chars": 0,
    }
    assert by_source["clips_subtitled"]["candidates"] == 2 and by_source["clips_titled"]["candidates"] == 7
    shares = {n: s["achieved_share"] for n, s in by_source.items()}
    assert shares["clips_subtitled"] == pytest.approx(0.6, abs=0.05), shares  # weighted as the recipe asks
    texts = dict(mixture_texts(lake, "video_pairs"))  # the checks read each clip's caption back by clip id
    assert texts[f"video_pairs:clips_titled:{titled[0]}"] == "Bikes in the street"


def test_the_clips_and_their_captions_are_webdataset_pairs_counted_by_the_data_card(
    built: tuple[Storage, MixtureResult],
) -> None:
    lake, result = built
    assert result.summary["documents"] == 9 and result.summary["video_webdataset"]["samples"] == 9
    assert result.summary["webdataset"]["samples"] == 0  # no image source
    assert "- WebDataset: 9 video–text pairs (clip MP4, keyframe, caption) in 1 shard(s)" in result.data_card
    [shard] = result.summary["video_webdataset"]["shards"]
    assert shard["file"] == "clips-000000.tar"
    samples = read_webdataset(lake.read_bytes(mixture_uri(lake, "video_pairs", "webdataset", shard["file"])))
    stage = read_stage_table(lake, ASSET, "video-a", columns=["clip_id", "caption", "clip_sha256", "keyframe_jpeg"])
    by_clip = {r["clip_id"]: r for r in stage.to_pylist()}
    for sample in samples:
        meta = json.loads(sample["json"])
        row = by_clip[meta["clip_id"]]
        assert sample["__key__"].decode() == f"{meta['doc_id'].split(':')[1]}-{meta['clip_id']}"
        assert sample["txt"].decode() == row["caption"] and sample["jpg"] == row["keyframe_jpeg"]
        assert hashlib.sha256(sample["mp4"]).hexdigest() == row["clip_sha256"]  # the stage's re-encoded clip
        with av.open(io.BytesIO(sample["mp4"])) as clip:
            assert clip.streams.video[0].codec_context.name == "h264"


def test_explain_walks_a_clip_back_to_its_warc_record(built: tuple[Storage, MixtureResult]) -> None:
    lake, _ = built
    manifest = read_manifest(lake, "video_pairs")
    row = manifest.filter(pc.equal(manifest["source"], "clips_subtitled")).to_pylist()[-1]
    clip_id = row["doc_id"].rsplit(":", 1)[1]
    lin = explain(lake, clip_id)  # a bare clip id resolves too
    assert lin.doc_id == row["doc_id"] and lin.stage_row["clip_id"] == clip_id
    assert (lin.stage_row["start_s"], lin.stage_row["end_s"]) == (3.086, 8.0867)
    assert lin.raw_record["record_id"] == row["record_id"] == lin.stage_row["record_id"]
    assert lin.raw_record["warc_offset"] == row["warc_offset"] and lin.raw_record["mime_type"].startswith("video/")
    assert lin.warc_headers["WARC-Record-ID"] == lin.raw_record["warc_record_id"]  # the WARC file's own record id
    assert lin.warc_headers["WARC-Target-URI"].strip("<>").endswith("/oa4_launch.webm")
    assert lin.payload_sha256_matches and lin.payload_length == lin.raw_record["payload_length"]
    text = format_lineage(lin)
    assert f"clip_id={clip_id} span=3.09-8.09 s" in text and f"offset {row['warc_offset']}" in text
