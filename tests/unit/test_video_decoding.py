"""Safe video decoding on real videos (the sample drops' clips, re-muxed, cut and corrupted): every reject reason."""

from collections.abc import Callable
from pathlib import Path

import pytest

from mmrecipe.video.decoding import VideoLimits, VideoRejected, iter_frames, open_video, scaled_size
from tests.video_samples import reencode, remux, video

DEFAULT_LIMITS = VideoLimits()


def decode(payload: bytes, limits: VideoLimits = DEFAULT_LIMITS) -> tuple[str, str, int]:
    """(container, codec, frames decoded) of a payload, through the stage's two calls."""
    container, info = open_video(payload, limits)
    with container:
        frames = list(iter_frames(container, info, 64, len(payload), limits))
    assert all(max(f.rgb.shape[:2]) <= 64 for f in frames)
    return info.container, info.codec, len(frames)


def zeroed(payload: bytes) -> bytes:
    """A fifth of the bytes from a third of the way in overwritten with zeros (a damaged upload)."""
    data = bytearray(payload)
    start = len(data) // 3
    data[start : start + len(data) // 5] = bytes(len(data) // 5)
    return bytes(data)


CONTAINERS: list[tuple[str, Callable[[], bytes], str, str, int]] = [
    ("mp4", lambda: video("bikes.mp4"), "mov,mp4,m4a,3gp,3g2,mj2", "h264", 250),
    ("mov", lambda: remux(video("bikes.mp4"), "mov"), "mov,mp4,m4a,3gp,3g2,mj2", "h264", 250),
    ("webm", lambda: video("oa4_launch.webm"), "matroska,webm", "vp8", 194),
    ("ogg", lambda: remux(video("oa4_launch.webm"), "ogg"), "ogg", "vp8", 194),
    ("avi", lambda: video("city-private.avi"), "avi", "mpeg4", 80),
    ("mpeg-ps", lambda: video("city.mpg"), "mpeg", "mpeg2video", 190),
]


@pytest.mark.parametrize(("name", "make", "container", "codec", "frames"), CONTAINERS, ids=[c[0] for c in CONTAINERS])
def test_every_container_decodes(name: str, make: Callable[[], bytes], container: str, codec: str, frames: int) -> None:
    assert decode(make()) == (container, codec, frames)


REJECTS: list[tuple[str, Callable[[], bytes], VideoLimits, str, str]] = [
    ("mp4 cut at 40%", lambda: video("bikes.mp4")[:131_000], VideoLimits(), "truncated_video", "MP4 box 'mdat'"),
    ("webm cut at 40%", lambda: video("launch-cut.webm"), VideoLimits(), "truncated_video", "frames end at 4.04 s"),
    ("avi cut at 40%", lambda: video("city-private.avi")[:45_000], VideoLimits(), "truncated_video", "RIFF"),
    ("mp4 zeroed", lambda: zeroed(video("bikes.mp4")), VideoLimits(), "corrupt_video", "packets failed to decode"),
    ("mpeg-ps zeroed", lambda: zeroed(video("city.mpg")), VideoLimits(), "corrupt_video", "frames decoded"),
    ("webm zeroed", lambda: zeroed(video("oa4_launch.webm")), VideoLimits(), "corrupt_video", "frames end at"),
    ("html page", lambda: video("launch.html"), VideoLimits(), "corrupt_video", "cannot be parsed"),
    ("webvtt file", lambda: video("oa4_launch.vtt"), VideoLimits(), "no_video_stream", "webvtt container"),
    ("empty", lambda: b"", VideoLimits(), "empty_video", "0 bytes"),
    ("too many bytes", lambda: video("bikes.mp4"), VideoLimits(max_bytes=100_000), "video_too_large", "> limit"),
    (
        "ffv1 in matroska",
        lambda: reencode(video("bikes.mp4"), "matroska", "ffv1", frames=10),
        VideoLimits(),
        "unsupported_codec",
        "'ffv1'",
    ),
    ("h264 not allowed", lambda: video("bikes.mp4"), VideoLimits(allowed_codecs=("vp8",)), "unsupported_codec", "h264"),
    (
        "ogg audio only",
        lambda: remux(video("oa4_launch.webm"), "ogg", video_stream=False),
        VideoLimits(),
        "no_video_stream",
        "ogg",
    ),
    ("10 s > 5 s", lambda: video("bikes.mp4"), VideoLimits(max_duration_s=5.0), "video_too_long", "declares 10.0 s"),
    ("pixels", lambda: video("oa4_launch.webm"), VideoLimits(max_pixels=320 * 240), "video_bomb", "640x360"),
    ("declared frames", lambda: video("bikes.mp4"), VideoLimits(max_frames=100), "video_bomb", "250 frames declared"),
    ("decoded frames", lambda: video("oa4_launch.webm"), VideoLimits(max_frames=100), "video_bomb", "more than 100"),
    ("streams", lambda: video("oa4_launch.webm"), VideoLimits(max_streams=1), "video_bomb", "2 streams"),
]


@pytest.mark.parametrize(("name", "make", "limits", "reason", "detail"), REJECTS, ids=[r[0] for r in REJECTS])
def test_bad_videos_are_rejected_with_their_reason(
    name: str, make: Callable[[], bytes], limits: VideoLimits, reason: str, detail: str
) -> None:
    with pytest.raises(VideoRejected) as err:
        decode(make(), limits)
    assert err.value.reason == reason
    assert detail in err.value.detail


def test_header_that_hides_its_length_is_caught_while_decoding() -> None:
    """An Ogg stream declares no frame count: the decoded-frame limit stops it mid-stream, not the header."""
    ogg = remux(video("oa4_launch.webm"), "ogg")
    with pytest.raises(VideoRejected) as err:
        decode(ogg, VideoLimits(max_frames=50))
    assert (err.value.reason, err.value.detail) == ("video_bomb", "more than 50 frames decoded")


@pytest.mark.parametrize(
    ("size", "side", "expected"),
    [((640, 360), 256, (256, 144)), ((320, 136), 256, (256, 108)), ((100, 50), 256, (100, 50))],
)
def test_scaled_size_keeps_aspect_and_even_sides(size: tuple[int, int], side: int, expected: tuple[int, int]) -> None:
    assert scaled_size(*size, side) == expected


def test_a_file_inputs_reject_detail_names_no_scratch_path(tmp_path: Path) -> None:
    """The detail is the same for bytes and for the scratch file they were spooled to (re-runs are byte-identical)."""
    body = video("launch.html")
    scratch = tmp_path / "tmp1234.video"
    scratch.write_bytes(body)
    details = []
    for payload in (body, str(scratch)):
        with pytest.raises(VideoRejected) as rejected:
            open_video(payload)
        details.append((rejected.value.reason, rejected.value.detail))
    assert details[0] == details[1] and details[0][0] == "corrupt_video", details
    assert str(tmp_path) not in details[1][1]
