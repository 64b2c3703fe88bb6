"""Main-content extraction of real crawled pages with resiliparse (default) and trafilatura."""

import pytest

from mmrecipe.text.decoding import decode_html
from mmrecipe.text.extraction import EXTRACTORS, extract_text
from tests.unit.test_text_samples import require_samples, sample_pages

ARTICLE = "http://news.example.com/politics/manchin.html"  # a 90 KB news page full of scripts and navigation


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_boilerplate_heavy_article_keeps_its_text(extractor: str) -> None:
    require_samples()
    ctype, body = sample_pages("sample-b")[ARTICLE]
    text = extract_text(decode_html(body, ctype).text, extractor)
    assert "Manchin" in text and len(text.split()) > 500
    assert "<script" not in text and "function(" not in text


def test_resiliparse_leaves_out_navigation_and_alt_text() -> None:
    html = (
        "<html><body><nav><a href='/'>Home</a> | <a href='/about'>About us</a></nav>"
        "<main><h1>Exceptions</h1><p>Exceptions are a means of breaking out of the normal flow of control.</p>"
        "<img src='x.png' alt='diagram of the flow'><p>An exception is raised where the error is detected.</p></main>"
        "<footer>Copyright 2024</footer></body></html>"
    )
    text = extract_text(html)
    assert "breaking out of the normal flow" in text and "raised where the error" in text
    assert "diagram of the flow" not in text
    assert "\n\n" in text  # paragraphs stay apart for the line- and paragraph-based rules


def test_pages_without_main_text_give_empty_text() -> None:
    assert extract_text("<html><body><script>var x = 1;</script></body></html>") == ""
    assert extract_text("<html><body></body></html>", "trafilatura") == ""


def test_unknown_extractor() -> None:
    with pytest.raises(ValueError, match="use one of resiliparse, trafilatura"):
        extract_text("<p>x</p>", "justext")


@pytest.mark.parametrize("extractor", EXTRACTORS)
def test_a_page_gives_the_same_text_whatever_the_process_extracted_before(extractor: str) -> None:
    require_samples()
    pages = [
        decode_html(body, ctype).text for d in ("sample-a", "sample-b") for ctype, body in sample_pages(d).values()
    ]
    first = [extract_text(page, extractor) for page in pages]
    # the second pass, backwards, repeats every page after every other one (a shared dedup cache would cut
    # repeated segments) and gives each page other predecessors (order dependence)
    again = [extract_text(page, extractor) for page in reversed(pages)][::-1]
    assert len(pages) == 67 and sum(map(bool, first)) > 60
    changed = [i for i, (a, b) in enumerate(zip(first, again, strict=True)) if a != b]
    assert changed == [], f"{len(changed)} of {len(pages)} pages changed text when extracted again"
