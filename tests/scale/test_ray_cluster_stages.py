"""The committed sample drops through every drop stage with `MMRECIPE_ENGINE=ray` on the multi-node cluster.

The same drops are ingested twice into a fresh MMRECIPE_HOME at the same path (rows name their WARC files), by
the operators' path (`mmrecipe ingest`'s
`ingest_drop`: raw_crawl, the quality classifier, then every other drop stage): once on the `local` engine,
once on the cluster (`RAY_ADDRESS`). Every stage's commit file names each committed part with its row count and
sha256, so equal commit files mean byte-identical outputs. Ray's state API shows which nodes ran the shards.
"""

import shutil
from pathlib import Path

import pytest

from data_assets.cli import _instance, _latest_metadata, ingest_drop
from mmrecipe.settings import Settings
from tests.conftest import SAMPLE_DROPS
from tests.scale.ray_cluster import RayCluster

pytestmark = [pytest.mark.slow, pytest.mark.ray]
DROPS = sorted(p.name for p in SAMPLE_DROPS.iterdir() if p.is_dir())
# the drop stages whose drivers submit their shards to the configured engine (the others run theirs in the step)
ENGINE_STAGES = ("filtered_text", "extracted_text", "video_clips")  # video: its page scans (no videos here)
SHARD_BYTES = 100_000  # several shards per drop (the default 64 MiB makes one), so both worker nodes get some


def _ingest_drops(monkeypatch: pytest.MonkeyPatch, home: Path, **env: str) -> tuple[dict[str, bytes], int]:
    """Every sample drop ingested into a fresh home: each stage partition's commit file, by path, and how many
    shards the engine stages ran."""
    env = {"MMRECIPE_HOME": str(home), "MMRECIPE_TMP": str(home / "tmp"), "MMRECIPE_EXECUTOR": "in_process",
           "MMRECIPE_SHARD_BYTES": str(SHARD_BYTES), **env}  # fmt: skip
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = Settings.from_env(env)
    shards = 0
    for drop in DROPS:
        assert ingest_drop(settings, SAMPLE_DROPS / drop, drop)
        with _instance(settings) as instance:
            shards += sum(_latest_metadata(instance, stage, drop)["shards_run"] for stage in ENGINE_STAGES)
    lake = Path(settings.lake)
    return {p.relative_to(lake).as_posix(): p.read_bytes() for p in sorted(lake.glob("*/commits/*.json"))}, shards


def test_sample_drops_through_every_drop_stage_on_the_cluster_match_the_local_engine(
    ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray.util.state import list_tasks

    home = tmp_path / "home"
    # the local side inline (1 worker: no process pools to start, ~2.5x faster); worker counts give the same bytes
    # (tests/unit/test_text_pipeline.py, tests/unit/test_media_stages_on_engines.py)
    local, _ = _ingest_drops(monkeypatch, home, MMRECIPE_ENGINE="local", MMRECIPE_WORKERS="1")
    shutil.rmtree(home)
    before = {t.task_id for t in list_tasks(address=ray_cluster.dashboard_url, limit=10_000)}
    on_ray, shards = _ingest_drops(monkeypatch, home, MMRECIPE_ENGINE="ray", RAY_ADDRESS=ray_cluster.address)

    stages = {path.split("/")[0] for path in local}
    assert {
        "raw_crawl",
        "filtered_text",
        "extracted_text",
        "deduped_images",
        "transcribed_audio",
        "video_clips",
    } <= stages
    assert sorted(on_ray) == sorted(local) == sorted(f"{s}/commits/{d}.json" for s in stages for d in DROPS)
    assert on_ray == local  # every committed part of every stage and drop, byte for byte

    tasks = [t for t in list_tasks(address=ray_cluster.dashboard_url, limit=10_000) if t.task_id not in before]
    shard_tasks = [t for t in tasks if t.name == "_call" and t.state == "FINISHED"]
    assert len(shard_tasks) >= shards >= len(ENGINE_STAGES) * len(DROPS)  # every shard of the engine stages
    assert {t.node_id for t in shard_tasks} == ray_cluster.worker_node_ids()  # both worker nodes ran shards
