"""Image captions from a drop's HTML pages: the alt/title text and surrounding text of each `<img>`.

Every `<img>` (its `src`, `data-src` and `srcset` URLs, and the `srcset` of `<source>` elements in
the same `<picture>`) is resolved against the page's `<base href>` or URL and canonicalized, so it
matches the `WARC-Target-URI` of the image record. A page whose robots directives opt out of
images (`noimageai` or `noai`, from `<meta name=robots>` or `X-Robots-Tag`) marks every image it
references as opted out.

An image referenced by several pages takes the best caption: `alt` text first, then `title`, then
(if enabled) the surrounding text (the `<figcaption>` of its `<figure>`, else its parent element's
text); among equals, the first page in WARC order and the first reference on that page win.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

from resiliparse.parse.encoding import detect_encoding
from resiliparse.parse.html import DOMNode, HTMLTree

from mmrecipe.opt_out import opts_out_of_images, robots_directives

CAPTION_SOURCES = ("alt", "title", "surrounding_text", "none")
MAX_CAPTION_CHARS = 1000
MAX_SURROUNDING_CHARS = 300
_WS = re.compile(r"\s+")
_PCT = re.compile(r"%[0-9a-fA-F]{2}")
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_SAFE = "%/:@!$&'()*+,;=-._~"
_BLOCK_PARENTS = frozenset({"body", "html", "head"})


def clean_text(text: str | None, limit: int = MAX_CAPTION_CHARS) -> str:
    """Text with whitespace collapsed, trimmed to `limit` characters."""
    return _WS.sub(" ", text or "").strip()[:limit]


def _pct_norm(m: re.Match[str]) -> str:
    """A percent-escape decoded if it encodes an unreserved character, else upper-cased (RFC 3986 6.2.2)."""
    char = chr(int(m.group(0)[1:], 16))
    return char if char.isascii() and (char.isalnum() or char in "-._~") else m.group(0).upper()


def canonical_url(url: str | None, base: str | None = None) -> str | None:
    """An absolute http(s) URL in canonical form (lower-case host, no default port or fragment), or None."""
    if not url:
        return None
    url = re.sub(r"[\t\n\r]", "", url).strip()
    if url.startswith("<") and url.endswith(">"):
        url = url[1:-1].strip()
    if not url or url.lower().startswith(("data:", "javascript:", "blob:", "about:")):
        return None
    try:
        parts = urlsplit(urljoin(base, url) if base else url)
        scheme, host, port = parts.scheme.lower(), (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    netloc = host if port is None or str(port) == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    if parts.username or parts.password:
        netloc = f"{parts.netloc.rsplit('@', 1)[0]}@{netloc}"

    def requote(s: str) -> str:
        return _PCT.sub(_pct_norm, quote(s, safe=_SAFE))

    return urlunsplit((scheme, netloc, requote(parts.path) or "/", requote(parts.query), ""))


@dataclass(frozen=True)
class ImageRef:
    """One reference to an image URL from a page: its texts and where it sits in the drop."""

    image_url: str
    page_url: str
    page_order: int  # position of the page in WARC order
    position: int  # position of the reference on the page
    alt: str
    title: str
    surrounding: str
    opt_out: bool

    def caption(self, surrounding_text: bool) -> tuple[int, str, str]:
        """(rank, caption, source) of this reference's best text; lower rank is better."""
        if self.alt:
            return 0, self.alt, "alt"
        if self.title:
            return 1, self.title, "title"
        if surrounding_text and self.surrounding:
            return 2, self.surrounding, "surrounding_text"
        return 3, "", "none"


def _srcset_urls(srcset: str | None) -> list[str]:
    return [c.strip().split()[0] for c in (srcset or "").split(",") if c.strip()]


def _surrounding(img: DOMNode) -> str:
    figure = img.closest("figure")
    if figure is not None:
        caption = figure.query_selector("figcaption")
        if caption is not None and clean_text(caption.text):
            return clean_text(caption.text, MAX_SURROUNDING_CHARS)
    parent = img.parent
    if parent is None or (parent.tag or "").lower() in _BLOCK_PARENTS:
        return ""
    return clean_text(parent.text, MAX_SURROUNDING_CHARS)


def _charset(http_headers: Mapping[str, str], html: bytes) -> str:
    m = re.search(r"charset=([\w.:-]+)", http_headers.get("content-type", ""), re.I)
    return m.group(1) if m else detect_encoding(html[:65536])


def scan_page(
    html: bytes, page_url: str, http_headers: Mapping[str, str], page_order: int = 0
) -> tuple[bool, list[ImageRef]]:
    """Whether a page opts out of images, and every image reference on it."""
    charset = _charset(http_headers, html)
    opt_out = opts_out_of_images(robots_directives(http_headers, html, charset))
    tree = HTMLTree.parse_from_bytes(html, charset)
    if tree.document is None:
        return opt_out, []
    base_el = tree.document.query_selector("base[href]")
    base = urljoin(page_url, base_el.getattr("href") or "") if base_el is not None else page_url
    refs: list[ImageRef] = []
    for img in tree.document.query_selector_all("img"):
        raw = [img.getattr("src"), img.getattr("data-src"), *_srcset_urls(img.getattr("srcset"))]
        picture = img.closest("picture")
        if picture is not None:
            for source in picture.query_selector_all("source[srcset]"):
                raw += _srcset_urls(source.getattr("srcset"))
        texts = (clean_text(img.getattr("alt")), clean_text(img.getattr("title")), _surrounding(img))
        seen: set[str] = set()
        for url in (canonical_url(u, base) for u in raw):
            if url and url not in seen:
                seen.add(url)
                refs.append(ImageRef(url, page_url, page_order, len(refs), *texts, opt_out))
    return opt_out, refs


@dataclass
class Caption:
    """The caption chosen for one image, and whether any referencing page opts out."""

    caption: str = ""
    source: str = "none"
    page_url: str | None = None
    opt_out: bool = False
    opt_out_page: str | None = None


@dataclass
class CaptionIndex:
    """Image URL -> references from the drop's pages, and the choice of caption among them."""

    surrounding_text: bool = True
    refs: dict[str, list[ImageRef]] = field(default_factory=dict)
    pages: int = 0
    opted_out_pages: int = 0
    unreadable_pages: int = 0

    def add_page(self, opt_out: bool, refs: Iterable[ImageRef]) -> None:
        self.pages += 1
        self.opted_out_pages += int(opt_out)
        self.add_refs(refs)

    def add_refs(self, refs: Iterable[ImageRef]) -> None:
        for ref in refs:
            self.refs.setdefault(ref.image_url, []).append(ref)

    def caption_for(self, image_url: str | None) -> Caption:
        """The best caption for an image URL (canonicalized here) over all pages that reference it."""
        refs = self.refs.get(canonical_url(image_url) or "", [])
        if not refs:
            return Caption()
        opted = [r for r in refs if r.opt_out]
        best = min(refs, key=lambda r: (r.caption(self.surrounding_text)[0], r.page_order, r.position))
        _, text, source = best.caption(self.surrounding_text)
        opt_page = min(opted, key=lambda r: r.page_order).page_url if opted else None
        return Caption(text, source, best.page_url, bool(opted), opt_page)


def caption_coverage(caption_sources: Mapping[str, int]) -> float:
    """The share of kept items with a caption (source other than "none"), to 4 places; 0 when nothing was kept."""
    kept = sum(caption_sources.values())
    return round(1 - caption_sources.get("none", 0) / kept, 4) if kept else 0.0
