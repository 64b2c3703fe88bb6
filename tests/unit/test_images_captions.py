"""Captions from HTML pages: URL resolution, alt/title/surrounding text, opt-out pages, best caption."""

import pytest

from mmrecipe.images.captions import CaptionIndex, canonical_url, scan_page

PAGE = "http://Example.com:80/docs/guide/page.html"


@pytest.mark.parametrize(
    ("src", "base", "expected"),
    [
        ("img/a.jpg", PAGE, "http://example.com/docs/guide/img/a.jpg"),
        ("../img/a b.jpg#frag", PAGE, "http://example.com/docs/img/a%20b.jpg"),
        ("/abs/x.png?s=1", PAGE, "http://example.com/abs/x.png?s=1"),
        ("//cdn.example.net/y.webp", PAGE, "http://cdn.example.net/y.webp"),
        ("https://EXAMPLE.org:443/z.gif", None, "https://example.org/z.gif"),
        ("<http://example.com/wget.jpg>", None, "http://example.com/wget.jpg"),
        ("http://example.com/%7euser/%e2%82%ac.jpg", None, "http://example.com/~user/%E2%82%AC.jpg"),
        ("http://example.com:8080/p.jpg", None, "http://example.com:8080/p.jpg"),
        ("data:image/png;base64,AAAA", PAGE, None),
        ("javascript:void(0)", PAGE, None),
        ("ftp://example.com/a.jpg", None, None),
        ("", PAGE, None),
    ],
)
def test_canonical_url(src: str, base: str | None, expected: str | None) -> None:
    assert canonical_url(src, base) == expected


HTML = b"""<!doctype html><html><head><title>Guide</title></head><body>
<h1>Photos</h1>
<figure><img src="img/cat.jpg" alt="  A tabby   cat "><figcaption>Chelsea the cat</figcaption></figure>
<p>Before <img src="img/cup.jpg" title="Espresso cup"> after</p>
<p>Launch day: <img src="/media/rocket.jpg"> at dusk</p>
<div><img src="img/small.png" srcset="img/small@2x.png 2x, img/small@3x.png 3x" alt="Icon"></div>
<picture><source srcset="img/pic.webp"><img src="img/pic.jpg" alt="Picture"></picture>
<img src="data:image/gif;base64,R0lGOD">
</body></html>"""


def test_scan_page_resolves_every_reference_with_its_texts() -> None:
    opt_out, refs = scan_page(HTML, PAGE, {"content-type": "text/html; charset=utf-8"})
    assert not opt_out
    by_url = {r.image_url: r for r in refs}
    assert list(by_url) == [
        "http://example.com/docs/guide/img/cat.jpg",
        "http://example.com/docs/guide/img/cup.jpg",
        "http://example.com/media/rocket.jpg",
        "http://example.com/docs/guide/img/small.png",
        "http://example.com/docs/guide/img/small@2x.png",
        "http://example.com/docs/guide/img/small@3x.png",
        "http://example.com/docs/guide/img/pic.jpg",
        "http://example.com/docs/guide/img/pic.webp",
    ]
    cat = by_url["http://example.com/docs/guide/img/cat.jpg"]
    assert (cat.alt, cat.surrounding) == ("A tabby cat", "Chelsea the cat")
    assert cat.caption(True) == (0, "A tabby cat", "alt")
    assert by_url["http://example.com/docs/guide/img/cup.jpg"].caption(True) == (1, "Espresso cup", "title")
    rocket = by_url["http://example.com/media/rocket.jpg"]
    assert rocket.caption(True) == (2, "Launch day: at dusk", "surrounding_text")
    assert rocket.caption(False) == (3, "", "none")
    assert by_url["http://example.com/docs/guide/img/small@3x.png"].alt == "Icon"
    assert by_url["http://example.com/docs/guide/img/pic.webp"].alt == "Picture"


def test_base_href_changes_resolution() -> None:
    html = (
        b'<html><head><base href="https://static.example.org/v2/"></head><body><img src="a.jpg" alt="A"></body></html>'
    )
    _, refs = scan_page(html, PAGE, {})
    assert [r.image_url for r in refs] == ["https://static.example.org/v2/a.jpg"]


@pytest.mark.parametrize(
    ("meta", "headers", "opted"),
    [
        ('<meta name="robots" content="noai, noimageai">', {}, True),
        ('<meta name="robots" content="noimageai">', {}, True),
        ('<meta name="robots" content="noai">', {}, True),
        ('<meta name="robots" content="noindex, nofollow">', {}, False),
        ("", {"x-robots-tag": "noimageai"}, True),
        ("", {"x-robots-tag": "otherbot: noarchive"}, False),
    ],
)
def test_page_opt_out_marks_its_images(meta: str, headers: dict[str, str], opted: bool) -> None:
    html = f'<html><head>{meta}</head><body><img src="a.jpg" alt="A"></body></html>'.encode()
    opt_out, refs = scan_page(html, PAGE, headers)
    assert opt_out is opted and all(r.opt_out is opted for r in refs)


def test_best_caption_over_pages_and_opt_out_from_any_page() -> None:
    index = CaptionIndex()
    page_a = b'<html><body><p>Nice <img src="/x.jpg"> view</p><img src="/y.jpg"></body></html>'
    page_b = b'<html><body><img src="http://example.com/x.jpg" alt="A harbour at night"></body></html>'
    page_c = (
        b'<html><head><meta name="robots" content="noimageai"></head><body><img src="/y.jpg" alt="Y"></body></html>'
    )
    for order, (url, html) in enumerate(
        [
            ("http://example.com/a.html", page_a),
            ("http://example.com/b.html", page_b),
            ("http://example.com/c.html", page_c),
        ]
    ):
        index.add_page(*scan_page(html, url, {}, order))
    x = index.caption_for("<http://EXAMPLE.com/x.jpg>")
    assert (x.caption, x.source, x.page_url, x.opt_out) == (
        "A harbour at night",
        "alt",
        "http://example.com/b.html",
        False,
    )
    y = index.caption_for("http://example.com/y.jpg")
    assert y.opt_out and y.opt_out_page == "http://example.com/c.html"
    none = index.caption_for("http://example.com/unreferenced.jpg")
    assert (none.caption, none.source, none.page_url, none.opt_out) == ("", "none", None, False)
    assert (index.pages, index.opted_out_pages) == (3, 1)
