"""Conservation on every drop stage: the blocking check passes on the hostile drop and fails, naming the
problem, when a row is removed or duplicated on purpose."""

import re
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmrecipe.stage_output import REJECTS, commit_uri, committed_parts
from mmrecipe.storage import Storage
from tests.committed_edits import recommit
from tests.conftest import run_checks
from tests.hostile.harness import STAGE_KIND, HostileRun
from tests.hostile.make_hostile_corpus import DROP

pytestmark = pytest.mark.slow  # every drop stage on the hostile corpus, in child processes


def _conservation(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == "conservation")


@pytest.fixture
def restored(hostile_run: HostileRun) -> Iterator[dict[Path, bytes]]:
    """Files a test tampers with, restored byte for byte afterwards (the session's lake is shared)."""
    saved: dict[Path, bytes] = {}
    yield saved
    for path, data in saved.items():
        path.write_bytes(data)


def _tamper(path: Path, how: str, saved: dict[Path, bytes]) -> str:
    """Rewrite the committed part at `path` without one row, or with one twice, and re-enter it in its commit."""
    saved.setdefault(path, path.read_bytes())
    commit = Path(commit_uri(Storage(str(path.parents[3])), path.parents[2].name, path.parent.name))
    saved.setdefault(commit, commit.read_bytes())
    table = pq.read_table(path)
    assert table.num_rows > 0, f"{path} is empty: nothing to tamper with"
    victim = table.slice(table.num_rows // 2, 1)
    if how == "remove":
        rest = [table.slice(0, table.num_rows // 2), table.slice(table.num_rows // 2 + 1)]
        pq.write_table(pa.concat_tables(rest), path)
    else:
        pq.write_table(pa.concat_tables([table, victim]), path)
    recommit(Storage(str(path.parents[3])), str(path))
    return victim["record_id"][0].as_py()


@pytest.mark.parametrize("stage", list(STAGE_KIND))
@pytest.mark.parametrize(("how", "table"), [("remove", 0), ("remove", 1), ("duplicate", 1)])  # 0: kept data, 1: rejects
def test_conservation_check_catches_a_tampered_row(
    stage: str,
    how: str,
    table: int,
    hostile_run: HostileRun,
    hostile_instance: dg.DagsterInstance,
    restored: dict[Path, bytes],
) -> None:
    assert any(c["name"] == "conservation" and c["passed"] for c in hostile_run.run.asset(stage)["checks"])
    part = committed_parts(Storage(str(hostile_run.lake)), stage, DROP, ("data", REJECTS)[table])[0]
    record_id = _tamper(Path(part), how, restored)
    evaluation = _conservation(run_checks(hostile_run.settings, hostile_instance, DROP, stage))
    assert not evaluation.passed
    meta = {k: getattr(v, "value", v) for k, v in evaluation.metadata.items()}
    if stage == "raw_crawl":  # byte coverage: a removed span leaves a gap (or a short end), a duplicate overlaps
        expected = r"uncovered|spans end at \d+, file has" if how == "remove" else "covered twice"
        assert re.search(expected, meta["problems"]), meta
    elif how == "remove":
        assert meta["lost"] == 1 and record_id in meta["lost_sample"], meta
    else:
        assert meta["duplicated"] == 1, meta


def test_every_drop_stage_has_a_blocking_conservation_check(hostile_run: HostileRun) -> None:
    from data_assets.definitions import build_defs

    specs = {
        (spec.asset_key.to_user_string(), spec.name): spec
        for checks in build_defs(hostile_run.settings).asset_checks
        for spec in checks.check_specs
    }
    for stage in hostile_run.stages:
        spec = specs.get((stage, "conservation"))
        assert spec is not None, f"{stage} has no conservation check"
        assert spec.blocking, f"{stage}'s conservation check does not block downstream materializations"
