"""Transient storage faults: writes and reads are retried, nothing is published twice or half, and
permanent errors fail at once. Local disk through an injected faulty pyarrow filesystem; S3 through
moto with failures injected into the boto3 client."""

import os
import time
from pathlib import Path

import botocore.exceptions as bex
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import mmrecipe.storage as storage_module
from mmrecipe.stage_output import PROVENANCE_FIELDS, StageWriter, committed_parts
from mmrecipe.storage import Storage
from tests.hostile.faults import faulty_fs
from tests.production.prod_support import S3Server, s3_server  # noqa: F401 - the fixture is used by name

TABLE = pa.table({"record_id": [f"r{i}" for i in range(1000)], "n": list(range(1000))})


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the real retry loop and attempt count, without its sleeps."""
    attempts, _ = storage_module.retried.__defaults__
    monkeypatch.setattr(storage_module.retried, "__defaults__", (attempts, 0.0))


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("plan", "failures"),
    [
        ({"open_output": 1}, 1),
        ({"open_output": 3}, 3),  # attempts 1-3 fail, the 4th and last succeeds
        ({"write": 2}, 2),  # torn writes: half the bytes reach the temporary file, then the connection drops
        ({"move": 2}, 2),  # the rename into place fails after a complete write
        ({"open_output": 1, "write": 1, "move": 1}, 3),
    ],
)
def test_write_table_survives_transient_faults_and_publishes_once(
    tmp_path: Path, plan: dict[str, int], failures: int
) -> None:
    fs, faults = faulty_fs(plan)
    storage = Storage(str(tmp_path), _fs=fs)
    uri = storage.uri("stage", "d1", "data.parquet")
    storage.write_table(uri, TABLE)
    assert sum(faults.failed.values()) == failures
    assert pq.read_table(uri).equals(TABLE)  # whole, and no row twice
    assert _files(tmp_path) == ["stage/d1/data.parquet"]  # no temporary file left behind
    assert faults.published == [uri]  # renamed into place exactly once


def test_persistent_write_faults_fail_after_the_retry_budget_and_leave_nothing(tmp_path: Path) -> None:
    fs, faults = faulty_fs({"write": 100})
    storage = Storage(str(tmp_path), _fs=fs)
    uri = storage.uri("stage", "d1", "data.parquet")
    with pytest.raises(ConnectionResetError, match="injected fault"):
        storage.write_table(uri, TABLE)
    assert faults.failed["write"] == storage_module.retried.__defaults__[0]  # each attempt tried once, no more
    assert _files(tmp_path) == []
    assert not storage.exists(uri)


@pytest.mark.parametrize(
    "error",
    [PermissionError("read-only lake"), FileNotFoundError("no such bucket prefix"), OSError("AccessDenied: nope")],
)
def test_permanent_errors_are_not_retried(error: OSError) -> None:
    calls = []

    def fail() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        storage_module.retried(fail)
    assert len(calls) == 1


@pytest.mark.parametrize("op", ["open_input", "info"])
def test_reads_survive_transient_faults(tmp_path: Path, op: str) -> None:
    pq.write_table(TABLE, tmp_path / "t.parquet")
    (tmp_path / "b.bin").write_bytes(b"0123456789")
    fs, faults = faulty_fs({op: 3})
    storage = Storage(str(tmp_path), _fs=fs)
    assert storage.read_table(storage.uri("t.parquet")).equals(TABLE)
    assert storage.read_range(storage.uri("b.bin"), 2, 3) == b"234"
    assert storage.exists(storage.uri("b.bin")) and storage.size(storage.uri("b.bin")) == 10
    assert faults.failed[op] == 3


def test_stage_writer_publishes_both_tables_once_through_faults(tmp_path: Path) -> None:
    schema = pa.schema([*PROVENANCE_FIELDS, pa.field("text", pa.string())])
    fs, faults = faulty_fs({"open_output": 2, "write": 2, "move": 1})
    storage = Storage(str(tmp_path / "lake"), scratch=str(tmp_path / "local-tmp"), _fs=fs)
    with StageWriter(storage, "extracted_text", "d1", schema, batch_rows=7) as out:
        for i in range(50):
            prov = {"record_id": f"r{i:02d}", "drop": "d1", "warc_path": "x.warc.gz", "warc_offset": i * 100}
            if i % 5 == 0:
                out.reject(prov, "undecodable", f"record {i}")
            else:
                out.keep({**prov, "text": f"document {i}"})
        result = out.close()
    assert sum(faults.failed.values()) == 5
    data, rejects = pq.read_table(result.data_uri), pq.read_table(result.rejects_uri)
    assert data.num_rows == result.counts.kept == 40 and rejects.num_rows == 10
    ids = data["record_id"].to_pylist() + rejects["record_id"].to_pylist()
    assert sorted(ids) == [f"r{i:02d}" for i in range(50)]  # every record once: none lost, none duplicated
    assert _files(tmp_path / "lake") == [
        "extracted_text/commits/d1.json",
        "extracted_text/data/d1/part-00000.parquet",
        "extracted_text/rejects/d1/part-00000.parquet",
    ]
    assert os.listdir(tmp_path / "local-tmp") == []  # the local staging files are gone too


# --- S3 -------------------------------------------------------------------------------------
def _s3_storage(s3: S3Server) -> tuple[Storage, dict[str, int], dict[str, int]]:
    """A Storage on moto whose boto3 client does not retry by itself, plus a fault plan and call counters."""
    import boto3
    from botocore.config import Config

    client = boto3.session.Session().client(
        "s3", endpoint_url=s3.endpoint_url, region_name="us-east-1", config=Config(retries={"max_attempts": 1})
    )
    plan: dict[str, int] = {}
    calls: dict[str, int] = {}

    def maybe_fail(event_name: str, **_: object) -> None:
        op = event_name.rsplit(".", 1)[-1]
        calls[op] = calls.get(op, 0) + 1
        if plan.get(op, 0) > 0:
            plan[op] -= 1
            raise bex.EndpointConnectionError(endpoint_url=s3.endpoint_url)

    client.meta.events.register("before-send.s3.*", maybe_fail)
    storage = Storage(f"s3://{s3.bucket}/lake", endpoint_url=s3.endpoint_url, _client=client)
    return storage, plan, calls


def test_s3_single_put_survives_connection_drops(s3_server: S3Server) -> None:  # noqa: F811
    storage, plan, calls = _s3_storage(s3_server)
    plan["PutObject"] = 3
    uri = storage.uri("stage", "d1", "data.parquet")
    storage.write_table(uri, TABLE)
    assert calls["PutObject"] == 4
    assert storage.read_table(uri).equals(TABLE)
    keys = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_server.bucket)["Contents"]]
    assert keys == ["lake/stage/d1/data.parquet"]


def test_s3_multipart_upload_survives_faults_and_leaves_no_orphan_upload(
    s3_server: S3Server,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    storage, plan, calls = _s3_storage(s3_server)
    monkeypatch.setattr(storage_module.S3MultipartWriter.__init__, "__defaults__", (5 << 20,))  # S3's minimum
    data = os.urandom((5 << 20) + (1 << 20))  # two parts
    plan |= {"UploadPart": 2, "CompleteMultipartUpload": 1}
    uri = storage.uri("big.bin")
    storage.write_bytes(uri, data)
    assert calls["UploadPart"] == 4 and calls["CompleteMultipartUpload"] == 2
    assert storage.read_bytes(uri) == data
    client = s3_server.client()
    assert client.list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads", []) == []

    plan["UploadPart"] = 100  # an outage that outlasts the retries: nothing may appear, nothing may linger
    with pytest.raises(bex.EndpointConnectionError):
        storage.write_bytes(storage.uri("never.bin"), data)
    assert not storage.exists(storage.uri("never.bin"))
    assert client.list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads", []) == []


@pytest.mark.parametrize("op", ["info", "open_input"])
def test_read_records_survives_one_transient_fault(tmp_path: Path, op: str) -> None:
    from mmrecipe.crawl_index import index_drop, read_records
    from tests.warc_fixtures import HttpResponse, warc_bytes

    (tmp_path / "landing" / "d1").mkdir(parents=True)
    (tmp_path / "landing" / "d1" / "a.warc.gz").write_bytes(
        warc_bytes([HttpResponse(f"http://example.org/{i}", b"<p>page</p>") for i in range(3)])
    )
    landing, lake = Storage(str(tmp_path / "landing")), Storage(str(tmp_path / "lake"))
    assert index_drop(landing, lake, "d1", ["a.warc.gz"]).counts.kept == 4  # warcinfo + 3 responses
    fs, faults = faulty_fs({})
    flaky = Storage(str(tmp_path / "lake"), _fs=fs)
    exists = flaky.exists

    def exists_then_fault(uri: str) -> bool:
        found = exists(uri)
        faults.plan[op] = 1  # the next read of this kind, inside pyarrow.dataset, fails once
        return found

    flaky.exists = exists_then_fault  # type: ignore[method-assign]
    assert read_records(flaky, "d1", "html").num_rows == 3


def test_a_killed_runs_temporary_files_are_swept_once_they_are_a_day_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leftovers of killed writers (lake `.tmp-*`, scratch `mmrecipe-*.parquet`) go; live-looking ones stay."""
    monkeypatch.setattr(storage_module, "_SWEPT", set())
    lake, scratch = tmp_path / "lake" / "raw_crawl" / "data" / "d1", tmp_path / "scratch"
    lake.mkdir(parents=True)
    scratch.mkdir()
    old = [lake / ".tmp-data.parquet-dead", scratch / "mmrecipe-dead.parquet"]
    young = [lake / ".tmp-data.parquet-live", scratch / "mmrecipe-live.parquet"]
    for p in [*old, *young, lake / "keep.parquet"]:
        p.write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86400
    for p in [*old, lake / "keep.parquet"]:
        os.utime(p, (two_days_ago, two_days_ago))
    storage = Storage(str(tmp_path / "lake"), scratch=str(scratch))
    with StageWriter(storage, "raw_crawl", "d1", pa.schema(PROVENANCE_FIELDS)) as out:
        out.close()
    assert not any(p.exists() for p in old)
    assert all(p.exists() for p in young) and (lake / "keep.parquet").exists()
    assert storage.exists(committed_parts(storage, "raw_crawl", "d1")[0])
