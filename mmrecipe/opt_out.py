"""Robots opt-out directives of a page: `noai`, `noimageai`, … from X-Robots-Tag and <meta name=robots>."""

from __future__ import annotations

from collections.abc import Mapping

from resiliparse.parse.html import HTMLTree

# <meta name=...> values that carry robots directives for all crawlers or for AI crawlers.
ROBOTS_META_NAMES = frozenset({"robots", "ai", "ccbot", "gptbot"})
NOAI = "noai"
NOIMAGEAI = "noimageai"
OPT_OUT_REASON = "opt_out"  # the drop reason of a record whose page or header opts out of AI training


def _directives(value: str) -> set[str]:
    """Directives of one header/meta value; `bot: noai` style prefixes are dropped."""
    out: set[str] = set()
    for part in value.replace(";", ",").split(","):
        token = part.strip().lower()
        if ":" in token:
            token = token.rsplit(":", 1)[1].strip()
        if token:
            out.add(token)
    return out


def robots_directives(
    http_headers: Mapping[str, str], html: bytes | None = None, charset: str = "utf-8"
) -> frozenset[str]:
    """Every robots directive a page carries, from its X-Robots-Tag header and robots meta tags."""
    found: set[str] = set()
    for key, value in http_headers.items():
        if key.lower() == "x-robots-tag":
            found |= _directives(value)
    if html:
        tree = HTMLTree.parse_from_bytes(html, charset)
        if tree.document is not None:
            for meta in tree.document.query_selector_all("meta[name]"):
                if (meta.getattr("name") or "").strip().lower() in ROBOTS_META_NAMES:
                    found |= _directives(meta.getattr("content") or "")
    return frozenset(found)


def opts_out_of_text(directives: frozenset[str]) -> bool:
    """Whether the directives forbid AI training on the page's text."""
    return NOAI in directives


def opts_out_of_images(directives: frozenset[str]) -> bool:
    """Whether the directives forbid AI training on the page's images (`noai` implies it)."""
    return NOAI in directives or NOIMAGEAI in directives
