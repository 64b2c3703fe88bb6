"""A video record's payload streamed from its WARC span into a scratch file: the same bytes, hashed, bounded."""

import gzip
import hashlib
import os
from pathlib import Path

import pytest

from mmrecipe.crawl_index import index_drop, read_records
from mmrecipe.storage import Storage
from mmrecipe.video.decoding import VideoRejected
from mmrecipe.video.payload import VideoRecord
from mmrecipe.warc_index import RecordReader
from tests.video_samples import video
from tests.warc_fixtures import HttpResponse, warc_bytes

LAUNCH = video("oa4_launch.webm")
RESPONSES = [
    HttpResponse("http://v.example/launch.webm", LAUNCH, "video/webm"),
    HttpResponse(
        "http://v.example/gz.webm", gzip.compress(LAUNCH, mtime=0), "video/webm", headers={"Content-Encoding": "gzip"}
    ),
    HttpResponse("http://v.example/gone.webm", b"not found", "video/webm", status=404),
]


@pytest.mark.parametrize("gzipped", [True, False])
def test_the_spooled_body_is_the_record_payload_with_its_sha256(tmp_path: Path, gzipped: bool) -> None:
    landing, lake = Storage(str(tmp_path / "landing")), Storage(str(tmp_path / "lake"), scratch=str(tmp_path / "s"))
    name = "a.warc.gz" if gzipped else "a.warc"
    landing.write_bytes(landing.uri("d", name), warc_bytes(RESPONSES, gzipped=gzipped))
    index_drop(landing, lake, "d", [name])
    rows = read_records(lake, "d", "video").to_pylist()
    assert [r["http_status"] for r in rows] == [200, 200, 404]
    spooled = []
    with RecordReader(lake) as reader:
        for row in rows:
            span = (row["warc_path"], row["warc_offset"], row["warc_length"])
            with VideoRecord(lake, *span) as rec:
                whole = reader.read(*span)
                headers = {k: v for k, v in rec.http_headers.items() if k != "content-encoding"}  # decoded below
                assert (rec.http_status, headers) == (whole.http_status, whole.http_headers)
                body = rec.spool(1 << 30, row["payload_sha256"])
                assert Path(body.path).read_bytes() == whole.payload  # content-decoded like RecordReader's
                assert (body.size, body.sha256) == (len(whole.payload), hashlib.sha256(whole.payload).hexdigest())
                spooled.append(body.path)
            assert not os.path.exists(body.path)  # the scratch file goes with the record
    assert Path(spooled[0]).parent == Path(tmp_path / "s")
    first = (rows[0]["warc_path"], rows[0]["warc_offset"], rows[0]["warc_length"])
    with VideoRecord(lake, *first) as rec, pytest.raises(VideoRejected) as too_large:
        rec.spool(len(LAUNCH) - 1)
    assert too_large.value.reason == "video_too_large"
    with (
        VideoRecord(lake, *first) as rec,
        pytest.raises(ValueError, match="the WARC file changed since it was indexed"),
    ):
        rec.spool(1 << 30, "0" * 64)
