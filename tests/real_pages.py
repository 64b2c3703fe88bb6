"""A drop of real web pages that are not in the sample: installed packages' READMEs served as HTML pages.

Each page is the long description (README) of a distribution installed with mmrecipe, read from its
`METADATA` with importlib.metadata, under that package's own licence (recorded per page in `PAGES`).
The one photo is matplotlib's `mpl-data/sample_data/logo2.png` (matplotlib licence). Nothing here is in
`samples/` or in the classifier's reference texts, so it stands for a team's first own crawl.
"""

import html
import importlib.metadata
import re
from pathlib import Path

import matplotlib

from tests.warc_fixtures import HttpResponse, warc_bytes

HOST = "http://pkgdocs.example.net"
# distribution -> licence of its README (the METADATA License / License-Expression field)
PAGES = {
    "pandas": "BSD-3-Clause",
    "trafilatura": "Apache-2.0",
    "datasketch": "MIT",
    "faster-whisper": "MIT",
    "boto3": "Apache-2.0",
    "ImageHash": "BSD-2-Clause",
    "soundfile": "BSD-3-Clause",
    "Resiliparse": "Apache-2.0",
    "av": "BSD-3-Clause",
}
LOGO = Path(matplotlib.get_data_path()) / "sample_data" / "logo2.png"
LOGO_URL = f"{HOST}/static/matplotlib-logo.png"


def page_url(dist: str) -> str:
    return f"{HOST}/{dist.lower()}/readme.html"


def _prose(readme: str) -> list[str]:
    """The README's prose paragraphs: blocks of sentences, without headings, code, tables, badges or lists."""
    out = []
    for block in re.split(r"\n\s*\n", re.sub(r"```.*?```", "", readme, flags=re.S)):
        text = " ".join(block.split())
        if len(text.split()) >= 12 and text[-1] in ".:!?" and not re.search(r"[{}<>|`\[\]#*=]|^\W", text):
            out.append(text)
    return out


def _html(title: str, paragraphs: list[str], extra: str = "") -> bytes:
    """A small web page: navigation, a title, the paragraphs and a footer."""
    body = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    nav = '<nav><a href="/">Package docs</a> | <a href="/about.html">About</a></nav>'
    main = f"<main><h1>{html.escape(title)}</h1>{extra}{body}</main>"
    foot = "<footer>Each page keeps the licence of the package it describes.</footer>"
    head = f"<head><title>{html.escape(title)}</title></head>"
    return f"<!doctype html><html>{head}<body>{nav}{main}{foot}</body></html>".encode()


def own_drop_responses() -> list[HttpResponse]:
    """The HTTP responses of the drop: one README page per distribution in PAGES, and the logo it shows."""
    out = []
    for i, dist in enumerate(PAGES):
        meta = importlib.metadata.metadata(dist)
        readme = meta.get_payload() or meta.get("Description") or ""
        extra = f'<figure><img src="{LOGO_URL}" alt="the matplotlib logo"></figure>' if i == 0 else ""
        out.append(HttpResponse(page_url(dist), _html(f"{meta['Name']} {meta['Version']}", _prose(readme), extra)))
    out.append(HttpResponse(LOGO_URL, LOGO.read_bytes(), content_type="image/png"))
    return out


def write_own_drop(folder: Path) -> Path:
    """A drop folder (one gzipped WARC) of the real pages above, as a crawler would deliver it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "crawl-00000.warc.gz").write_bytes(warc_bytes(own_drop_responses()))
    return folder
