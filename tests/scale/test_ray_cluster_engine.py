"""The shard engine on a real multi-node Ray cluster: same bytes as the local engine, tasks on every worker node,
and the faults a cluster has: a node lost mid-stage, a record that kills its worker, the driver killed mid-stage.

One cluster (tests/scale/conftest.py) serves every test: a head with no CPUs and two 1-CPU worker nodes.
The stage is the engine tests' `sized_pages` (tests/engine_stage.py), slowed down where a fault must strike
mid-stage; its outputs are compared byte for byte (part digests in the commit file) with the local engine's.
"""

import os
import signal
import subprocess
import sys
import threading
import time
from hashlib import sha256
from pathlib import Path

import pytest

from mmrecipe.crawl_index import index_drop, read_records
from mmrecipe.engine import LocalEngine, RayEngine, StageRun, plan_shards, run_stage
from mmrecipe.engine.shard_stage import MARKER
from mmrecipe.stage_output import REJECTS, STAGING, commit_uri, read_stage_table, stage_prefix
from mmrecipe.storage import Storage
from tests.scale.ray_cluster import RayCluster
from tests.scale.slow_stage import SHARD_BYTES, slow_stage
from tests.warc_fixtures import HttpResponse, warc_bytes

pytestmark = [pytest.mark.slow, pytest.mark.ray]
REPO = Path(__file__).resolve().parents[2]
PAGES = [
    HttpResponse(
        f"http://example.org/{i:02d}.html",
        f"<p>{''.join(sha256(f'{i}.{j}'.encode()).hexdigest() for j in range(2 * i))}</p>".encode(),
    )
    for i in range(40)
]  # hex digests: the WARC records' (gzipped) lengths grow with i, about 65 bytes per digest
POISON = "http://example.org/21.html"


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Storage:
    """A lake holding the raw_crawl index of one drop of 40 pages in two real WARC files."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # Ray workers import tests.engine_stage / tests.scale.slow_stage
    landing, lake = Storage(str(tmp_path / "landing")), Storage(str(tmp_path / "lake"), scratch=str(tmp_path / "t"))
    landing.write_bytes(landing.uri("d1", "a.warc.gz"), warc_bytes(PAGES[:25]))
    landing.write_bytes(landing.uri("d1", "b.warc.gz"), warc_bytes(PAGES[25:]))
    index_drop(landing, lake, "d1", ["a.warc.gz", "b.warc.gz"])
    return lake


def _shards(lake: Storage) -> int:
    return len(plan_shards(lake, "d1", "html", SHARD_BYTES))


def _run(lake: Storage, engine: object, seconds: float = 0.0, poison: str = "") -> StageRun:
    return run_stage(engine, slow_stage(lake, seconds, poison), plan_shards(lake, "d1", "html", SHARD_BYTES))  # type: ignore[arg-type]


def _published(lake: Storage) -> tuple[bytes, list, list]:
    """The commit file's bytes (every part's row count and sha256) and the committed rows."""
    data, rejects = read_stage_table(lake, "sized", "d1"), read_stage_table(lake, "sized", "d1", REJECTS)
    return lake.read_bytes(commit_uri(lake, "sized", "d1")), data.to_pylist(), rejects.to_pylist()


def _local(lake: Storage, poison: str = "") -> tuple[bytes, list, list]:
    _run(lake, LocalEngine(2), poison=poison)
    return _published(lake)


def _shard_tasks(rc: RayCluster) -> list:
    """Every attempt of every shard task (`_call`) the cluster ran, from Ray's state API."""
    from ray.util.state import list_tasks

    return list_tasks(
        address=rc.dashboard_url, filters=[("name", "=", "_call")], limit=10_000, raise_on_missing_output=False
    )


def _task_nodes(rc: RayCluster, before: set[str]) -> dict[str, str]:
    """task id -> node id of the shard tasks that finished since `before`."""
    return {t.task_id: t.node_id for t in _shard_tasks(rc) if t.task_id not in before and t.state == "FINISHED"}


def _markers(lake: Storage) -> int:
    root = Path(lake.uri(stage_prefix("sized", "d1", STAGING)))
    return len(list(root.rglob(MARKER))) if root.exists() else 0


def test_shards_run_on_every_worker_node_with_the_local_engines_bytes(ray_cluster: RayCluster, lake: Storage) -> None:
    local = _local(lake)
    before = set(_task_nodes(ray_cluster, set()))
    run = _run(lake, RayEngine(ray_cluster.address))
    n = _shards(lake)
    assert run.shards_total == run.shards_run == n >= 8 and run.shards_reused == 0
    assert _published(lake) == local  # the same part digests, rows and rejects
    assert 0 < len(local[1]) < 40 and {r["reason"] for r in local[2]} == {"too_small"}
    nodes = _task_nodes(ray_cluster, before)
    assert len(nodes) == n  # one task per shard, none lost or repeated
    assert set(nodes.values()) == ray_cluster.worker_node_ids()  # both workers ran shards; the head (0 CPUs) none


def test_a_record_that_kills_its_worker_on_the_cluster_is_rejected_and_the_stage_completes(
    ray_cluster: RayCluster, lake: Storage
) -> None:
    local = _local(lake, POISON)
    run = _run(lake, RayEngine(ray_cluster.address, max_retries=1), poison=POISON)
    _, data, rejects = _published(lake)
    crashed = [r for r in rejects if r["reason"] == "worker_crashed"]
    index = {r["record_id"]: r["target_uri"] for r in read_records(lake, "d1", "html").to_pylist()}
    assert [index[r["record_id"]] for r in crashed] == [POISON] and "WorkerCrashedError" in crashed[0]["detail"]
    assert run.output.counts.rejected == {"worker_crashed": 1}
    assert len(data) + len(rejects) == 40  # in = kept + dropped + rejected
    assert POISON not in {r["url"] for r in data}
    assert data == local[1]  # every other record went through the steps as on the local engine
    assert [r for r in rejects if r["reason"] != "worker_crashed"] == [
        r for r in local[2] if r["reason"] != "worker_crashed"
    ]


def test_a_worker_node_killed_mid_stage_changes_nothing_in_the_output(ray_cluster: RayCluster, lake: Storage) -> None:
    local = _local(lake)
    victim = ray_cluster.workers[0]
    killed = threading.Event()

    def running_on_victim() -> bool:
        tasks = _shard_tasks(ray_cluster)
        return any(t.state == "RUNNING" and t.node_id == victim.node_id for t in tasks if t.task_id not in before)

    def kill_while_a_shard_runs_on_it() -> None:
        deadline = time.monotonic() + 120
        while not (_markers(lake) >= 2 and running_on_victim()) and time.monotonic() < deadline:
            time.sleep(0.1)
        ray_cluster.kill_worker(victim)  # SIGKILL its raylet and workers, with a shard in flight on it
        killed.set()

    def retried() -> set[str]:
        """The shard tasks with a second attempt (Ray reports task events asynchronously: polled, not read once)."""
        deadline = time.monotonic() + 60
        while not (found := {t.task_id for t in new_attempts() if t.attempt_number > 0}):
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        return found

    def new_attempts() -> list:
        return [t for t in _shard_tasks(ray_cluster) if t.task_id not in before]

    before = {t.task_id for t in _shard_tasks(ray_cluster)}
    killer = threading.Thread(target=kill_while_a_shard_runs_on_it)
    killer.start()
    try:
        run = _run(lake, RayEngine(ray_cluster.address), seconds=1.0)
    finally:
        killer.join()
        ray_cluster.add_worker()  # the next tests get two workers again
    assert killed.is_set() and run.shards_total == _shards(lake)
    assert _published(lake) == local
    rerun = retried()
    assert rerun, "no shard was in flight on the killed node"  # Ray re-ran them on the surviving node
    assert all(t.node_id != victim.node_id for t in new_attempts() if t.task_id in rerun and t.state == "FINISHED")


def test_the_driver_killed_mid_stage_then_rerun_redoes_only_unfinished_shards(
    ray_cluster: RayCluster, lake: Storage, tmp_path: Path
) -> None:
    local = _local(lake)
    lake_root = lake.uri()
    driver = subprocess.Popen(
        [sys.executable, "-m", "tests.scale.slow_stage", lake_root, ray_cluster.address, "1.5"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "driver.log").open("w"),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while _markers(lake) < 3 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert driver.poll() is None, f"the driver ended before it was killed: {(tmp_path / 'driver.log').read_text()}"
        os.killpg(driver.pid, signal.SIGKILL)
    finally:
        driver.wait(30)
    finished = _markers(lake)
    assert 3 <= finished < _shards(lake)
    run = _run(lake, RayEngine(ray_cluster.address))
    assert run.shards_reused >= finished and run.shards_run == _shards(lake) - run.shards_reused > 0
    assert run.metadata()["shards_reused"] == run.shards_reused
    assert _published(lake) == local
