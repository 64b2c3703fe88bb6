"""Storage on a real S3 API (moto over HTTP): atomic uploads, killed writers, retries and listings."""

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import botocore.exceptions
import pyarrow as pa
import pytest

from mmrecipe.storage import S3MultipartWriter, Storage, is_transient, retried, split_s3_uri
from mmrecipe.warc_index import RecordReader, index_warc
from tests.production.prod_support import REPO, RequestLog, S3Server
from tests.warc_fixtures import HttpResponse, warc_bytes

pytestmark = pytest.mark.slow  # real servers and tools: Postgres, moto S3, helm


def _keys(s3: S3Server, prefix: str = "") -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def _uploads(s3: S3Server) -> list[str]:
    return [u["Key"] for u in s3.client().list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])]


def test_parquet_round_trip_and_listing_on_s3(s3_server: S3Server) -> None:
    lake = Storage(f"s3://{s3_server.bucket}/lake/", endpoint_url=s3_server.endpoint_url)
    assert lake.root == f"s3://{s3_server.bucket}/lake"
    table = pa.table({"record_id": [f"r{i}" for i in range(5000)], "n": list(range(5000))})
    lake.write_table(lake.uri("raw_crawl", "d1", "data.parquet"), table)
    lake.write_bytes(lake.uri("raw_crawl", "d2", "note.txt"), b"hello")
    assert lake.read_table(lake.uri("raw_crawl", "d1", "data.parquet")).equals(table)
    assert lake.list_dirs(lake.uri("raw_crawl")) == ["d1", "d2"]
    assert lake.list_files(lake.uri("raw_crawl")) == [
        f"s3://{s3_server.bucket}/lake/raw_crawl/d1/data.parquet",
        f"s3://{s3_server.bucket}/lake/raw_crawl/d2/note.txt",
    ]
    assert [(u.rsplit("/", 1)[1], size) for u, size, _ in lake.stat_files(lake.uri("raw_crawl", "d2"))] == [
        ("note.txt", 5)
    ]
    assert lake.read_range(lake.uri("raw_crawl", "d2", "note.txt"), 1, 3) == b"ell"
    # S3 has no folders: no marker objects and no temporary names are left behind
    assert _keys(s3_server) == ["lake/raw_crawl/d1/data.parquet", "lake/raw_crawl/d2/note.txt"]


def test_multipart_upload_is_visible_only_when_complete(s3_server: S3Server) -> None:
    lake = Storage(f"s3://{s3_server.bucket}/lake", endpoint_url=s3_server.endpoint_url)
    big = os.urandom((16 << 20) * 2 + 12345)  # two full parts and a short last one
    with lake.atomic_output(lake.uri("big.bin")) as out:
        out.write(big[: 20 << 20])
        assert _keys(s3_server) == [] and _uploads(s3_server) == ["lake/big.bin"]  # parts sent, nothing visible
        out.write(big[20 << 20 :])
    assert lake.read_bytes(lake.uri("big.bin")) == big
    assert _uploads(s3_server) == []
    # a failure inside the block aborts the upload: no object, no dangling multipart upload
    with pytest.raises(RuntimeError, match="disk on fire"), lake.atomic_output(lake.uri("half.bin")) as out:
        out.write(big)
        raise RuntimeError("disk on fire")
    assert not lake.exists(lake.uri("half.bin"))
    assert _uploads(s3_server) == [] and _keys(s3_server) == ["lake/big.bin"]


def test_killed_writer_leaves_nothing_visible(s3_server: S3Server) -> None:
    child = textwrap.dedent(
        f"""
        import os, sys, time
        from mmrecipe.storage import Storage
        lake = Storage("s3://{s3_server.bucket}/lake", endpoint_url="{s3_server.endpoint_url}")
        with lake.atomic_output(lake.uri("killed.bin")) as out:
            out.write(os.urandom(17 << 20))  # one part uploaded
            print("part uploaded", flush=True)
            time.sleep(60)
        """
    )
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "part uploaded"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert _keys(s3_server) == []  # the object never appeared
    assert _uploads(s3_server) == ["lake/killed.bin"]  # only an invisible incomplete upload (lifecycle reclaims it)


def test_writer_rejects_undersized_parts_and_writes_after_close(s3_server: S3Server) -> None:
    with pytest.raises(ValueError, match="at least 5 MiB"):
        S3MultipartWriter(s3_server.client(), s3_server.bucket, "k", part_bytes=1 << 20)
    writer = S3MultipartWriter(s3_server.client(), s3_server.bucket, "small.txt")
    writer.write(b"abc")
    writer.close()  # a library closing its sink publishes nothing by itself
    assert _keys(s3_server) == []
    writer.commit()
    assert _keys(s3_server) == ["small.txt"]
    with pytest.raises(ValueError, match="after it was closed"):
        writer.write(b"more")


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject"
    )


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_client_error("SlowDown", 503), True),
        (_client_error("InternalError", 500), True),
        (_client_error("RequestTimeout", 400), True),
        (_client_error("AccessDenied", 403), False),
        (_client_error("NoSuchBucket", 404), False),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://127.0.0.1:1"), True),
        (botocore.exceptions.NoCredentialsError(), False),
        (OSError("AWS Error NETWORK_CONNECTION during GetObject operation: curlCode: 7"), True),
        (OSError("AWS Error ACCESS_DENIED during HeadObject operation"), False),
        (FileNotFoundError("no file"), False),
        (ValueError("bad argument"), False),
    ],
)
def test_transient_errors_are_classified(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_retried_recovers_from_transient_errors_and_stops_on_permanent_ones() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _client_error("SlowDown", 503)
        return "ok"

    assert retried(flaky, base_delay_s=0.001) == "ok" and len(calls) == 3
    calls.clear()

    def denied() -> str:
        calls.append(1)
        raise _client_error("AccessDenied", 403)

    with pytest.raises(botocore.exceptions.ClientError):
        retried(denied, base_delay_s=0.001)
    assert len(calls) == 1


def test_s3_uris_are_checked() -> None:
    assert split_s3_uri("s3://bucket/a/b") == ("bucket", "a/b")
    assert split_s3_uri("s3://bucket") == ("bucket", "")
    with pytest.raises(ValueError, match="s3://BUCKET/PREFIX"):
        Storage("s3:///no-bucket")


def test_scanning_a_warc_on_s3_costs_few_requests(s3_server: S3Server, s3_requests: RequestLog, tmp_path: Path) -> None:
    """Indexing and reading records in offset order batch their small reads into a few ranged GETs."""
    body = "<html><p>page {}</p></html>" * 20
    pages = [HttpResponse(f"http://example.org/{i}", body.format(*[i] * 20).encode()) for i in range(400)]
    data = warc_bytes(pages)
    local = Storage(str(tmp_path))
    local.write_bytes(local.uri("d", "crawl.warc.gz"), data)
    s3 = Storage(f"s3://{s3_server.bucket}/landing", endpoint_url=s3_server.endpoint_url)
    s3.write_bytes(s3.uri("d", "crawl.warc.gz"), data)

    def index(storage: Storage) -> list[tuple]:
        uri = storage.uri("d", "crawl.warc.gz")
        spans = index_warc(storage, "d", uri, "crawl.warc.gz")
        return [(r["warc_offset"], r["warc_length"], r["payload_sha256"], why) for r, why, _ in spans]

    start = len(s3_requests.lines)
    rows = index(s3)
    assert rows == index(local) and len(rows) == 401  # warcinfo + 400 responses, same spans as on disk
    gets = [line for line in s3_requests.lines[start:] if "crawl.warc.gz" in line]
    assert len(gets) <= 6, gets  # one HEAD for the size, then one GET per 4 MiB buffer (the file is ~0.1 MiB)
    start = len(s3_requests.lines)
    with RecordReader(s3) as reader:
        for offset, length, sha, _ in rows[1:]:
            record = reader.read(s3.uri("d", "crawl.warc.gz"), offset, length)
            assert hashlib.sha256(record.payload).hexdigest() == sha
    assert len(s3_requests.lines) - start <= 3
