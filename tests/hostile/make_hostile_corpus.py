"""The hostile-input corpus: WARC drops built to break a pipeline, and where each bad record sits.

Run `python tests/hostile/make_hostile_corpus.py OUT_DIR` (the test suite calls `build_corpus` from a
session fixture). Everything is generated deterministically in a few seconds from the repository's
own files and pip-installed packages:

- real pages, a real photo and a real speech clip are copied out of `samples/drops/sample-a` when
  it exists (see samples/PROVENANCE.md); the CMYK and truncated JPEGs are cut from matplotlib's
  public-domain `grace_hopper.jpg`;
- the videos are cut or re-encoded from the committed video sample drop (`samples/video_drops/video-a`);
- bombs, silence and broken framing are generated here.

Layout written under OUT_DIR:
- `drops/hostile/*.warc[.gz]`: one drop holding every hostile record (no manifest: tests land it);
- `drops/hostile-huge/`: the 50 MB single-line page, apart because the text stage needs tens of
  seconds for it;
- `drops/missing-file/`: a drop whose `_MANIFEST.json` lists a WARC file that is not there;
- `cases.json`: one entry per hostile case: id, WARC file, byte offset of its span, target URI, the
  stage kind that takes it as input (`html`, `image`, `audio`, `video` or none) and raw_crawl's verdict.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import struct
import sys
import wave
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf
from fastwarc.warc import ArchiveIterator, WarcRecordType
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SAMPLE_A = REPO / "samples" / "drops" / "sample-a"
DROP = "hostile"
HUGE_DROP = "hostile-huge"
MIB = 1 << 20

# What raw_crawl must do with a span: index it ("kept") or reject it with this reason.
KEPT = "kept"


@dataclass(frozen=True)
class Case:
    """One hostile record: where it is, which stage reads it, and raw_crawl's verdict on it."""

    id: str
    file: str
    offset: int
    uri: str | None
    kind: str | None  # "html" | "image" | "audio" | "video": the drop stage that takes it as input; None: no stage
    raw_crawl: str  # KEPT or the reject reason
    note: str
    drop: str = ""


@dataclass
class _Piece:
    data: bytes
    case: dict | None = None


@dataclass
class _WarcFile:
    """A WARC file under construction: records (already framed/compressed) in order."""

    name: str
    pieces: list[_Piece] = field(default_factory=list)

    def add(self, data: bytes, **case: str | None) -> None:
        self.pieces.append(_Piece(data, case or None))

    def cases(self) -> Iterator[Case]:
        offset = 0
        for p in self.pieces:
            if p.case:
                yield Case(file=self.name, offset=offset, **p.case)  # type: ignore[arg-type]
            offset += len(p.data)

    def bytes(self) -> bytes:
        return b"".join(p.data for p in self.pieces)


# --- WARC and HTTP framing ----------------------------------------------------------------
def _record_id(block: bytes, uri: str | None) -> str:
    return f"<urn:uuid:{hashlib.md5(block + (uri or '').encode()).hexdigest()}>"


def warc_record(
    rtype: str,
    uri: str | None,
    block: bytes,
    content_type: str | None = None,
    content_length: int | None = None,
    extra: dict[str, str] | None = None,
) -> bytes:
    """An uncompressed WARC/1.0 record; `content_length` overrides the true block length (to lie)."""
    head = ["WARC/1.0", f"WARC-Type: {rtype}", f"WARC-Record-ID: {_record_id(block, uri)}"]
    head.append("WARC-Date: 2026-11-01T00:00:00Z")
    if uri:
        head.append(f"WARC-Target-URI: {uri}")
    if content_type:
        head.append(f"Content-Type: {content_type}")
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    head.append(f"Content-Length: {len(block) if content_length is None else content_length}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + block + b"\r\n\r\n"


def http_block(status_line: bytes, headers: list[bytes], body: bytes) -> bytes:
    """Raw HTTP response bytes: any status line and header lines, even malformed ones."""
    return status_line + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


def response(uri: str, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> bytes:
    """A well-formed WARC response record with a correct payload digest."""
    lines = [f"Content-Type: {content_type}".encode(), f"Content-Length: {len(body)}".encode()]
    lines += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
    block = http_block(b"HTTP/1.1 200 OK", lines, body)
    digest = "sha1:" + base64.b32encode(hashlib.sha1(body).digest()).decode()
    extra = {"WARC-Payload-Digest": digest}
    return warc_record("response", uri, block, "application/http; msgtype=response", extra=extra)


def gz(record: bytes) -> bytes:
    """One gzip member holding `record` (mtime 0, so the bytes are reproducible)."""
    return gzip.compress(record, compresslevel=6, mtime=0)


def gzip_of_repeats(prefix: bytes, fill: bytes, mib: int, suffix: bytes = b"") -> bytes:
    """A gzip member of prefix + `mib` MiB of `fill` + suffix, built without compressing the middle.

    After a full flush deflate restarts from an empty window, so the compressed form of each MiB of
    `fill` is the same bytes; they are repeated `mib` times. A 2 GiB expansion costs ~2 MB and ~1 s.
    """
    block = (fill * (MIB // len(fill) + 1))[:MIB]
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    middle = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
    tail = c.compress(suffix) + c.flush(zlib.Z_FINISH)
    crc = zlib.crc32(prefix)
    for _ in range(mib):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(suffix, crc)
    size = (len(prefix) + mib * MIB + len(suffix)) & 0xFFFFFFFF
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + head + middle * mib + tail + struct.pack("<II", crc, size)


def warcinfo() -> bytes:
    return warc_record("warcinfo", None, b"software: mmrecipe hostile corpus\r\n", "application/warc-fields")


# --- real inputs --------------------------------------------------------------------------
def sample_payloads(uris: list[str]) -> dict[str, tuple[bytes, str]]:
    """(payload, content type) of these URIs from the committed sample-a drop, if it exists."""
    found: dict[str, tuple[bytes, str]] = {}
    for path in sorted(SAMPLE_A.glob("*.warc.gz")):
        with path.open("rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                uri = rec.headers.get("WARC-Target-URI", "").strip("<>")
                if uri in uris and uri not in found:
                    found[uri] = (rec.reader.read(), rec.http_headers.get("Content-Type") or "")
    return found


def grace_hopper() -> Image.Image:
    """matplotlib's public-domain portrait of Grace Hopper (a real photo in a pip package)."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(path) as im:
        return im.convert("RGB")


def jpeg(im: Image.Image, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def png_bomb(side: int = 20_000) -> bytes:
    """A valid 1-bit PNG of side x side black pixels: ~60 KB that claim `side`² (400M) pixels."""
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte 0, then black pixels
    raw = zlib.compress(row * side, 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def flac_silence(seconds: int, rate: int = 8000) -> bytes:
    """A real FLAC file of `seconds` of digital silence (3 hours at 8 kHz is ~270 KB)."""
    buf = io.BytesIO()
    minute = np.zeros(rate * 60, dtype=np.int16)
    with sf.SoundFile(buf, "w", samplerate=rate, channels=1, format="FLAC", subtype="PCM_16") as f:
        for _ in range(seconds // 60):
            f.write(minute)
        f.write(np.zeros(rate * (seconds % 60), dtype=np.int16))
    return buf.getvalue()


def wav_claiming(seconds: int, actual_s: float = 1.0, rate: int = 16_000) -> bytes:
    """A PCM WAV whose RIFF/data sizes claim `seconds` but that holds only `actual_s` of silence."""
    claimed = seconds * rate * 2
    data = b"\x00\x00" * int(actual_s * rate)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + claimed)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + (b"data" + struct.pack("<I", claimed) + data)
    )


def corrupt_wav() -> bytes:
    """A WAV whose header is garbage after the RIFF magic (fmt chunk size and format code broken)."""
    good = wav_claiming(1, 1.0)
    return good[:12] + b"fmt \xff\xff\xff\x7f" + bytes(range(200, 216)) + good[36:]


def single_line_html(target_bytes: int, words: list[str]) -> bytes:
    """One line of HTML, `target_bytes` long: a 16 KB run of sentences repeated (gzip packs it ~100:1)."""
    rng = np.random.default_rng(9)
    picks = rng.integers(0, len(words), size=4000)
    sentences = []
    for i in range(0, len(picks), 12):
        s = " ".join(words[j] for j in picks[i : i + 12])
        sentences.append(s[:1].upper() + s[1:] + ".")
    block = (" ".join(sentences) + " ").encode()[: 16 << 10]
    head = b'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>One long line</title></head><body><p>'
    tail = b"</p></body></html>"
    n = (target_bytes - len(head) - len(tail)) // len(block) + 1
    return (head + block * n)[: target_bytes - len(tail)] + tail


_FALLBACK_WORDS = [
    "the",
    "river",
    "stone",
    "house",
    "light",
    "night",
    "paper",
    "green",
    "water",
    "city",
    "market",
    "bridge",
    "garden",
    "morning",
    "winter",
    "letter",
    "window",
    "teacher",
    "station",
    "village",
    "harbour",
    "mountain",
    "forest",
    "summer",
    "evening",
    "kitchen",
    "library",
]

_FRENCH = (
    "Ce manuel est destiné à ceux qui découvrent le système. Les élèves y trouveront des règles "
    "générales, des exemples détaillés et des conseils pratiques pour l'installation, la mise à jour "
    "et la sécurité. Chaque chapitre commence par une présentation rapide, puis décrit les "
    "opérations courantes : créer un compte, gérer les paquets, configurer le réseau, protéger ses "
    "données. Nous espérons que ce document vous aidera à comprendre le fonctionnement de votre "
    "ordinateur et à résoudre vous-même les problèmes les plus fréquents."
)


def latin1_html(real_french: bytes | None) -> bytes:
    """A French page encoded as Latin-1 whose HTTP header and <meta> both claim UTF-8."""
    if real_french:
        text = real_french.decode("utf-8", "replace")
        text = text.replace("charset=UTF-8", "charset=utf-8")  # the page declares UTF-8 (truthfully, until now)
    else:
        text = '<html><head><meta charset="utf-8"><title>Avant-propos</title></head><body>'
        text += "".join(f"<p>{_FRENCH}</p>" for _ in range(6)) + "</body></html>"
    if "charset=" not in text[:2000].lower():
        text = text.replace("<head>", '<head><meta charset="utf-8">', 1)
    return text.encode("latin-1", "xmlcharrefreplace")


# --- the drop -----------------------------------------------------------------------------
CTRL_HTML = "http://docs.example.org/3.11/library/copy.html"  # prose enough for datatrove's rules (the default)
CTRL_IMAGE = "http://docs.example.org/3.11/_images/astronaut.jpg"
CTRL_AUDIO = "http://docs.example.org/media/audio/ss01-0880.wav"
REAL_FRENCH = "http://reference.example.net/manual/pr01.fr.html"
DUP_PAGE = "http://docs.example.org/3.11/library/glob.html"
H = "http://hostile.example.com"


def build_hostile_files() -> list[_WarcFile]:
    """Every WARC file of the hostile drop, with its cases."""
    real = sample_payloads([CTRL_HTML, CTRL_IMAGE, CTRL_AUDIO, REAL_FRENCH, DUP_PAGE])
    files: list[_WarcFile] = []

    # 00: real controls that every stage should keep (present when the sample drop is).
    f = _WarcFile("00-controls.warc.gz")
    f.add(gz(warcinfo()))
    for uri, kind, note in [
        (CTRL_HTML, "html", "real Python docs page (control)"),
        (CTRL_IMAGE, "image", "real photo (control)"),
        (CTRL_AUDIO, "audio", "real LibriVox speech (control)"),
    ]:
        if uri in real:
            body, ctype = real[uri]
            f.add(gz(response(uri, body, ctype)), id=f"control_{kind}", uri=uri, kind=kind, raw_crawl=KEPT, note=note)
    files.append(f)

    # 01: a gzip member cut in the middle of its record at the end of the file (an interrupted upload).
    f = _WarcFile("01-truncated-tail.warc.gz")
    f.add(gz(warcinfo()))
    f.add(gz(response(f"{H}/before-cut.html", b"<html><p>before the cut</p></html>", "text/html")))
    member = gz(response(f"{H}/cut.html", b"<html><p>" + b"cut mid-record " * 400 + b"</p></html>", "text/html"))
    f.add(
        member[: len(member) // 2],
        id="truncated_gzip_tail",
        uri=f"{H}/cut.html",
        kind=None,
        raw_crawl="truncated_gzip_member",
        note="gzip member cut in half at EOF",
    )
    files.append(f)

    # 02: a truncated member followed by good members; two records whose Content-Length lies.
    f = _WarcFile("02-framing.warc.gz")
    f.add(gz(warcinfo()))
    member = gz(response(f"{H}/cut-mid.html", b"<html><p>" + b"cut mid-file " * 400 + b"</p></html>", "text/html"))
    f.add(
        member[: len(member) // 2],
        id="truncated_gzip_mid",
        uri=f"{H}/cut-mid.html",
        kind=None,
        raw_crawl="corrupt_gzip_member",
        note="gzip member cut in half, next member follows",
    )
    f.add(gz(response(f"{H}/after-cut.html", b"<html><p>after the cut</p></html>", "text/html")))
    body = b"<html><p>length lies</p></html>"
    block = http_block(b"HTTP/1.1 200 OK", [b"Content-Type: text/html"], body)
    f.add(
        gz(
            warc_record(
                "response",
                f"{H}/short-length.html",
                block,
                "application/http; msgtype=response",
                content_length=len(block) - 10,
            )
        ),
        id="content_length_too_small_gz",
        uri=f"{H}/short-length.html",
        kind=None,
        raw_crawl="content_length_mismatch",
        note="WARC Content-Length 10 bytes short",
    )
    f.add(
        gz(
            warc_record(
                "response",
                f"{H}/long-length.html",
                block,
                "application/http; msgtype=response",
                content_length=len(block) + 500,
            )
        ),
        id="content_length_too_large_gz",
        uri=f"{H}/long-length.html",
        kind=None,
        raw_crawl="content_length_mismatch",
        note="WARC Content-Length 500 bytes long",
    )
    f.add(gz(response(f"{H}/after-lies.html", b"<html><p>after the lies</p></html>", "text/html")))
    files.append(f)

    # 03: an uncompressed WARC with a lying Content-Length; the next record must still be found.
    f = _WarcFile("03-plain.warc")
    f.add(warcinfo())
    f.add(
        warc_record(
            "response",
            f"{H}/plain-short.html",
            block,
            "application/http; msgtype=response",
            content_length=len(block) - 7,
        ),
        id="content_length_too_small_plain",
        uri=f"{H}/plain-short.html",
        kind=None,
        raw_crawl="content_length_mismatch",
        note="uncompressed record, Content-Length 7 bytes short",
    )
    f.add(response(f"{H}/plain-after.html", b"<html><p>plain after</p></html>", "text/html"))
    f.add(
        warc_record(
            "response",
            f"{H}/plain-long.html",
            block,
            "application/http; msgtype=response",
            content_length=len(block) + 4000,
        ),
        id="content_length_past_eof_plain",
        uri=f"{H}/plain-long.html",
        kind=None,
        raw_crawl="truncated_record",
        note="last record's Content-Length runs past EOF",
    )
    files.append(f)

    # 04: records that are not HTTP responses, and HTTP responses with garbage headers.
    f = _WarcFile("04-odd-records.warc.gz")
    f.add(gz(warcinfo()))
    f.add(
        gz(
            warc_record(
                "resource", "file:///srv/site/index.html", b"<html><p>a resource record</p></html>", "text/html"
            )
        ),
        id="resource_record",
        uri="file:///srv/site/index.html",
        kind=None,
        raw_crawl=KEPT,
        note="non-HTTP resource record carrying HTML",
    )
    f.add(
        gz(
            warc_record(
                "response",
                "dns:hostile.example.com",
                b"20261101000000\nhostile.example.com. 300 IN A 192.0.2.1\n",
                "text/dns",
            )
        ),
        id="dns_response",
        uri="dns:hostile.example.com",
        kind=None,
        raw_crawl=KEPT,
        note="non-HTTP response record (a DNS lookup)",
    )
    f.add(
        gz(warc_record("metadata", f"{H}/meta", b"outlinks: none\r\n", "application/warc-fields")),
        id="metadata_record",
        uri=f"{H}/meta",
        kind=None,
        raw_crawl=KEPT,
        note="metadata record",
    )
    garbage_status = http_block(b"\x16\x03\x01\x02\x00 garbage", [b"Content-Type: text/html"], b"<p>tls junk</p>")
    f.add(
        gz(warc_record("response", f"{H}/garbage-status.html", garbage_status, "application/http; msgtype=response")),
        id="garbage_status_line",
        uri=f"{H}/garbage-status.html",
        kind=None,
        raw_crawl="bad_http_headers",
        note="HTTP status line is binary garbage",
    )
    garbage_headers = http_block(
        b"HTTP/1.1 200 OK",
        [
            b"Content-Type: text/html; charset=\xff\xfe\x00bogus",
            b"\x00\x01\x02 no colon here \xff",
            b": empty name",
            b"Set-Cookie \x7f\x80\x81",
        ],
        b"<html><body><p>Garbage headers, fine body.</p></body></html>",
    )
    f.add(
        gz(warc_record("response", f"{H}/garbage-headers.html", garbage_headers, "application/http; msgtype=response")),
        id="garbage_http_headers",
        uri=f"{H}/garbage-headers.html",
        kind="html",
        raw_crawl=KEPT,
        note="binary bytes in Content-Type, a nameless header, a line without colon",
    )
    long_header = http_block(b"HTTP/1.1 200 OK", [b"Content-Type: text/html", b"X-Long: " + b"A" * 70_000], b"<p>x</p>")
    f.add(
        gz(warc_record("response", f"{H}/long-header.html", long_header, "application/http; msgtype=response")),
        id="oversized_http_header",
        uri=f"{H}/long-header.html",
        kind=None,
        raw_crawl="unparseable_record",
        note="one 70 KB HTTP header line",
    )
    no_end = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Broken: yes\r\n<html><p>headers never end</p></html>"
    f.add(
        gz(warc_record("response", f"{H}/headers-never-end.html", no_end, "application/http; msgtype=response")),
        id="unterminated_http_headers",
        uri=f"{H}/headers-never-end.html",
        kind="html",
        raw_crawl=KEPT,
        note="no blank line ends the HTTP headers",
    )
    files.append(f)

    # 05: HTML that lies about its charset, is empty, binary, deeply nested, a gzip bomb, or 50 MB on one line.
    f = _WarcFile("05-html.warc.gz")
    f.add(gz(warcinfo()))
    french = real.get(REAL_FRENCH, (None, ""))[0]
    f.add(
        gz(response(f"{H}/latin1.html", latin1_html(french), "text/html; charset=utf-8")),
        id="latin1_declared_utf8",
        uri=f"{H}/latin1.html",
        kind="html",
        raw_crawl=KEPT,
        note="French page in Latin-1, HTTP header and <meta> say UTF-8",
    )
    f.add(
        gz(response(f"{H}/empty.html", b"", "text/html")),
        id="empty_html",
        uri=f"{H}/empty.html",
        kind="html",
        raw_crawl=KEPT,
        note="0-byte HTML body",
    )
    noise = np.random.default_rng(5).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    f.add(
        gz(response(f"{H}/binary.html", noise, "text/html; charset=utf-8")),
        id="binary_html",
        uri=f"{H}/binary.html",
        kind="html",
        raw_crawl=KEPT,
        note="20 KB of random bytes as HTML",
    )
    deep = b"<html><body>" + b"<div>" * 5000 + b"deep text" + b"</div>" * 5000 + b"</body></html>"
    f.add(
        gz(response(f"{H}/deep.html", deep, "text/html")),
        id="deeply_nested_html",
        uri=f"{H}/deep.html",
        kind="html",
        raw_crawl=KEPT,
        note="5000 nested <div>",
    )
    bomb_body = gzip_of_repeats(b"<html><body><p>", b" ", 2048, b"</p></body></html>")
    f.add(
        gz(response(f"{H}/bomb.html", bomb_body, "text/html", {"Content-Encoding": "gzip"})),
        id="http_gzip_bomb",
        uri=f"{H}/bomb.html",
        kind="html",
        raw_crawl=KEPT,
        note=f"Content-Encoding: gzip body of {len(bomb_body)} bytes that inflates to 2 GiB",
    )
    files.append(f)

    # 06: images that are bombs, truncated, CMYK, 1x1, empty or not images at all.
    f = _WarcFile("06-images.warc.gz")
    f.add(gz(warcinfo()))
    photo = grace_hopper()
    f.add(
        gz(response(f"{H}/bomb.png", png_bomb(), "image/png")),
        id="png_decompression_bomb",
        uri=f"{H}/bomb.png",
        kind="image",
        raw_crawl=KEPT,
        note="20000x20000 PNG (400M pixels) in ~60 KB",
    )
    whole = jpeg(photo)
    f.add(
        gz(response(f"{H}/truncated.jpg", whole[: len(whole) // 2], "image/jpeg")),
        id="truncated_jpeg",
        uri=f"{H}/truncated.jpg",
        kind="image",
        raw_crawl=KEPT,
        note="first half of a JPEG",
    )
    cmyk = photo.crop((0, 0, photo.width, photo.height * 3 // 4)).convert("CMYK")
    f.add(
        gz(response(f"{H}/cmyk.jpg", jpeg(cmyk), "image/jpeg")),
        id="cmyk_jpeg",
        uri=f"{H}/cmyk.jpg",
        kind="image",
        raw_crawl=KEPT,
        note="real photo saved as CMYK JPEG",
    )
    f.add(
        gz(response(f"{H}/pixel.png", png(Image.new("RGB", (1, 1), (200, 10, 10))), "image/png")),
        id="one_pixel_image",
        uri=f"{H}/pixel.png",
        kind="image",
        raw_crawl=KEPT,
        note="1x1 PNG",
    )
    f.add(
        gz(response(f"{H}/empty.jpg", b"", "image/jpeg")),
        id="empty_image",
        uri=f"{H}/empty.jpg",
        kind="image",
        raw_crawl=KEPT,
        note="0-byte image body",
    )
    f.add(
        gz(response(f"{H}/not-an-image.jpg", b"<html><p>soft 404</p></html>", "image/jpeg")),
        id="html_served_as_image",
        uri=f"{H}/not-an-image.jpg",
        kind="image",
        raw_crawl=KEPT,
        note="an HTML soft-404 served as image/jpeg",
    )
    files.append(f)

    # 07: audio that is empty, has a corrupt header, or lasts 3 hours.
    f = _WarcFile("07-audio.warc.gz")
    f.add(gz(warcinfo()))
    f.add(
        gz(response(f"{H}/empty.wav", b"", "audio/wav")),
        id="zero_length_audio",
        uri=f"{H}/empty.wav",
        kind="audio",
        raw_crawl=KEPT,
        note="0-byte WAV",
    )
    f.add(
        gz(response(f"{H}/corrupt.wav", corrupt_wav(), "audio/wav")),
        id="corrupt_wav_header",
        uri=f"{H}/corrupt.wav",
        kind="audio",
        raw_crawl=KEPT,
        note="RIFF header with a garbage fmt chunk",
    )
    f.add(
        gz(response(f"{H}/silence-3h.flac", flac_silence(3 * 3600), "audio/flac")),
        id="three_hour_silent_flac",
        uri=f"{H}/silence-3h.flac",
        kind="audio",
        raw_crawl=KEPT,
        note="a real 3-hour FLAC of digital silence (8 kHz)",
    )
    f.add(
        gz(response(f"{H}/claims-3h.wav", wav_claiming(3 * 3600), "audio/wav")),
        id="wav_header_claims_3h",
        uri=f"{H}/claims-3h.wav",
        kind="audio",
        raw_crawl=KEPT,
        note="WAV header claims 3 hours, holds 1 s",
    )
    f.add(
        gz(response(f"{H}/noise.mp3", noise, "audio/mpeg")),
        id="garbage_mp3",
        uri=f"{H}/noise.mp3",
        kind="audio",
        raw_crawl=KEPT,
        note="random bytes as audio/mpeg",
    )
    files.append(f)

    # 13: video records: a real clip (control), then cut, random, bomb-sized, audio-only and lossless-codec ones.
    files.append(video_file())

    # 08/09: the same records (same WARC-Record-ID headers) in two files: two distinct records.
    dup_body, dup_type = real.get(
        DUP_PAGE, (b"<html><body><p>" + _FRENCH.encode() + b"</p></body></html>", "text/html")
    )
    dup_image = png(photo.resize((160, 200)))
    for name in ("08-dup-a.warc.gz", "09-dup-b.warc.gz"):
        f = _WarcFile(name)
        f.add(gz(warcinfo()))
        tag = name[3:8]
        f.add(
            gz(response(DUP_PAGE, dup_body, dup_type)),
            id=f"duplicate_record_id_page_{tag}",
            uri=DUP_PAGE,
            kind="html",
            raw_crawl=KEPT,
            note="same WARC-Record-ID as in the other dup file",
        )
        f.add(
            gz(response(f"{H}/dup.png", dup_image, "image/png")),
            id=f"duplicate_record_id_image_{tag}",
            uri=f"{H}/dup.png",
            kind="image",
            raw_crawl=KEPT,
            note="same WARC-Record-ID as in the other dup file",
        )
        files.append(f)

    # 10: a WARC-level gzip bomb (a member that inflates past raw_crawl's 256 MiB record limit).
    f = _WarcFile("10-warc-bomb.warc.gz")
    f.add(gz(warcinfo()))
    size = 300 * MIB
    head = (
        f"WARC/1.0\r\nWARC-Type: resource\r\nWARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-00000000b0b0>\r\n"
        f"WARC-Target-URI: {H}/zeros.bin\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    f.add(
        gzip_of_repeats(head, b"\0", size // MIB, b"\r\n\r\n"),
        id="warc_gzip_bomb",
        uri=f"{H}/zeros.bin",
        kind=None,
        raw_crawl="record_too_large",
        note="one gzip member inflating to 300 MiB",
    )
    f.add(gz(response(f"{H}/after-bomb.html", b"<html><p>after the bomb</p></html>", "text/html")))
    files.append(f)

    # 11: not a WARC at all; 12: an empty file.
    f = _WarcFile("11-not-a-warc.warc.gz")
    f.add(
        png(photo.resize((64, 80))),
        id="not_a_warc_file",
        uri=None,
        kind=None,
        raw_crawl="garbage_bytes",
        note="a PNG named .warc.gz",
    )
    files.append(f)
    files.append(_WarcFile("12-empty.warc.gz"))
    return files


def giant_frames_video(width: int = 4000, height: int = 3000) -> bytes:
    """Two black 4000x3000 MPEG-2 frames in MPEG-PS: 180 KB that decode to 36 MB of pixels per frame."""
    import av

    out_buf = io.BytesIO()
    with av.open(out_buf, "w", format="mpeg") as out:
        stream = out.add_stream("mpeg2video", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.thread_count = width, height, "yuv420p", 1
        black = av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")
        for pts in range(2):
            frame = black.reformat(format="yuv420p")
            frame.pts = pts
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return out_buf.getvalue()


def video_file() -> _WarcFile:
    """The video cases, cut from the committed video sample drop (samples/video_drops, see PROVENANCE.md)."""
    from tests.video_samples import reencode, video

    city, bikes = video("city.mpg"), video("bikes.mp4")
    tone = io.BytesIO()
    with wave.open(tone, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(16000))  # 1 s of silence
    f = _WarcFile("13-video.warc.gz")
    f.add(gz(warcinfo()))
    for name, body, ctype, case, note in [
        ("city.mpg", city[: len(city) * 2 // 5], "video/mpeg", "control_video", "real street footage, 3.5 s, one shot"),
        ("cut.mp4", bikes[:131_000], "video/mp4", "truncated_video", "an MP4 cut at 40% (mdat box runs past the end)"),
        (
            "noise.mp4",
            np.random.default_rng(17).bytes(50_000),
            "video/mp4",
            "corrupt_video",
            "random bytes as video/mp4",
        ),
        ("giant.mpg", giant_frames_video(), "video/mpeg", "video_bomb_dimensions", "4000x3000 frames in 180 KB"),
        ("speech.mp4", tone.getvalue(), "video/mp4", "no_video_stream", "a WAV file served as video/mp4"),
        ("lossless.avi", reencode(bikes, "avi", "ffv1", frames=5), "video/x-msvideo", "unsupported_codec", "FFV1"),
    ]:
        uri = f"{H}/video/{name}"
        f.add(gz(response(uri, body, ctype)), id=case, uri=uri, kind="video", raw_crawl=KEPT, note=note)
    return f


def build_huge_files() -> list[_WarcFile]:
    """The `hostile-huge` drop: a 50 MB single-line HTML page next to two real pages (kept apart: it is slow).

    The second real page is an ordinary crawl page, so the quality classifier has a negative to train on
    even though the text stages reject the 50 MB page as `page_too_large`.
    """
    real = sample_payloads([CTRL_HTML, REAL_FRENCH])
    f = _WarcFile("00-huge.warc.gz")
    f.add(gz(warcinfo()))
    if REAL_FRENCH in real:
        body, ctype = real[REAL_FRENCH]
        f.add(
            gz(response(REAL_FRENCH, body, ctype)),
            id="huge_drop_ordinary_page",
            uri=REAL_FRENCH,
            kind="html",
            raw_crawl=KEPT,
            note="real Debian Reference page (an ordinary crawl page: the classifier's negative)",
        )
    if CTRL_HTML in real:
        body, ctype = real[CTRL_HTML]
        f.add(
            gz(response(CTRL_HTML, body, ctype)),
            id="control_html",
            uri=CTRL_HTML,
            kind="html",
            raw_crawl=KEPT,
            note="real Python docs page (control)",
        )
    words = (real[CTRL_HTML][0].decode("utf-8", "replace").split() if CTRL_HTML in real else []) or _FALLBACK_WORDS
    words = sorted({w for w in words if w.isalpha() and len(w) < 15}) or _FALLBACK_WORDS
    huge = single_line_html(50_000_000, words)
    f.add(
        gz(response(f"{H}/huge.html", huge, "text/html; charset=utf-8")),
        id="huge_single_line_html",
        uri=f"{H}/huge.html",
        kind="html",
        raw_crawl=KEPT,
        note="50 MB of HTML on one line",
    )
    return [f]


def build_corpus(out: Path) -> list[Case]:
    """Write the hostile drops and `cases.json` under `out`; returns the cases."""
    cases: list[Case] = []
    for drop, files in ((DROP, build_hostile_files()), (HUGE_DROP, build_huge_files())):
        folder = out / "drops" / drop
        folder.mkdir(parents=True, exist_ok=True)
        for warc in files:
            (folder / warc.name).write_bytes(warc.bytes())
            cases += [replace(c, drop=drop) for c in warc.cases()]

    missing = out / "drops" / "missing-file"
    missing.mkdir(parents=True, exist_ok=True)
    data = gz(warcinfo()) + gz(response(f"{H}/ok.html", b"<html><p>ok</p></html>", "text/html"))
    (missing / "a.warc.gz").write_bytes(data)
    manifest = {
        "drop": "missing-file",
        "files": [
            {"path": "a.warc.gz", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()},
            {"path": "b.warc.gz", "size": 1234, "sha256": "0" * 64},
        ],
    }
    (missing / "_MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    (out / "cases.json").write_text(json.dumps([asdict(c) for c in cases], indent=1) + "\n")
    return cases


def load_cases(out: Path) -> list[Case]:
    """The cases written by `build_corpus`."""
    return [Case(**c) for c in json.loads((out / "cases.json").read_text())]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_hostile_corpus.py OUT_DIR")
    sys.path.insert(0, str(REPO))  # the video cases read the sample through tests.video_samples
    built = build_corpus(Path(sys.argv[1]))
    print(f"{len(built)} hostile cases written to {sys.argv[1]}")
