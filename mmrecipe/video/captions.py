"""Video captions from a drop's HTML pages: `<video>` titles, aria-labels, nearby text and `<track>` files.

Every `<video>` element's `src` and `<source src>` URLs are resolved against the page's `<base href>` or
URL and canonicalized as images' are (`mmrecipe.images.captions.canonical_url`), so they match the video
records' `WARC-Target-URI`. Its `<track kind="subtitles|captions">` files (WebVTT or SRT, parsed with
webvtt-py) are read from the same drop. A clip's caption comes from, in order: the track cues that
overlap its time span (`track`), the element's `title`, its `aria-label`, the surrounding text (the
`<figcaption>` of its `<figure>`, else its parent's text), else none. Pages whose robots directives
opt out (`noai`/`noimageai`, meta or X-Robots-Tag) opt out every video they embed.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import webvtt
from resiliparse.parse.html import DOMNode, HTMLTree
from webvtt.errors import MalformedCaptionError, MalformedFileError

from mmrecipe.images.captions import MAX_CAPTION_CHARS, MAX_SURROUNDING_CHARS, canonical_url, clean_text
from mmrecipe.opt_out import opts_out_of_images, robots_directives
from mmrecipe.text.decoding import http_charset, meta_charset

CAPTION_SOURCES = ("track", "title", "aria_label", "surrounding_text", "none")
TRACK_KINDS = ("subtitles", "captions")


@dataclass(frozen=True)
class Cue:
    """One timed subtitle: its span in seconds and its text."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class VideoRef:
    """One `<video>` element on a page that points at a video URL, with its texts and track URLs."""

    video_url: str
    page_url: str
    page_order: int
    position: int
    title: str
    aria_label: str
    surrounding: str
    tracks: tuple[str, ...]
    opt_out: bool


def parse_track(data: bytes, url: str) -> list[Cue]:
    """The cues of a WebVTT or SRT file (by its `WEBVTT` header, else SRT); [] when it is neither."""
    text = data.decode("utf-8-sig", errors="replace")
    fmt = "vtt" if text.lstrip().startswith("WEBVTT") else "srt"
    try:
        captions = webvtt.from_buffer(io.StringIO(text), format=fmt).captions
    except (MalformedFileError, MalformedCaptionError, ValueError):
        return []
    cues = [
        Cue(c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000, clean_text(c.text))
        for c in captions
    ]
    return [c for c in cues if c.text and c.end > c.start]


def _surrounding(video: DOMNode) -> str:
    figure = video.closest("figure")
    if figure is not None:
        caption = figure.query_selector("figcaption")
        if caption is not None and clean_text(caption.text):
            return clean_text(caption.text, MAX_SURROUNDING_CHARS)
    parent = video.parent
    while (
        parent is not None and (parent.tag or "").lower() in ("figure", "div", "span") and not clean_text(parent.text)
    ):
        parent = parent.parent
    if parent is None or (parent.tag or "").lower() in ("body", "html", "head"):
        return ""
    return clean_text(parent.text, MAX_SURROUNDING_CHARS)


def scan_page(
    html: bytes, page_url: str, http_headers: Mapping[str, str], page_order: int = 0
) -> tuple[bool, list[VideoRef]]:
    """Whether a page opts out of AI training on its media, and every video reference on it."""
    charset = http_charset(http_headers.get("content-type")) or meta_charset(html) or "utf-8"
    opt_out = opts_out_of_images(robots_directives(http_headers, html, charset))
    tree = HTMLTree.parse_from_bytes(html, charset)
    if tree.document is None:
        return opt_out, []
    base_el = tree.document.query_selector("base[href]")
    base = canonical_url(base_el.getattr("href"), page_url) if base_el is not None else page_url
    refs: list[VideoRef] = []
    for video in tree.document.query_selector_all("video"):
        raw = [video.getattr("src"), *(s.getattr("src") for s in video.query_selector_all("source[src]"))]
        tracks = tuple(
            url
            for t in video.query_selector_all("track[src]")
            if (t.getattr("kind") or "subtitles").lower() in TRACK_KINDS
            and (url := canonical_url(t.getattr("src"), base or page_url))
        )
        texts = (clean_text(video.getattr("title")), clean_text(video.getattr("aria-label")), _surrounding(video))
        for url in dict.fromkeys(canonical_url(u, base or page_url) for u in raw):
            if url:
                refs.append(VideoRef(url, page_url, page_order, len(refs), *texts, tracks, opt_out))
    return opt_out, refs


@dataclass
class VideoCaption:
    """What the pages say about one video: its best reference, its track cues and whether it is opted out."""

    ref: VideoRef | None = None
    cues: list[Cue] = field(default_factory=list)
    opt_out_page: str | None = None

    def for_span(self, start: float, end: float) -> tuple[str, str]:
        """(caption, caption_source) of the clip [start, end): overlapping track cues first."""
        text = " ".join(c.text for c in self.cues if c.start < end and c.end > start)
        if text:
            return clean_text(text), "track"
        ref = self.ref
        if ref is None:
            return "", "none"
        for value, source in (
            (ref.title, "title"),
            (ref.aria_label, "aria_label"),
            (ref.surrounding, "surrounding_text"),
        ):
            if value:
                return value[:MAX_CAPTION_CHARS], source
        return "", "none"


@dataclass
class VideoCaptionIndex:
    """Video URL -> its references from the drop's pages (those of one shard's videos, in a staging task)."""

    refs: dict[str, list[VideoRef]] = field(default_factory=dict)

    def add_refs(self, refs: Iterable[VideoRef]) -> None:
        for ref in refs:
            self.refs.setdefault(ref.video_url, []).append(ref)

    def track_urls(self) -> set[str]:
        return {t for refs in self.refs.values() for r in refs for t in r.tracks}

    def caption_for(self, video_url: str | None, track: Callable[[str], list[Cue]]) -> VideoCaption:
        """The references of a video URL: the first page (WARC order) with a readable track, else with text, wins."""
        refs = self.refs.get(canonical_url(video_url) or "", [])
        if not refs:
            return VideoCaption()
        opted = sorted((r for r in refs if r.opt_out), key=lambda r: r.page_order)
        ordered = sorted(refs, key=lambda r: (r.page_order, r.position))
        for ref in ordered:
            cues = [c for url in ref.tracks for c in track(url)]
            if cues:
                return VideoCaption(ref, cues, opted[0].page_url if opted else None)
        best = next((r for r in ordered if r.title or r.aria_label or r.surrounding), ordered[0])
        return VideoCaption(best, [], opted[0].page_url if opted else None)
