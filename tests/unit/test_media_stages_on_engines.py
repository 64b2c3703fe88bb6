"""deduped_images and transcribed_audio on every engine: inline, 2 worker processes, and a single-node Ray."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from mmrecipe.audio.audio_shards import run_audio_stage
from mmrecipe.crawl_index import index_drop
from mmrecipe.engine import Engine, LocalEngine, RayEngine
from mmrecipe.stage_output import REJECTS, committed_parts
from mmrecipe.storage import Storage
from tests.unit.test_audio_stage import ASR, CASES, HOST, SETTINGS
from tests.unit.test_images_stage import EXPECTED_A, _files, _run_drops, outcomes
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
