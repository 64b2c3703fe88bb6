"""Main-content plain text of an HTML page, by resiliparse (default) or trafilatura (FineWeb's settings)."""

from __future__ import annotations

import logging

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.html import HTMLTree

RESILIPARSE = "resiliparse"
TRAFILATURA = "trafilatura"
EXTRACTORS = (RESILIPARSE, TRAFILATURA)


def extract_resiliparse(html: str) -> str:
    """Main content as plain text, paragraphs separated by blank lines; image alt texts are left out."""
    tree = HTMLTree.parse(html)
    return extract_plain_text(tree, main_content=True, preserve_formatting=True, alt_texts=False).strip()


def extract_trafilatura(html: str) -> str:
    """Main content as trafilatura extracts it with FineWeb's settings (precision, no comments, dedup)."""
    import trafilatura  # imported lazily: loading it costs ~0.5 s and most runs use resiliparse

    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    text = trafilatura.extract(html, favor_precision=True, include_comments=False, deduplicate=True)
    return (text or "").strip()


def extract_text(html: str, extractor: str = RESILIPARSE) -> str:
    """The page's main-content text with the named extractor ("" when there is none)."""
    if extractor == RESILIPARSE:
        return extract_resiliparse(html)
    if extractor == TRAFILATURA:
        return extract_trafilatura(html)
    raise ValueError(f"unknown extractor {extractor!r}: use one of {', '.join(EXTRACTORS)}")
