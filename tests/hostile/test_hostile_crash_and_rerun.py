"""Crash safety and idempotency: SIGKILL mid-write publishes nothing partial; re-runs give the same bytes.

The session's hostile home is materialized once (clean), then each stage is re-run alone and killed
halfway through writing its kept data, then every stage is re-run. The published lake must equal
the clean run's byte for byte after each kill and after the re-run, dedup indexes included.
"""

from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pytest

from mmrecipe.settings import Settings
from mmrecipe.stage_output import DATA, REJECTS, STAGING, part_name, read_stage_table, stage_prefix
from mmrecipe.storage import Storage
from tests.conftest import land_drop
from tests.hostile.harness import (
    STAGE_KIND,
    ChildRun,
    CorpusDir,
    HostileRun,
    KillResult,
    commit_file,
    fresh_home,
    is_temporary,
    lake_files,
    materialize,
    partition_files,
    run_child,
    temporary_files,
)
from tests.hostile.make_hostile_corpus import DROP

pytestmark = pytest.mark.slow  # every drop stage on the hostile corpus, in child processes


def test_every_published_lake_file_went_through_a_temporary_name(hostile_run: HostileRun) -> None:
    """The write trace of the clean run: each lake file was written under a hidden temporary name, then renamed."""
    trace = hostile_run.run.trace
    opened = [t["path"] for t in trace if t["op"] in ("open", "append")]
    direct = [p for p in opened if not is_temporary(p)]
    assert direct == [], f"files written in place (a crash would leave them half-written): {direct}"
    renamed = {t["path"] for t in trace if t["op"] == "move"}
    assert set(hostile_run.files) <= renamed, f"lake files not renamed into place: {set(hostile_run.files) - renamed}"
    assert all(is_temporary(t["src"]) for t in trace if t["op"] == "move")


@pytest.mark.parametrize("stage", list(STAGE_KIND))
def test_sigkill_mid_write_leaves_the_published_partition_intact(
    stage: str, hostile_run: HostileRun, hostile_kills: dict[str, KillResult]
) -> None:
    kill = hostile_kills[stage]
    assert kill.run.killed, f"the kill hook never fired (exit {kill.run.returncode}):\n{kill.run.stderr[-2000:]}"
    torn = kill.torn_file
    assert torn is not None and is_temporary(torn), kill.run.trace[-5:]
    assert kill.temporary.get(torn, 0) > 0, "the child died before writing anything: not a mid-write kill"
    assert kill.files == hostile_run.files  # every published file: the clean run's bytes, nothing torn
    published = {Path(f).name for f in ds.dataset(hostile_run.lake / stage / DATA, format="parquet").files}
    assert part_name(0) in published and not any(n.startswith(".tmp-") for n in published)  # readers skip it
    table = read_stage_table(Storage(str(hostile_run.lake)), stage, DROP)
    assert table.num_rows == hostile_run.run.asset(stage)["metadata"]["kept"]


def test_rerun_after_the_kills_equals_the_clean_run(hostile_run: HostileRun, hostile_rerun: ChildRun) -> None:
    now = lake_files(hostile_run.lake)
    own_now, other_now = partition_files(now, hostile_run.stages, DROP)
    own_clean, other_clean = partition_files(hostile_run.files, hostile_run.stages, DROP)
    assert own_now == own_clean, "stage partitions differ from the clean run"
    assert other_now == other_clean, "dedup indexes / models differ from the clean run"
    assert any("index" in k for k in other_now) or any("dedup_index" in k for k in own_now)
    for stage in hostile_run.stages:
        first, again = hostile_run.run.asset(stage)["metadata"], hostile_rerun.asset(stage)["metadata"]
        counts = [
            k for k in first if k in ("total", "kept", "dropped", "rejected") or k.startswith(("dropped_", "rejected_"))
        ]
        assert {k: again[k] for k in counts} == {k: first[k] for k in counts}, stage
    print(f"leftover temporary files after {len(hostile_run.kills)} kills: {temporary_files(hostile_run.lake)}")


def test_killed_first_run_publishes_nothing_partial_and_rerun_equals_a_clean_run(
    tmp_path: Path, hostile_corpus: CorpusDir
) -> None:
    """raw_crawl on a fresh home: killed mid-write of its first file, then just before its last rename."""
    home, drop = tmp_path / "home", "fresh-drop"
    files = {n: (hostile_corpus.drop_dir(DROP) / n).read_bytes() for n in ("00-controls.warc.gz", "02-framing.warc.gz")}

    def land() -> Settings:
        settings = fresh_home(home)
        land_drop(settings, drop, files)
        return settings

    settings = land()
    with dg.instance_for_test(temp_dir=settings.dagster_home) as instance:
        assert materialize(settings, instance, drop, ["raw_crawl"]).success
    clean = lake_files(settings.lake)
    data, rejects = (f"{stage_prefix('raw_crawl', drop, tree)}/{part_name(0)}" for tree in (DATA, REJECTS))
    assert sorted(clean) == sorted([data, rejects, commit_file("raw_crawl", drop)])

    staged_rejects = f"{stage_prefix('raw_crawl', drop, STAGING)}/*rejects.parquet"
    for kill_at in (f"write:{staged_rejects}", f"rename:{data}"):
        settings = land()
        run = run_child(settings, drop, ["raw_crawl"], kill_at=kill_at, tag="kill")
        assert run.killed, run.stderr[-2000:]
        visible = lake_files(settings.lake)
        assert data not in visible  # the partition's data never appears half-made
        assert all(clean[k] == v for k, v in visible.items())  # whatever is visible is complete
        assert temporary_files(settings.lake), "the kill left no temporary file: it did not happen mid-write"
        print(f"after a kill at {kill_at}: visible {sorted(visible)}")
    with dg.instance_for_test(temp_dir=settings.dagster_home) as instance:  # the re-run after the last kill
        assert materialize(settings, instance, drop, ["raw_crawl"]).success
    assert lake_files(settings.lake) == clean
