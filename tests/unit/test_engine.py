"""Shards, engines and the sharded-stage driver, over a real raw_crawl index of a real WARC.

The shard function here (`sized_pages`) is a test stage: two declared steps, one of which calls `os._exit`
on a chosen record to stand in for a record that segfaults its worker. The real stages' shard functions
are tested with their stages (tests/unit/test_text_pipeline.py, tests/unit/test_text_shards.py).
"""

import itertools
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mmrecipe.crawl_index import index_drop, read_records
from mmrecipe.engine import (
    LocalEngine,
    RayEngine,
    ShardStage,
    fingerprint,
    make_engine,
    plan_shards,
    read_shard,
    run_shard,
    run_stage,
)
from mmrecipe.stage_output import (
    REJECTS,
    STAGING,
    commit_uri,
    committed,
    committed_parts,
    iter_stage_rows,
    read_commit,
    read_stage_table,
    stage_prefix,
    verify_partition,
)
from mmrecipe.storage import Storage
from tests.engine_stage import SCHEMA, SizeConfig, sized_pages
from tests.warc_fixtures import HttpResponse, warc_bytes

PAGES = [HttpResponse(f"http://example.org/{i:02d}.html", b"<p>" + b"x" * (100 * i) + b"</p>") for i in range(20)]
PAGES.append(HttpResponse("http://example.org/logo.png", b"\x89PNG not really", "image/png"))


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Storage:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))  # spawn and Ray workers import tests
    landing, lake = Storage(str(tmp_path / "landing")), Storage(str(tmp_path / "lake"), scratch=str(tmp_path / "t"))
    landing.write_bytes(landing.uri("d1", "a.warc.gz"), warc_bytes(PAGES[:12]))
    landing.write_bytes(landing.uri("d1", "b.warc.gz"), warc_bytes(PAGES[12:]))
    index_drop(landing, lake, "d1", ["a.warc.gz", "b.warc.gz"])
    return lake


def stage(lake: Storage, config: SizeConfig) -> ShardStage:
    return ShardStage("sized", "d1", lake, SCHEMA, sized_pages, config, fingerprint("sized", 1, config))


def html_bytes(lake: Storage) -> list[int]:
    return read_records(lake, "d1", "html", ["warc_length"])["warc_length"].to_pylist()


@pytest.mark.parametrize("target", [1, 1_000, 4_000, 1 << 30])
def test_shards_tile_the_kinds_records_in_order_and_by_bytes(lake: Storage, target: int) -> None:
    shards = plan_shards(lake, "d1", "html", target)
    lengths = html_bytes(lake)
    assert [s.index for s in shards] == list(range(len(shards)))
    assert shards[0].start == 0 and shards[-1].stop == len(lengths) == 20
    assert all(a.stop == b.start for a, b in itertools.pairwise(shards))
    assert [s.bytes for s in shards] == [sum(lengths[s.start : s.stop]) for s in shards]
    if target == 1:
        assert len(shards) == 20  # every record starts in its own cell
    if target == 1 << 30:
        assert len(shards) == 1
    rows = [r for s in shards for r in read_shard(lake, s, ["record_id"])["record_id"].to_pylist()]
    assert rows == read_records(lake, "d1", "html", ["record_id"])["record_id"].to_pylist()


def test_a_kind_without_records_still_has_one_empty_shard(lake: Storage) -> None:
    assert [(s.start, s.stop) for s in plan_shards(lake, "d1", "audio")] == [(0, 0)]
    assert [s.rows for s in plan_shards(lake, "d1", "image")] == [1]


def test_engine_names_are_checked() -> None:
    assert isinstance(make_engine("local", 2), LocalEngine) and isinstance(make_engine("ray"), RayEngine)
    with pytest.raises(ValueError, match=r"unknown engine 'spark'.*MMRECIPE_ENGINE"):
        make_engine("spark")


def _publish(lake: Storage, engine: Any, target: int, config: SizeConfig) -> tuple[Any, pa.Table, pa.Table]:
    run = run_stage(engine, stage(lake, config), plan_shards(lake, "d1", "html", target))
    return run, read_stage_table(lake, "sized", "d1"), read_stage_table(lake, "sized", "d1", REJECTS)


def test_the_stage_publishes_one_part_per_shard_with_a_commit_and_step_stats(lake: Storage) -> None:
    run, data, rejects = _publish(lake, LocalEngine(2), 4_000, SizeConfig(min_length=1_000))
    assert run.shards_total == run.shards_run == len(run.results) > 1 and run.shards_reused == 0
    lengths = html_bytes(lake)
    assert data.num_rows == sum(n >= 1_000 for n in lengths) and rejects.num_rows == sum(n < 1_000 for n in lengths)
    assert set(rejects["reason"].to_pylist()) == {"too_small"}
    assert run.output.counts.as_metadata()["dropped_too_small"] == rejects.num_rows
    meta = run.metadata()
    assert meta["step_poison_in"] == 20 and meta["step_size_in"] == 20
    assert meta["step_size_dropped_too_small"] == rejects.num_rows and meta["step_size_seconds"] >= 0
    commit = read_commit(lake, "sized", "d1")
    assert [e["name"] for e in commit["parts"]["data"]] == [f"part-{i:05d}.parquet" for i in range(len(run.results))]
    assert [p.rows for p in committed(lake, "sized", "d1")] == [r.counts.kept for r in run.results]
    assert not lake.list_files(lake.uri(stage_prefix("sized", "d1", STAGING)))  # staging removed after commit


def test_outputs_are_identical_across_worker_counts_and_shard_sizes(lake: Storage) -> None:
    config = SizeConfig(min_length=1_000)
    first = _publish(lake, LocalEngine(1), 4_000, config)
    commit = lake.read_bytes(commit_uri(lake, "sized", "d1"))
    again = _publish(lake, LocalEngine(2), 4_000, config)
    assert lake.read_bytes(commit_uri(lake, "sized", "d1")) == commit  # same plan: the same bytes in every part
    for target in (1, 1 << 30):
        other = _publish(lake, LocalEngine(2), target, config)
        assert other[1].equals(first[1]) and other[2].equals(first[2])
    assert again[1].equals(first[1])


def test_a_rerun_reuses_every_finished_shard(lake: Storage) -> None:
    config = SizeConfig(min_length=1_000)
    shards = plan_shards(lake, "d1", "html", 4_000)
    s = stage(lake, config)
    finished = [run_shard(s, shard) for shard in shards[:2]]  # a driver killed after two shards finished
    assert all(not r.reused for r in finished)
    run = run_stage(LocalEngine(1), s, shards)
    assert (run.shards_total, run.shards_reused, run.shards_run) == (len(shards), 2, len(shards) - 2)
    assert run.metadata()["shards_reused"] == 2


def test_a_changed_config_reuses_nothing(lake: Storage) -> None:
    shards = plan_shards(lake, "d1", "html", 4_000)
    run_shard(stage(lake, SizeConfig(min_length=1_000)), shards[0])
    assert run_stage(LocalEngine(1), stage(lake, SizeConfig(min_length=500)), shards).shards_reused == 0


def _poisoned(lake: Storage, engine: Any) -> None:
    poison = "http://example.org/13.html"
    run, data, rejects = _publish(lake, engine, 4_000, SizeConfig(min_length=1_000, poison=poison))
    crashed = [r for r in rejects.to_pylist() if r["reason"] == "worker_crashed"]
    assert len(crashed) == 1 and crashed[0]["outcome"] == "rejected"
    index = {r["record_id"]: r["target_uri"] for r in read_records(lake, "d1", "html").to_pylist()}
    assert index[crashed[0]["record_id"]] == poison and crashed[0]["detail"]
    assert data.num_rows + rejects.num_rows == 20  # every other record still went through the steps
    assert run.output.counts.rejected["worker_crashed"] == 1
    assert poison not in data["url"].to_pylist()


def test_a_record_that_kills_its_worker_is_rejected_on_the_local_engine(lake: Storage) -> None:
    _poisoned(lake, LocalEngine(2))


@pytest.mark.slow
def test_a_record_that_kills_its_worker_is_rejected_on_ray(lake: Storage) -> None:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        _poisoned(lake, RayEngine(max_retries=0))
    finally:
        ray.shutdown()


def test_a_commit_removes_the_parts_it_does_not_name_and_all_staging(lake: Storage) -> None:
    config = SizeConfig(min_length=1_000)
    many = run_stage(LocalEngine(1), stage(lake, config), plan_shards(lake, "d1", "html", 1))
    assert len(committed(lake, "sized", "d1")) == len(many.results) == 20
    leftover = lake.uri(stage_prefix("sized", "d1"), "part-00042.parquet")  # a crashed run's part
    lake.write_bytes(leftover, b"PAR1 not committed")
    abandoned = stage(lake, SizeConfig(min_length=5))  # another config's finished shard, never committed
    run_shard(abandoned, plan_shards(lake, "d1", "html", 1)[0])
    one = run_stage(LocalEngine(1), stage(lake, config), plan_shards(lake, "d1", "html", 1 << 30))
    for tree in ("data", REJECTS):
        assert lake.list_files(lake.uri(stage_prefix("sized", "d1", tree))) == [
            lake.uri(stage_prefix("sized", "d1", tree), "part-00000.parquet")
        ]
    assert not lake.list_files(lake.uri(stage_prefix("sized", "d1", STAGING)))
    assert read_stage_table(lake, "sized", "d1").num_rows == one.output.counts.kept == many.output.counts.kept


def test_a_partition_without_a_commit_is_an_error_that_says_what_to_do(lake: Storage) -> None:
    with pytest.raises(FileNotFoundError, match=r"sized has no committed output for partition 'd1'.*materialize it"):
        read_stage_table(lake, "sized", "d1")


def _map_in_order_with_errors(engine: LocalEngine | RayEngine) -> None:
    assert engine.map(abs, [-3, 2, -1, 0, -7]) == [3, 2, 1, 0, 7]
    assert engine.map(abs, []) == []
    with pytest.raises(ValueError, match="invalid literal for int"):
        engine.map(int, ["1", "x"])


@pytest.mark.parametrize("workers", [1, 2])
def test_map_runs_tasks_in_order_and_raises_their_errors_on_the_local_engine(workers: int) -> None:
    _map_in_order_with_errors(LocalEngine(workers))


@pytest.mark.slow
def test_map_runs_tasks_in_order_and_raises_their_errors_on_ray() -> None:
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        _map_in_order_with_errors(RayEngine(max_retries=0))
    finally:
        ray.shutdown()


def _flip_one_byte(lake: Storage, uri: str) -> None:
    """Tamper with a part without changing its size: one byte in the middle of its data pages."""
    data = bytearray(lake.read_bytes(uri))
    data[len(data) // 3] ^= 0xFF
    lake.write_bytes(uri, bytes(data))


def test_readers_refuse_a_missing_or_resized_part_and_verify_finds_a_tampered_one(lake: Storage) -> None:
    run_stage(LocalEngine(1), stage(lake, SizeConfig(min_length=1_000)), plan_shards(lake, "d1", "html", 2_000))
    parts = committed(lake, "sized", "d1")
    commit = read_commit(lake, "sized", "d1")["parts"]
    assert len(parts) > 2 and all(e["rows"] >= 0 and e["bytes"] > 0 and len(e["sha256"]) == 64
                                  for tree in commit.values() for e in tree)  # fmt: skip
    assert verify_partition(lake, "sized", "d1") == []
    tampered, missing, grown = parts[0].uri, parts[1].uri, parts[2].uri
    _flip_one_byte(lake, tampered)  # same size: only the digest sees it
    assert committed(lake, "sized", "d1") == parts
    [problem] = verify_partition(lake, "sized", "d1")
    assert problem.startswith(f"sized[d1]: committed part {tampered} has sha256") and "re-materialize sized" in problem
    lake.write_bytes(grown, lake.read_bytes(grown) + b"appended")
    with pytest.raises(ValueError, match=rf"committed part {grown} has {parts[2].bytes + 8} bytes, its commit says"):
        read_stage_table(lake, "sized", "d1")
    lake.delete(missing)
    for read in (read_stage_table, lambda *a: list(iter_stage_rows(*a)), committed_parts):
        with pytest.raises(FileNotFoundError, match=rf"committed part {missing} is missing: re-materialize sized"):
            read(lake, "sized", "d1")
    problems = verify_partition(lake, "sized", "d1")
    assert [p.split(" has ")[0].split(" is ")[0] for p in problems] == [
        f"sized[d1]: committed part {uri}" for uri in (tampered, missing, grown)
    ]


def test_a_part_whose_rows_differ_from_its_commit_is_refused(lake: Storage) -> None:
    run_stage(LocalEngine(1), stage(lake, SizeConfig(min_length=1_000)), plan_shards(lake, "d1", "html", 1 << 30))
    uri = commit_uri(lake, "sized", "d1")
    commit = read_commit(lake, "sized", "d1")
    commit["parts"]["data"][0]["rows"] += 1  # a commit that claims a row the part does not have
    lake.write_bytes(uri, json.dumps(commit).encode())
    with pytest.raises(ValueError, match=r"part-00000\.parquet has \d+ bytes, \d+ rows, its commit says .* rows"):
        read_stage_table(lake, "sized", "d1")
