"""Real videos for tests: the committed video sample drops' payloads (read from their WARCs), re-muxed or cut."""

import functools
import io
import json

import av
from fastwarc.warc import ArchiveIterator, WarcRecordType

from tests.conftest import REPO

VIDEO_DROPS = REPO / "samples" / "video_drops"
PLANTED = json.loads((REPO / "samples" / "reference" / "video_planted.json").read_text())


@functools.cache
def sample_payloads() -> dict[str, bytes]:
    """Every video/* and track payload of both video drops, by file name (e.g. `bikes.mp4`)."""
    found: dict[str, bytes] = {}
    for warc in sorted(VIDEO_DROPS.glob("*/crawl-0*.warc.gz")):
        with open(warc, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response):
                name = rec.headers.get("WARC-Target-URI", "").strip("<>").rsplit("/", 1)[1]
                found[name] = rec.reader.read()
    return found


def video(name: str) -> bytes:
    """One sample video's bytes."""
    return sample_payloads()[name]


def remux(payload: bytes, container: str, video_stream: bool = True, audio_stream: bool = True) -> bytes:
    """The same packets in another container (no re-encoding), optionally without the video or audio stream."""
    out_buf = io.BytesIO()
    with av.open(io.BytesIO(payload)) as inp, av.open(out_buf, "w", format=container) as out:
        keep = [s for s in inp.streams if (s.type == "video" and video_stream) or (s.type == "audio" and audio_stream)]
        mapping = {s.index: out.add_stream_from_template(s) for s in keep}
        for packet in inp.demux(*keep):
            if packet.dts is None:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    return out_buf.getvalue()


def reencode(payload: bytes, container: str, codec: str, frames: int | None = None, still: bool = False) -> bytes:
    """The video re-encoded with `codec` (first `frames` frames; `still`: the first frame repeated)."""
    out_buf = io.BytesIO()
    with av.open(io.BytesIO(payload)) as inp, av.open(out_buf, "w", format=container) as out:
        src = inp.streams.video[0]
        stream = out.add_stream(codec, rate=src.average_rate or 25)
        stream.width, stream.height = src.codec_context.width, src.codec_context.height
        stream.pix_fmt = "yuv420p" if codec not in ("ffv1", "png") else ("rgb24" if codec == "png" else "yuv420p")
        first = None
        for i, frame in enumerate(inp.decode(src)):
            if frames is not None and i >= frames:
                break
            first = first if (still and first is not None) else frame.to_ndarray(format="rgb24")
            vf = av.VideoFrame.from_ndarray(first, format="rgb24").reformat(format=stream.pix_fmt)
            vf.pts = i
            out.mux(stream.encode(vf))
        out.mux(stream.encode(None))
    return out_buf.getvalue()
