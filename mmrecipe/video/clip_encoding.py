"""Kept clips as small MP4s: their frames re-encoded at a bounded size with a configurable codec.

All kept clips of one video are encoded in one decode pass (`encode_clips`): each frame goes to the
encoder of the clip whose [start, end) holds it. Frames are scaled so the longer side is at most
`max_side` and encoded single-threaded with fixed options, so the same clips give the same bytes.
The clips' audio is not carried (their timed transcript is in each clip's JSON).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
from av.video.reformatter import VideoReformatter

from mmrecipe.video.decoding import VideoLimits, iter_frames, open_video, payload_size


@dataclass(frozen=True)
class ClipEncoding:
    """How kept clips are re-encoded for the WebDataset shards."""

    codec: str = "libx264"
    max_side: int = 320
    crf: int = 28
    preset: str = "veryfast"


class _ClipWriter:
    """One clip's MP4 being encoded in memory."""

    def __init__(self, encoding: ClipEncoding, rate: Fraction, width: int, height: int) -> None:
        self.buf = io.BytesIO()
        self.out = av.open(self.buf, "w", format="mp4")
        self.stream = self.out.add_stream(encoding.codec, rate=rate)
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.thread_count = 1
        if encoding.codec == "libx264":
            self.stream.options = {"crf": str(encoding.crf), "preset": encoding.preset}
        self.rate, self.frames = rate, 0

    def add(self, frame: av.VideoFrame) -> None:
        frame.pts, frame.time_base = self.frames, 1 / self.rate
        self.frames += 1
        self.out.mux(self.stream.encode(frame))

    def close(self) -> bytes:
        self.out.mux(self.stream.encode(None))
        self.out.close()
        return self.buf.getvalue()


def encode_clips(
    payload: bytes | str, spans: Sequence[tuple[float, float]], encoding: ClipEncoding, limits: VideoLimits
) -> list[bytes]:
    """The MP4 bytes of each [start, end) span of a video payload (bytes or a file's path), in one decode."""
    container, info = open_video(payload, limits)
    rate = Fraction(info.fps).limit_denominator(1001)
    writers: dict[int, _ClipWriter] = {}
    to_yuv = VideoReformatter()
    done: dict[int, bytes] = {}
    with container:
        for frame in iter_frames(container, info, encoding.max_side, payload_size(payload), limits):
            for i, (start, end) in enumerate(spans):
                if start - 1e-6 <= frame.time < end - 1e-6:
                    height, width = frame.rgb.shape[:2]
                    writer = writers.setdefault(i, _ClipWriter(encoding, rate, width, height))
                    vf = to_yuv.reformat(av.VideoFrame.from_ndarray(frame.rgb, format="rgb24"), format="yuv420p")
                    writer.add(vf)
                elif frame.time >= end - 1e-6 and i in writers:
                    done[i] = writers.pop(i).close()
    done |= {i: w.close() for i, w in writers.items()}
    return [done.get(i, b"") for i in range(len(spans))]
