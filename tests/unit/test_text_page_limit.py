"""The text stage's page-size limit: oversized HTML bodies are rejected before decoding and extraction."""

from pathlib import Path

import pytest

from mmrecipe.storage import Storage
from mmrecipe.text.pages import Outcome, Page, read_page
from mmrecipe.warc_index import RecordReader, index_warc
from tests.warc_fixtures import HttpResponse, warc_bytes

PARAGRAPH = b"<p>The quick brown fox jumps over the lazy dog, and then it rests in the warm afternoon sun.</p>"


@pytest.mark.parametrize(
    ("repeats", "limit", "expected"),
    [(10, 1 << 20, "page"), (20_000, 1 << 20, "page_too_large"), (20_000, 4 << 20, "page")],
)
def test_pages_over_the_limit_are_rejected(tmp_path: Path, repeats: int, limit: int, expected: str) -> None:
    body = b"<html><body>" + PARAGRAPH * repeats + b"</body></html>"  # 20k paragraphs: about 1.9 MB
    (tmp_path / "f.warc.gz").write_bytes(warc_bytes([HttpResponse("http://example.org/big", body)]))
    storage = Storage(str(tmp_path))
    row = [r for r, _, _ in index_warc(storage, "d", storage.uri("f.warc.gz"), "f.warc.gz")][1]
    with RecordReader(storage) as reader:
        page = read_page(reader, row, "resiliparse", max_page_bytes=limit)
    if expected == "page":
        assert isinstance(page, Page) and "quick brown fox" in page.text
    else:
        assert isinstance(page, Outcome)
        assert (page.outcome, page.reason) == ("rejected", "page_too_large")
        assert f"{len(body)} bytes > max_page_bytes {limit}" == page.detail
