"""Shot boundaries on the sample's real cuts, clip spans and their speech, and video captions from pages and tracks."""

import pytest

from mmrecipe.audio.speech_detection import SpeechRegions
from mmrecipe.video.captions import VideoCaptionIndex, parse_track, scan_page
from mmrecipe.video.clip_analysis import analyse_video, speech_within
from mmrecipe.video.shots import ShotSettings, boundary_f1, clip_spans
from tests.video_samples import PLANTED, reencode, video

TOLERANCE_S = 0.5


@pytest.mark.parametrize("name", ["bikes.mp4", "city.mpg", "oa4_launch.webm"])
def test_shots_match_the_real_cuts_within_half_a_second(name: str) -> None:
    analysis = analyse_video(video(name))
    ambiguous = PLANTED["ambiguous_cuts"].get(name, [])
    found = [c for c in analysis.cuts if all(abs(c - a) > TOLERANCE_S for a in ambiguous)]
    f1, tp, fp, fn = boundary_f1(found, PLANTED["cuts"][name], TOLERANCE_S)
    assert (f1, tp, fp, fn) == (1.0, len(PLANTED["cuts"][name]), 0, 0), (name, analysis.cuts)
    assert [(c.start, c.end) for c in analysis.clips] == clip_spans(analysis.cuts, analysis.duration_s)


def test_a_still_frame_has_no_cut_and_no_motion() -> None:
    analysis = analyse_video(reencode(video("bikes.mp4"), "mp4", "libx264", frames=75, still=True))
    [clip] = analysis.clips
    assert analysis.cuts == [] and (clip.start, clip.end) == (0.0, 3.0)
    assert clip.motion < 1e-5
    assert len(set(clip.keyframe_phashes)) == 1  # the same picture at 1/4, 1/2 and 3/4


@pytest.mark.parametrize(
    ("cuts", "end", "max_clip_s", "spans"),
    [
        ([], 10.0, 30.0, [(0.0, 10.0)]),
        ([2.0, 5.0], 10.0, 30.0, [(0.0, 2.0), (2.0, 5.0), (5.0, 10.0)]),
        ([4.0], 10.0, 3.0, [(0.0, 2.0), (2.0, 4.0), (4.0, 7.0), (7.0, 10.0)]),
        ([0.0, 10.0, 12.0], 10.0, 30.0, [(0.0, 10.0)]),  # cuts outside (0, end) are ignored
    ],
)
def test_clip_spans_split_long_shots(
    cuts: list[float], end: float, max_clip_s: float, spans: list[tuple[float, float]]
) -> None:
    assert clip_spans(cuts, end, ShotSettings(max_clip_s=max_clip_s)) == spans


@pytest.mark.parametrize(
    ("found", "truth", "expected"),
    [
        ([1.0, 3.0], [1.2, 3.4], (1.0, 2, 0, 0)),
        ([1.0, 3.0], [1.2, 3.6], (0.5, 1, 1, 1)),
        ([1.0, 1.1], [1.0], (2 / 3, 1, 1, 0)),  # one truth cut matches one detection only
        ([], [], (1.0, 0, 0, 0)),
    ],
)
def test_boundary_f1(found: list[float], truth: list[float], expected: tuple[float, int, int, int]) -> None:
    assert boundary_f1(found, truth) == pytest.approx(expected)


def test_webvtt_and_srt_tracks_parse_into_timed_cues() -> None:
    vtt = parse_track(video("oa4_launch.vtt"), "x.vtt")
    srt = parse_track(video("bikes-copy.srt"), "x.srt")
    assert [(c.start, c.end) for c in vtt] == [(0.0, 4.0), (4.0, 8.0)]
    assert vtt[0].text == "Mission control counts down to the launch."
    assert [(c.start, c.end) for c in srt] == [(0.0, 5.0), (5.0, 10.0)]
    assert srt[1].text == "Traffic passes a crossing in the afternoon."
    assert parse_track(b"not subtitles at all", "x.srt") == []


PAGE = b"""<html><head><base href="/media/"></head><body>
<figure><video title="Launch" src="a.webm"><source src="a.mp4"><track kind="captions" src="a.vtt">
<track kind="chapters" src="chapters.vtt"></video><figcaption>The rocket leaves the pad.</figcaption></figure>
<p>A city at dusk: <video aria-label="Skyline"><source src="/city.mpg"></video></p>
<div><span>Cyclists in the street <video src="//cdn.example.org/b.webm"></video></span></div>
</body></html>"""


def test_video_references_resolve_urls_texts_and_tracks() -> None:
    opt_out, refs = scan_page(PAGE, "http://v.example.org/page.html", {})
    assert not opt_out
    by_url = {r.video_url: r for r in refs}
    assert sorted(by_url) == [
        "http://cdn.example.org/b.webm",
        "http://v.example.org/city.mpg",
        "http://v.example.org/media/a.mp4",
        "http://v.example.org/media/a.webm",
    ]
    launch = by_url["http://v.example.org/media/a.webm"]
    assert (launch.title, launch.surrounding) == ("Launch", "The rocket leaves the pad.")
    assert launch.tracks == ("http://v.example.org/media/a.vtt",)  # chapters are not captions
    assert by_url["http://v.example.org/city.mpg"].aria_label == "Skyline"
    assert by_url["http://cdn.example.org/b.webm"].surrounding == "Cyclists in the street"


def test_caption_sources_in_order_and_cues_by_clip_span() -> None:
    index = VideoCaptionIndex()
    index.add_refs(scan_page(PAGE, "http://v.example.org/page.html", {})[1])
    cues = parse_track(video("oa4_launch.vtt"), "a.vtt")
    tracks = {"http://v.example.org/media/a.vtt": cues}
    launch = index.caption_for("http://v.example.org/media/a.webm", lambda u: tracks.get(u, []))
    assert launch.for_span(0.0, 3.0) == ("Mission control counts down to the launch.", "track")
    assert launch.for_span(3.0, 8.0)[0].endswith("Ignition and liftoff of the rocket.")
    assert launch.for_span(9.0, 10.0) == ("Launch", "title")  # no cue overlaps: the title
    city = index.caption_for("http://v.example.org/city.mpg", lambda u: [])
    assert city.for_span(0, 1) == ("Skyline", "aria_label")
    cdn = index.caption_for("http://cdn.example.org/b.webm", lambda u: [])
    assert cdn.for_span(0, 1) == ("Cyclists in the street", "surrounding_text")
    assert index.caption_for("http://elsewhere.example/x.mp4", lambda u: []).for_span(0, 1) == ("", "none")


@pytest.mark.parametrize(
    ("head", "headers", "opted"),
    [
        ('<meta name="robots" content="noai">', {}, True),
        ('<meta name="robots" content="noimageai">', {}, True),
        ('<meta name="robots" content="noindex">', {}, False),
        ("", {"X-Robots-Tag": "noai"}, True),
    ],
)
def test_opt_out_pages_mark_their_videos(head: str, headers: dict[str, str], opted: bool) -> None:
    html = f'<html><head>{head}</head><body><video src="v.mp4" title="t"></video></body></html>'.encode()
    index = VideoCaptionIndex()
    opted_out, refs = scan_page(html, "http://v.example.org/p.html", headers)
    index.add_refs(refs)
    caption = index.caption_for("http://v.example.org/v.mp4", lambda u: [])
    assert (caption.opt_out_page == "http://v.example.org/p.html") is opted
    assert opted_out is opted


@pytest.mark.parametrize(
    ("start_s", "end_s", "spans"),
    [
        (0.0, 3.0, ((1600, 16000), (32000, 48000))),  # the region across the cut is cut at 3 s
        (3.0, 8.0, ((48000, 64000), (96000, 112000))),
        (7.5, 8.0, ()),  # no speech inside
    ],
)
def test_a_clip_hears_only_the_speech_inside_its_span(start_s: float, end_s: float, spans: tuple) -> None:
    track = SpeechRegions(((1600, 16000), (32000, 64000), (96000, 112000)), 128000)
    assert speech_within(track, start_s, end_s) == SpeechRegions(spans, 128000)
