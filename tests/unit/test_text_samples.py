"""Real HTML pages from the sample drops' WARCs, for text tests (skipped only where samples/ is absent)."""

from functools import lru_cache
from pathlib import Path

import pytest
from fastwarc.warc import ArchiveIterator, WarcRecordType

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
DROPS = SAMPLES / "drops"


def require_samples() -> None:
    if not DROPS.is_dir():
        pytest.fail("samples/drops is missing: it is committed (rebuild it with samples/make_samples.py)")


@lru_cache(maxsize=4)
def sample_pages(drop: str) -> dict[str, tuple[str, bytes]]:
    """URL -> (Content-Type, body) of every HTTP-200 HTML response in a sample drop."""
    pages = {}
    for warc in sorted((DROPS / drop).glob("*.warc.gz")):
        with warc.open("rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                ctype = rec.http_headers.get("Content-Type", "")
                if rec.http_headers.status_code == 200 and "html" in ctype:
                    uri = rec.headers.get("WARC-Target-URI").strip("<>")
                    pages[uri] = (ctype, rec.reader.read())
    return pages


def test_the_planted_text_cases_are_in_the_sample_warcs() -> None:
    require_samples()
    a, b = sample_pages("sample-a"), sample_pages("sample-b")
    assert len(a) == 49 and len(b) == 18
    assert b"noai" in a["http://docs.example.org/3.11/library/imghdr.html"][1]
    assert a["http://docs.example.org/3.11/library/hmac.html"] == a["http://docs.example.org/3/library/hmac.html"]
    assert b"jane.doe@example.org" in a["http://docs.example.org/3.11/library/getpass.html"][1]
