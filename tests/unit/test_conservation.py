"""Record conservation of a stage partition, judged by `mmrecipe.conservation` on real index and stage tables."""

from pathlib import Path

import pyarrow as pa
import pytest

from mmrecipe.conservation import record_ids_conserved
from mmrecipe.crawl_index import index_drop, read_records
from mmrecipe.stage_output import PROVENANCE_FIELDS, StageWriter
from mmrecipe.storage import Storage
from tests.warc_fixtures import HttpResponse, warc_bytes

SCHEMA = pa.schema([*PROVENANCE_FIELDS, pa.field("url", pa.string())])


@pytest.fixture
def lake(tmp_path: Path) -> Storage:
    """A lake with the raw_crawl index of one drop holding four HTML pages."""
    storage = Storage(str(tmp_path / "lake"))
    pages = [HttpResponse(f"http://example.org/{i}.html", f"<p>page {i}</p>".encode()) for i in range(4)]
    storage.write_bytes(storage.uri("d1", "a.warc.gz"), warc_bytes(pages))
    index_drop(storage, storage, "d1", ["a.warc.gz"])
    return storage


def write_stage(lake: Storage, kept: list[dict], dropped: list[dict]) -> None:
    with StageWriter(lake, "stage", "d1", SCHEMA) as out:
        for row in kept:
            out.keep(row)
        for row in dropped:
            out.drop(row, "too_short", "")
        out.close()


@pytest.mark.parametrize(
    ("kept", "dropped", "lost", "unexpected", "duplicated"),
    [
        ([0, 1], [2, 3], 0, 0, 0),  # every record once: conserved
        ([0, 1], [2], 1, 0, 0),  # record 3 vanished
        ([0, 1, 1], [2, 3], 0, 0, 1),  # record 1 written twice
        ([0, 1, 2, 3], [3], 0, 0, 1),  # kept and dropped
    ],
)
def test_every_input_record_once_in_kept_or_rejects(
    lake: Storage, kept: list[int], dropped: list[int], lost: int, unexpected: int, duplicated: int
) -> None:
    rows = [r | {"url": r["record_id"]} for r in read_records(lake, "d1", "html").to_pylist()]
    assert len(rows) == 4
    write_stage(lake, [rows[i] for i in kept], [rows[i] for i in dropped])
    verdict = record_ids_conserved(lake, "stage", "d1", "html")
    assert (len(verdict.lost), len(verdict.unexpected), verdict.duplicated) == (lost, unexpected, duplicated)
    assert verdict.passed == (lost == unexpected == duplicated == 0)
    assert verdict.metadata()["in"] == 4 and verdict.metadata()["kept"] == len(kept)
    assert (verdict.description is None) == verdict.passed


def test_a_record_from_nowhere_is_unexpected(lake: Storage) -> None:
    rows = read_records(lake, "d1", "html").to_pylist()
    stranger = rows[0] | {"record_id": "d1/a.warc.gz@999999"}
    write_stage(lake, rows, [stranger])
    verdict = record_ids_conserved(lake, "stage", "d1", "html")
    assert verdict.unexpected == ["d1/a.warc.gz@999999"] and not verdict.passed
    assert verdict.description == "0 lost, 1 unexpected, 0 duplicated"
