"""Decoding HTML bytes: HTTP charset, then <meta charset>, then detection; lying pages give no mojibake."""

import pytest

from mmrecipe.text.decoding import canonical_codec, decode_html, http_charset, meta_charset

FRENCH = "Le café de la gare ouvre à sept heures ; les crêpes sont délicieuses et très réputées."
GERMAN = "Größere Änderungen an der Übersetzung müssen im Voraus mit dem Team abgestimmt werden."
JAPANESE = "日本語の文書を正しく表示するためには、文字コードを正しく指定する必要があります。"


def page(body: str, head: str = "") -> str:
    return f"<html><head>{head}<title>t</title></head><body><p>{body}</p></body></html>"


CASES = [
    # (name, payload bytes, Content-Type header, expected text inside, expected source)
    ("utf8 declared in http", page(FRENCH).encode("utf-8"), "text/html; charset=utf-8", FRENCH, "http"),
    ("latin-1 bytes declared utf-8", page(FRENCH).encode("latin-1"), "text/html; charset=UTF-8", FRENCH, "detected"),
    (
        "latin-1 bytes, http and meta both say utf-8",
        page(GERMAN, '<meta charset="utf-8">').encode("latin-1"),
        "text/html; charset=utf-8",
        GERMAN,
        "detected",
    ),
    ("utf8 bytes declared latin-1", page(FRENCH).encode("utf-8"), "text/html; charset=ISO-8859-1", FRENCH, "detected"),
    (
        "meta charset only",
        page(GERMAN, '<meta charset="iso-8859-15">').encode("iso-8859-15"),
        "text/html",
        GERMAN,
        "meta",
    ),
    (
        "meta http-equiv",
        page(JAPANESE, '<meta http-equiv="Content-Type" content="text/html; charset=Shift_JIS">').encode("shift_jis"),
        None,
        JAPANESE,
        "meta",
    ),
    ("utf-8 bom wins", b"\xef\xbb\xbf" + page(FRENCH).encode("utf-8"), "text/html; charset=latin-1", FRENCH, "bom"),
    ("no declaration, utf-8", page(JAPANESE).encode("utf-8"), "text/html", JAPANESE, "detected"),
    ("unknown charset label", page(FRENCH).encode("utf-8"), "text/html; charset=x-klingon", FRENCH, "detected"),
    (
        "cp1252 quotes under a latin-1 label",
        page("“quoted” – dash").encode("cp1252"),
        "text/html; charset=latin1",
        "“quoted” – dash",
        "http",
    ),
]


@pytest.mark.parametrize(("name", "payload", "content_type", "expected", "source"), CASES, ids=[c[0] for c in CASES])
def test_decoding(name: str, payload: bytes, content_type: str | None, expected: str, source: str) -> None:
    decoded = decode_html(payload, content_type)
    assert expected in decoded.text
    assert decoded.source == source
    assert "Ã" not in decoded.text and "\ufffd" not in decoded.text  # no mojibake, no replacement characters


def test_binary_garbage_does_not_crash() -> None:
    payload = bytes(range(256)) * 8
    decoded = decode_html(payload, "text/html; charset=utf-8")
    assert isinstance(decoded.text, str) and decoded.source in {"detected", "fallback"}


@pytest.mark.parametrize(
    ("label", "codec"),
    [("UTF-8", "utf-8"), ("latin1", "cp1252"), ("ISO-8859-1", "cp1252"), ("us-ascii", "cp1252"), ("bogus", None)],
)
def test_canonical_codec(label: str, codec: str | None) -> None:
    assert canonical_codec(label) == codec


def test_header_and_meta_parsing() -> None:
    assert http_charset('text/html; charset="Windows-1252"') == "Windows-1252"
    assert http_charset("text/html") is None
    assert meta_charset(b"<html><head><META CHARSET=koi8-r></head>") == "koi8-r"
    assert meta_charset(b"<html><body>no meta</body></html>") is None
