"""The text stage's page limits: oversized or too deeply nested HTML is rejected before or instead of extraction."""

from pathlib import Path

import pytest

from mmrecipe.engine.steps import Outcome
from mmrecipe.storage import Storage
from mmrecipe.text.pages import Page, read_page
from mmrecipe.warc_index import RecordReader, index_warc
from tests.warc_fixtures import HttpResponse, warc_bytes

PARAGRAPH = b"<p>The quick brown fox jumps over the lazy dog, and then it rests in the warm afternoon sun.</p>"


def read_one_page(tmp_path: Path, body: bytes, **limits: int) -> Page | Outcome:
    """`read_page` on the one HTTP response of a WARC holding `body`."""
    (tmp_path / "f.warc.gz").write_bytes(warc_bytes([HttpResponse("http://example.org/page", body)]))
    storage = Storage(str(tmp_path))
    row = [r for r, _, _ in index_warc(storage, "d", storage.uri("f.warc.gz"), "f.warc.gz")][1]
    with RecordReader(storage) as reader:
        return read_page(reader, row, "resiliparse", **limits)


@pytest.mark.parametrize(
    ("repeats", "limit", "expected"),
    [(10, 1 << 20, "page"), (20_000, 1 << 20, "page_too_large"), (20_000, 4 << 20, "page")],
)
def test_pages_over_the_limit_are_rejected(tmp_path: Path, repeats: int, limit: int, expected: str) -> None:
    body = b"<html><body>" + PARAGRAPH * repeats + b"</body></html>"  # 20k paragraphs: about 1.9 MB
    page = read_one_page(tmp_path, body, max_page_bytes=limit)
    if expected == "page":
        assert isinstance(page, Page) and "quick brown fox" in page.text
    else:
        assert isinstance(page, Outcome)
        assert (page.outcome, page.reason) == ("rejected", "page_too_large")
        assert f"{len(body)} bytes > max_page_bytes {limit}" == page.detail


def nested(depth: int) -> bytes:
    """A page whose only paragraph sits inside `depth` nested <div>s, with many shallow siblings before it."""
    shallow = PARAGRAPH * 3000  # 3,000 tags that are not nested: more tags than the depth limit, all shallow
    return b"<html><body>" + shallow + b"<div>" * depth + PARAGRAPH + b"</div>" * depth + b"</body></html>"


@pytest.mark.parametrize(
    ("depth", "limit", "expected"),
    [(10, 2_000, "page"), (1_900, 2_000, "page"), (2_100, 2_000, "html_too_deep"), (20_000, 2_000, "html_too_deep")],
)
def test_pages_nested_too_deep_are_rejected(tmp_path: Path, depth: int, limit: int, expected: str) -> None:
    """resiliparse's main-content pass is superlinear in nesting (20,000 levels: ~10 s); deeper pages are refused."""
    page = read_one_page(tmp_path, nested(depth), max_html_depth=limit)
    if expected == "page":
        assert isinstance(page, Page) and "quick brown fox" in page.text
    else:
        assert isinstance(page, Outcome) and (page.outcome, page.reason) == ("rejected", "html_too_deep")
        assert f"more than {limit} levels deep" in page.detail


def test_the_depth_limit_is_validated() -> None:
    from mmrecipe.text.pipeline import TextStageConfig

    with pytest.raises(ValueError, match="max_html_depth must be at least 1"):
        TextStageConfig(max_html_depth=0)
