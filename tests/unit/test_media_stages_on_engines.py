"""deduped_images, transcribed_audio and video_clips on every engine: inline, 2 worker processes, a single-node Ray."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from mmrecipe.audio.audio_shards import run_audio_stage
from mmrecipe.crawl_index import index_drop
from mmrecipe.drops import verify_drop
from mmrecipe.engine import Engine, LocalEngine, RayEngine
from mmrecipe.stage_output import REJECTS, committed_parts
from mmrecipe.storage import Storage
from mmrecipe.video.stage import run_video_stage, video_conservation
from tests.unit.test_audio_stage import ASR, CASES, HOST, SETTINGS
from tests.unit.test_images_stage import EXPECTED_A, _files, _run_drops, outcomes
from tests.video_samples import PLANTED, VIDEO_DROPS
from tests.warc_fixtures import HttpResponse, warc_bytes

pytestmark = pytest.mark.slow  # process pools and a Ray node: ~1 min


@pytest.fixture(scope="module")
def ray_engine() -> Iterator[RayEngine]:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        yield RayEngine(num_cpus=1)
    finally:
        ray.shutdown()


def _engines(ray_engine: RayEngine) -> dict[str, Engine]:
    return {"inline": LocalEngine(1), "2 processes": LocalEngine(2), "ray": ray_engine}


def test_images_are_byte_identical_on_every_engine(tmp_path: Path, ray_engine: RayEngine) -> None:
    lakes = {name: _run_drops(tmp_path, name, engine, 1, False)[0] for name, engine in _engines(ray_engine).items()}
    files = {name: _files(lake) for name, lake in lakes.items()}
    assert files["inline"] == files["2 processes"] == files["ray"]  # tables, commits, WebDataset, index entries
    assert any("/data/2024-01-a/part-00018.parquet" in k for k in files["ray"])  # one part per record's shard
    assert outcomes(lakes["ray"], "2024-01-a") == EXPECTED_A


def test_audio_is_byte_identical_on_every_engine(tmp_path: Path, ray_engine: RayEngine) -> None:
    published, landing = {}, Storage(str(tmp_path / "landing"))
    responses = [HttpResponse(HOST + url, body, ctype, status) for url, (body, ctype, status, *_) in CASES.items()]
    landing.write_bytes(landing.uri("d1", "a.warc.gz"), warc_bytes(responses))
    for name, engine in _engines(ray_engine).items():
        lake = Storage(str(tmp_path / name))
        index_drop(landing, lake, "d1", ["a.warc.gz"])
        run = run_audio_stage(engine, lake, "d1", SETTINGS, ASR, 1)
        assert run.run.shards_total == len(CASES) and not run.reused
        assert (run.run.output.counts.kept, run.run.output.counts.dropped) == (2, {"too_little_speech": 2})
        parts = [u for t in ("data", REJECTS) for u in committed_parts(lake, "transcribed_audio", "d1", t)]
        published[name] = {u.removeprefix(lake.root): lake.read_bytes(u) for u in parts}
    assert published["inline"] == published["2 processes"] == published["ray"]


def test_video_is_byte_identical_on_every_engine(tmp_path: Path, ray_engine: RayEngine) -> None:
    """Both video drops, one record per shard: tables, commits, clip MP4s, WebDataset shards and the clip index."""
    source, published = Storage(str(VIDEO_DROPS)), {}
    for name, engine in _engines(ray_engine).items():
        lake = Storage(str(tmp_path / name), scratch=str(tmp_path / f"{name}-scratch"))
        for drop in PLANTED["drops"]:
            index_drop(source, lake, drop, verify_drop(source, drop).warc_files)
            result = run_video_stage(lake, drop, engine=engine, shard_bytes=1)
            assert result.run.shards_total == result.report.records  # one video record per shard
            assert video_conservation(lake, drop).passed
        assert result.output.counts.dropped["near_duplicate"] == 5  # video-b's re-encoded copy, across drops
        published[name] = {
            u.removeprefix(lake.root): lake.read_bytes(u) for u in lake.list_files(lake.uri("video_clips"))
        }
    assert any("/side/video-a/clip_mp4-00001.parquet" in k for k in published["ray"])
    assert published["inline"] == published["2 processes"] == published["ray"]
