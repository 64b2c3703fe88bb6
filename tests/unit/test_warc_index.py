"""The WARC index on well-formed and broken files: reasons, counts and full byte coverage."""

import gzip
import zlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from mmrecipe.crawl_index import coverage_problems
from mmrecipe.storage import Storage
from mmrecipe.warc_index import RecordReader, WarcLimits, index_warc, normalize_uri, verify_digest
from tests.warc_fixtures import HttpResponse, response_record, warc_bytes, warcinfo_record

PAGES = [
    HttpResponse("http://example.org/a.html", b"<html><body><p>Alpha page.</p></body></html>"),
    HttpResponse("http://example.org/b.html", b"<html><body><p>Beta page.</p></body></html>"),
    HttpResponse("http://example.org/c.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, content_type="image/png"),
]
GOOD_GZ = warc_bytes(PAGES)
GOOD_PLAIN = warc_bytes(PAGES, gzipped=False)


def _members(data: bytes) -> list[bytes]:
    out = []
    while data:
        d = zlib.decompressobj(31)
        out.append(d.decompress(data))
        data = d.unused_data
    return out


def _gz(records: list[bytes]) -> bytes:
    return b"".join(gzip.compress(r, mtime=0) for r in records)


_m = _members(GOOD_GZ)
_bad_status = response_record(PAGES[0]).replace(b"HTTP/1.1 200 OK", b"\x00\x01garbage-statu")  # same length
_bad_digest = response_record(PAGES[1]).replace(b"WARC-Payload-Digest: sha1:", b"WARC-Payload-Digest: sha1:AAAA")
CASES = {
    # name: (bytes, file suffix, expected reject reasons, expected kept rows)
    "good_gz": (GOOD_GZ, ".warc.gz", {}, 4),
    "good_plain": (GOOD_PLAIN, ".warc", {}, 4),
    "truncated_gzip_member": (GOOD_GZ[: len(GOOD_GZ) - 40], ".warc.gz", {"truncated_gzip_member": 1}, 3),
    "garbage_between_members": (
        b"".join(gzip.compress(m, mtime=0) for m in _m[:2]) + b"NOT GZIP" * 20 + _gz(_m[2:]),
        ".warc.gz",
        {"garbage_bytes": 1},
        4,
    ),
    "wrong_content_length_gz": (
        _gz([_m[0], _m[1].replace(b"Content-Length: ", b"Content-Length: 1", 1), *_m[2:]]),
        ".warc.gz",
        {"content_length_mismatch": 1},
        3,
    ),
    "wrong_content_length_plain": (
        b"".join([_m[0], _m[1].replace(b"Content-Length: ", b"Content-Length: 1", 1), *_m[2:]]),
        ".warc",
        {"content_length_mismatch": 1},
        3,
    ),
    "two_records_in_one_member": (
        _gz([_m[0], _m[1] + _m[2], _m[3]]),
        ".warc.gz",
        {"multiple_records_in_gzip_member": 1},
        2,
    ),
    "bad_http_status_line": (_gz([warcinfo_record(), _bad_status]), ".warc.gz", {"bad_http_headers": 1}, 1),
    "payload_digest_mismatch": (_gz([warcinfo_record(), _bad_digest]), ".warc.gz", {"payload_digest_mismatch": 1}, 1),
    "not_a_warc_at_all": (b"<html>this is not a WARC file</html>" * 10, ".warc", {"garbage_bytes": 1}, 0),
    "gzip_bomb": (
        _gz([b"WARC/1.0\r\nWARC-Type: resource\r\nContent-Length: 3000000\r\n\r\n" + b"\0" * 3_000_000 + b"\r\n\r\n"])
        + GOOD_GZ,
        ".warc.gz",
        {"record_too_large": 1},
        4,
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_index_reasons_counts_and_coverage(tmp_path: Path, name: str) -> None:
    data, suffix, expected_rejects, expected_kept = CASES[name]
    (tmp_path / f"f{suffix}").write_bytes(data)
    storage = Storage(str(tmp_path))
    uri = storage.uri(f"f{suffix}")
    out = list(index_warc(storage, "d", uri, f"f{suffix}", WarcLimits(max_record_bytes=1_000_000)))
    rejects = Counter(reason for _, reason, _ in out if reason)
    assert dict(rejects) == expected_rejects
    assert sum(1 for _, reason, _ in out if not reason) == expected_kept
    spans = pa.Table.from_pylist([row for row, _, _ in out])
    assert coverage_problems(spans, {uri: len(data)}) == []
    assert len({row["record_id"] for row, _, _ in out}) == len(out)


def test_index_rows_carry_http_facts_and_read_back_by_offset(tmp_path: Path) -> None:
    (tmp_path / "f.warc.gz").write_bytes(GOOD_GZ)
    storage = Storage(str(tmp_path))
    rows = [r for r, reason, _ in index_warc(storage, "d", storage.uri("f.warc.gz"), "f.warc.gz") if not reason]
    assert [r["record_type"] for r in rows] == ["warcinfo", "response", "response", "response"]
    png = rows[3]
    assert (png["target_uri"], png["http_status"], png["mime_type"]) == ("http://example.org/c.png", 200, "image/png")
    assert png["payload_length"] == 72 and png["payload_digest_verified"] is True
    with RecordReader(storage) as reader:
        rec = reader.read(png["warc_path"], png["warc_offset"], png["warc_length"])
    assert rec.payload == PAGES[2].body
    assert rec.http_headers["content-type"] == "image/png"


def test_coverage_problems_detects_gaps_and_overlaps() -> None:
    spans = pa.Table.from_pylist(
        [
            {"warc_path": "f", "warc_offset": 0, "warc_length": 10},
            {"warc_path": "f", "warc_offset": 12, "warc_length": 5},
            {"warc_path": "f", "warc_offset": 15, "warc_length": 5},
        ]
    )
    problems = coverage_problems(spans, {"f": 20, "g": 3})
    assert problems == [
        "f: bytes 10..12 uncovered",
        "f: bytes 17..15 covered twice",
        "g: spans end at 0, file has 3 bytes",
    ]


@pytest.mark.parametrize(
    ("header", "payload", "expected"),
    [
        ("sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ", b"", True),
        ("sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYA", b"", False),
        ("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", b"", True),
        ("md17:abc", b"", None),
        (None, b"x", None),
    ],
)
def test_verify_digest(header: str | None, payload: bytes, expected: bool | None) -> None:
    assert verify_digest(header, payload) is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("<http://a/b>", "http://a/b"), (" http://a/b ", "http://a/b"), ("urn:x", "urn:x"), (None, None)],
)
def test_normalize_uri_strips_wget_angle_brackets(raw: str | None, expected: str | None) -> None:
    assert normalize_uri(raw) == expected


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [("gzip", lambda b: gzip.compress(b, mtime=0)), ("deflate", zlib.compress), ("identity", lambda b: b)],
)
def test_record_reader_decodes_content_encoding(tmp_path: Path, encoding: str, encode) -> None:
    body = b"<html><body><p>" + b"compressed page " * 50 + b"</p></body></html>"
    page = HttpResponse("http://example.org/z", encode(body), headers={"Content-Encoding": encoding})
    (tmp_path / "f.warc.gz").write_bytes(warc_bytes([page]))
    storage = Storage(str(tmp_path))
    row = [r for r, _, _ in index_warc(storage, "d", storage.uri("f.warc.gz"), "f.warc.gz")][1]
    with RecordReader(storage) as reader:
        rec = reader.read(row["warc_path"], row["warc_offset"], row["warc_length"])
    assert rec.payload == body
    assert rec.http_headers.get("content-encoding", "identity") == "identity"


def test_record_reader_refuses_content_encoding_bombs(tmp_path: Path) -> None:
    page = HttpResponse(
        "http://example.org/bomb", gzip.compress(b"\0" * 5_000_000), headers={"Content-Encoding": "gzip"}
    )
    (tmp_path / "f.warc.gz").write_bytes(warc_bytes([page]))
    storage = Storage(str(tmp_path))
    row = [r for r, _, _ in index_warc(storage, "d", storage.uri("f.warc.gz"), "f.warc.gz")][1]
    with (
        RecordReader(storage, WarcLimits(max_record_bytes=1_000_000)) as reader,
        pytest.raises(ValueError, match="more than"),
    ):
        reader.read(row["warc_path"], row["warc_offset"], row["warc_length"])
