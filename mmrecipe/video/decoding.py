"""Video payloads decoded safely with PyAV: limits checked from the headers first, frames streamed small.

`open_video` probes a payload (MP4/MOV, WebM/Matroska, Ogg, AVI, MPEG-PS) against `VideoLimits` before
any frame is decoded; `iter_frames` then streams its frames, scaled down by FFmpeg, and checks the limits
again on what is actually decoded, so a lying header costs at most the limits. Every failure is a
`VideoRejected` with a reason code:

- `empty_video`, `video_too_large`: the payload's byte count;
- `corrupt_video`: the container cannot be parsed, or too many packets fail to decode;
- `truncated_video`: the payload ends before the container does (an MP4 box or AVI RIFF chunk runs past
  the last byte, or decoding ends well before the declared duration at the end of the bytes);
- `no_video_stream`, `unsupported_codec` (not in `allowed_codecs`, or no decoder), `video_too_long`;
- `video_bomb`: a frame size, frame count or stream count past the limits.

A truncated MPEG-PS stream cut at a pack boundary is a valid shorter stream: it cannot be told apart.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import BinaryIO

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from mmrecipe.audio.decoding import declared_duration_s

# Exceptions PyAV (FFmpeg) raises on malformed input.
DECODE_ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, ValueError, OSError, EOFError, IndexError)
DEFAULT_CODECS = "h264,hevc,vp8,vp9,av1,mpeg1video,mpeg2video,mpeg4,theora,mjpeg"
MAX_PLAUSIBLE_FPS = 120
# Per core: one scaling context per stream, FFmpeg's fast bilinear scaler, and no decoder threads (the engine
# runs a worker process per core; frame threads only add CPU). See benchmarks/video_stage_results.md.
INTERPOLATION = "FAST_BILINEAR"
THREAD_TYPE = "NONE"
TRUNCATION_TAIL = 0.02  # decoding that stops within the last 2% of the bytes, short of the duration: truncated


@dataclass(frozen=True)
class VideoLimits:
    """What a video payload may be before it is decoded (bytes, streams, codec) and while it is."""

    max_bytes: int = 256 << 20
    max_duration_s: float = 600.0
    max_pixels: int = 1920 * 1088  # per frame (width x height)
    max_frames: int = 60 * 600  # decoded or declared
    max_streams: int = 8
    allowed_codecs: tuple[str, ...] = tuple(DEFAULT_CODECS.split(","))
    max_bad_packet_fraction: float = 0.02
    min_decoded_fraction: float = 0.9  # of the declared duration, else truncated (or corrupt)


class VideoRejected(Exception):
    """A video that cannot be used: `reason` is a snake_case code, `detail` says what was seen."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class VideoInfo:
    """What a video's container declares: format, codec, frame size, rate, duration and its audio."""

    container: str
    codec: str
    width: int
    height: int
    fps: float
    duration_s: float | None
    has_audio: bool


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its time in seconds and its pixels (RGB uint8, scaled)."""

    index: int
    time: float
    rgb: np.ndarray


def _mp4_truncated(f: BinaryIO, size: int) -> str | None:
    """Where an ISO-BMFF (MP4/MOV) file's top-level boxes run past its end, if they do."""
    pos = 0
    while pos + 8 <= size:
        f.seek(pos)
        head = f.read(16)
        box, kind = struct.unpack(">I4s", head[:8])
        if box == 1 and len(head) == 16:
            box = struct.unpack(">Q", head[8:16])[0]
        if box == 0:  # the last box runs to the end of the file
            return None
        if box < 8:
            return None  # not a box chain we understand: let FFmpeg judge
        if pos + box > size:
            return f"MP4 box {kind.decode('latin-1')!r} at byte {pos} declares {box} bytes, {size - pos} remain"
        pos += box
    return None


def _container_truncated(f: BinaryIO, size: int) -> str | None:
    """A byte-level truncation finding for containers that declare their own length (MP4/MOV, AVI)."""
    f.seek(0)
    head = f.read(12)
    if head[4:8] == b"ftyp":
        return _mp4_truncated(f, size)
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        declared = struct.unpack("<I", head[4:8])[0] + 8
        if declared > size:
            return f"AVI RIFF chunk declares {declared} bytes, the payload has {size}"
    return None


def _text(error: BaseException) -> str:
    """An error's message as for bytes input: FFmpeg names a file input (a scratch file, a new path per run)."""
    name = getattr(error, "filename", None)
    return str(error).replace(name, "<none>") if isinstance(name, str) and name else str(error)


def payload_size(payload: bytes | str) -> int:
    """The byte count of a payload given as bytes or as the path of a file holding it."""
    return len(payload) if isinstance(payload, bytes) else os.path.getsize(payload)


def open_video(
    payload: bytes | str, limits: VideoLimits = VideoLimits()
) -> tuple[av.container.InputContainer, VideoInfo]:
    """The opened container and its declared facts, once every header-level limit passed (else VideoRejected).

    `payload` is the bytes, or the path of a local file holding them (`payload.VideoRecord.spool`): a file is
    read by FFmpeg as it decodes, so memory does not grow with the video's length."""
    size = payload_size(payload)
    if not size:
        raise VideoRejected("empty_video", "the HTTP response body is 0 bytes")
    if size > limits.max_bytes:
        raise VideoRejected("video_too_large", f"{size} bytes > limit {limits.max_bytes}")
    with io.BytesIO(payload) if isinstance(payload, bytes) else open(payload, "rb") as f:
        truncated = _container_truncated(f, size)
    if truncated:
        raise VideoRejected("truncated_video", truncated)
    try:
        container = av.open(io.BytesIO(payload) if isinstance(payload, bytes) else payload, mode="r")
    except DECODE_ERRORS as e:
        detail = f"the container cannot be parsed: {type(e).__name__}: {_text(e)}"
        raise VideoRejected("corrupt_video", detail) from None
    try:
        return container, _check_header(container, limits)
    except BaseException:
        container.close()
        raise


def _check_header(container: av.container.InputContainer, limits: VideoLimits) -> VideoInfo:
    fmt = container.format.name
    if len(container.streams) > limits.max_streams:
        raise VideoRejected("video_bomb", f"{len(container.streams)} streams > limit {limits.max_streams}")
    if not container.streams.video:
        raise VideoRejected("no_video_stream", f"the {fmt} container holds no video stream")
    stream = container.streams.video[0]
    cc = stream.codec_context
    codec = cc.name if cc is not None else "unknown"
    if codec not in limits.allowed_codecs:
        allowed = ",".join(limits.allowed_codecs)
        raise VideoRejected("unsupported_codec", f"video codec {codec!r} in {fmt} is not one of {allowed}")
    width, height = int(cc.width or 0), int(cc.height or 0)
    if width * height > limits.max_pixels:
        raise VideoRejected("video_bomb", f"{width}x{height} frames > {limits.max_pixels} pixels")
    if stream.frames and stream.frames > limits.max_frames:
        raise VideoRejected("video_bomb", f"{stream.frames} frames declared > limit {limits.max_frames}")
    duration = declared_duration_s(container, stream)
    if duration is not None and duration > limits.max_duration_s:
        raise VideoRejected("video_too_long", f"declares {duration:.1f} s > max {limits.max_duration_s:g} s")
    rate = next((r for r in (stream.average_rate, stream.guessed_rate) if _plausible(r)), Fraction(25))
    return VideoInfo(fmt, codec, width, height, float(rate), duration, bool(container.streams.audio))


def _plausible(rate: Fraction | None) -> bool:
    """Whether a declared frame rate looks like one (Ogg and some muxers declare their time base, e.g. 1000)."""
    return rate is not None and 1 <= rate <= MAX_PLAUSIBLE_FPS


def scaled_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(width, height) with the longer side at most `side`, aspect kept, both even and >= 2."""
    scale = min(1.0, side / max(width, height, 1))
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


def iter_frames(
    container: av.container.InputContainer, info: VideoInfo, side: int, payload_bytes: int, limits: VideoLimits
) -> Iterator[Frame]:
    """Every frame of the first video stream as RGB scaled to `side`, checked against the limits as it decodes."""
    stream = container.streams.video[0]
    stream.thread_type = THREAD_TYPE
    width, height = scaled_size(info.width, info.height, side)
    scaler = VideoReformatter()  # one scaling context for the stream (`to_ndarray(width=...)` builds one per frame)
    packets = bad = index = 0
    last_pos, last_time = 0, 0.0
    try:
        for packet in container.demux(stream):
            packets += 1
            if packet.pos is not None and packet.pos >= 0:
                last_pos = max(last_pos, packet.pos + packet.size)
            try:
                frames = packet.decode()
            except av.FFmpegError:
                bad += 1
                continue
            for frame in frames:
                if frame.width * frame.height > limits.max_pixels:
                    raise VideoRejected("video_bomb", f"a {frame.width}x{frame.height} frame > {limits.max_pixels} px")
                time = float(frame.time) if frame.time is not None else index / info.fps
                if index >= limits.max_frames:
                    raise VideoRejected("video_bomb", f"more than {limits.max_frames} frames decoded")
                if time > limits.max_duration_s:  # long by its frame count too, else its timestamps jumped
                    long = index / info.fps > limits.max_duration_s
                    detail = f"a frame at {time:.1f} s (> {limits.max_duration_s:g} s) after {index} frames"
                    raise VideoRejected("video_too_long" if long else "corrupt_video", detail)
                rgb = scaler.reformat(frame, width, height, "rgb24", interpolation=INTERPOLATION).to_ndarray()
                last_time = time
                yield Frame(index, time, rgb)
                index += 1
    except DECODE_ERRORS as e:
        raise VideoRejected("corrupt_video", f"demuxing failed after {packets} packets: {_text(e)}") from None
    if bad > limits.max_bad_packet_fraction * max(packets, 1):
        raise VideoRejected("corrupt_video", f"{bad} of {packets} {info.codec} packets failed to decode")
    if index == 0:
        raise VideoRejected("corrupt_video", f"the {info.codec} stream decodes to 0 frames")
    declared = info.duration_s
    short = declared and last_time + 2 / info.fps < limits.min_decoded_fraction * declared
    if short:
        at_end = last_pos >= (1 - TRUNCATION_TAIL) * payload_bytes
        detail = f"frames end at {last_time:.2f} s of {declared:.2f} s declared; packets read to byte {last_pos}"
        raise VideoRejected("truncated_video" if at_end else "corrupt_video", f"{detail} of {payload_bytes}")
    if declared and _plausible(stream.average_rate) and index < limits.min_decoded_fraction * declared * info.fps:
        detail = f"{index} frames decoded, {declared * info.fps:.0f} expected ({declared:.2f} s at {info.fps:g} fps)"
        raise VideoRejected("corrupt_video", detail)
