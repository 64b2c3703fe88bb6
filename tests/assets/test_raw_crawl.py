"""raw_crawl materialized on a real instance: the sample drop, a broken drop, reruns and a tampered index."""

import hashlib
from pathlib import Path

import dagster as dg
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from fastwarc.warc import ArchiveIterator

from mmrecipe.settings import Settings
from mmrecipe.stage_output import committed_parts
from mmrecipe.storage import Storage
from tests.committed_edits import recommit
from tests.conftest import SAMPLE_DROPS, land_drop, materialize_drop, metadata_of, run_checks
from tests.warc_fixtures import HttpResponse, warc_bytes


def _fastwarc_count(folder: Path) -> int:
    n = 0
    for path in sorted(folder.glob("*.warc*")):
        with path.open("rb") as f:
            n += sum(1 for _ in ArchiveIterator(f, parse_http=False))
    return n


def _check(result: dg.ExecuteInProcessResult, name: str = "conservation") -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def test_sample_drop_index_has_one_row_per_warc_record(settings: Settings, instance: dg.DagsterInstance) -> None:
    folder = land_drop(settings, "sample-a", src=SAMPLE_DROPS / "sample-a")
    result = materialize_drop(settings, instance, "sample-a")
    meta = metadata_of(result, "raw_crawl")
    table = ds.dataset(meta["path"]).to_table()
    expected = _fastwarc_count(folder)
    assert table.num_rows == meta["dagster/row_count"] == meta["kept"] == meta["total"] == expected
    assert meta["rejected"] == 0 and meta["dropped"] == 0
    assert _check(result).passed
    responses = table.filter(ds.field("record_type") == "response").to_pylist()
    mimes = {r["mime_type"] for r in responses}
    assert "text/html" in mimes
    assert any(m.startswith("image/") for m in mimes) and any(m.startswith("audio/") for m in mimes)
    assert all(not r["target_uri"].startswith("<") for r in responses)  # wget's <uri> normalised
    assert all(r["payload_digest_verified"] for r in responses)  # wget writes payload digests
    assert "text/html" in meta["mime_types"]
    assert {r["record_type"] for r in table.to_pylist()} >= {"warcinfo", "request", "response"}


def test_broken_records_are_rejected_with_reasons_and_the_rest_indexed(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    good = warc_bytes([HttpResponse(f"http://example.org/{i}", f"<p>page {i}</p>".encode()) for i in range(5)])
    land_drop(
        settings,
        "broken",
        {
            "a-good.warc.gz": good,
            "b-truncated.warc.gz": good[: len(good) - 30],
            "c-garbage.warc.gz": b"\x00garbage\xff" * 50 + good,
            "d-plain.warc": warc_bytes([HttpResponse("http://example.org/p", b"<p>plain</p>")], gzipped=False),
        },
    )
    result = materialize_drop(settings, instance, "broken")
    meta = metadata_of(result, "raw_crawl")
    assert meta["rejected_truncated_gzip_member"] == 1
    assert meta["rejected_garbage_bytes"] == 1
    assert meta["kept"] == 6 + 5 + 6 + 2
    assert meta["total"] == meta["kept"] + meta["rejected"]
    rejects = pq.read_table(meta["rejects_path"]).to_pylist()
    assert {(r["stage"], r["outcome"], r["reason"]) for r in rejects} == {
        ("raw_crawl", "rejected", "truncated_gzip_member"),
        ("raw_crawl", "rejected", "garbage_bytes"),
    }
    assert _check(result).passed


def test_rerun_is_byte_identical_and_tampering_fails_the_check(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    land_drop(
        settings, "d1", {"x.warc.gz": warc_bytes([HttpResponse(f"http://e.org/{i}", b"<p>x</p>") for i in range(4)])}
    )
    materialize_drop(settings, instance, "d1")
    (part,) = committed_parts(Storage(settings.lake), "raw_crawl", "d1")
    digest = hashlib.sha256(Path(part).read_bytes()).hexdigest()
    materialize_drop(settings, instance, "d1")
    assert hashlib.sha256(Path(part).read_bytes()).hexdigest() == digest

    table = pq.read_table(part)
    pq.write_table(table.slice(0, table.num_rows - 1), part)  # lose one record on purpose
    recommit(Storage(settings.lake), part)
    result = run_checks(settings, instance, "d1", "raw_crawl")
    evaluation = _check(result)
    assert not evaluation.passed
    assert "uncovered" in evaluation.metadata["problems"].value or "spans end" in evaluation.metadata["problems"].value
