"""Audio clips decoded from payload bytes: 16 kHz mono float32 samples plus what the container said.

Decoding is bounded: the container's declared duration is checked before any frame is decoded,
and decoding stops as soon as the decoded audio passes the maximum duration, so a 3-hour track
costs at most `max_duration_s` of samples in memory. Every failure is an `AudioRejected` with a
reason code; nothing here raises anything else for bad input.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import numpy as np

TARGET_RATE = 16_000
# Exceptions PyAV (FFmpeg) raises on malformed input; av.FFmpegError covers InvalidDataError & co.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    av.FFmpegError,
    ValueError,
    OSError,
    EOFError,
    IndexError,
    OverflowError,
    UnicodeDecodeError,
)


@dataclass(frozen=True)
class DecodeLimits:
    """What a clip may be: its payload size and decoded duration bounds, and how many bad packets it may hold."""

    min_duration_s: float = 0.5
    max_duration_s: float = 3600.0
    max_payload_bytes: int = 512 << 20
    max_bad_packet_fraction: float = 0.05


@dataclass
class DecodedAudio:
    """A clip resampled to 16 kHz mono float32, with the source stream's rate, channels and codec."""

    samples: np.ndarray
    sample_rate: int
    channels: int
    codec: str
    container: str

    @property
    def duration_s(self) -> float:
        return len(self.samples) / TARGET_RATE


class AudioRejected(Exception):
    """A clip that cannot be used: `reason` is a snake_case code, `detail` says what was seen."""

    def __init__(self, reason: str, detail: str, duration_s: float | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail
        self.duration_s = duration_s  # the clip's duration when it is known (too short / too long)


def decode_audio(payload: bytes, limits: DecodeLimits = DecodeLimits()) -> DecodedAudio:
    """The clip in `payload` (WAV, FLAC, MP3, Ogg/Vorbis, Ogg/Opus...) as 16 kHz mono float32."""
    if not payload:
        raise AudioRejected("empty_payload", "the HTTP response body is 0 bytes")
    if len(payload) > limits.max_payload_bytes:
        raise AudioRejected("payload_too_large", f"{len(payload)} bytes > limit {limits.max_payload_bytes}")
    try:
        with av.open(io.BytesIO(payload), mode="r") as container:
            return _decode(container, limits)
    except AudioRejected:
        raise
    except _DECODE_ERRORS as e:
        raise AudioRejected("undecodable", f"{type(e).__name__}: {e}") from None


def declared_duration_s(
    container: av.container.InputContainer, stream: av.AudioStream | av.VideoStream
) -> float | None:
    """The duration the container header declares for `stream` (else for itself), if it declares one."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode(container: av.container.InputContainer, limits: DecodeLimits) -> DecodedAudio:
    if not container.streams.audio:
        raise AudioRejected("no_audio_stream", f"{container.format.name} container holds no audio stream")
    stream = container.streams.audio[0]
    declared = declared_duration_s(container, stream)
    if declared is not None and declared > limits.max_duration_s:
        detail = f"container declares {declared:.1f} s > max {limits.max_duration_s:g} s"
        raise AudioRejected("too_long", detail, declared)
    cc = stream.codec_context
    resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_RATE)
    max_samples = int(limits.max_duration_s * TARGET_RATE)
    chunks: list[np.ndarray] = []
    n_samples = packets = bad = 0
    for packet in container.demux(stream):
        packets += 1
        try:
            frames = packet.decode()
        except av.InvalidDataError:
            bad += 1
            continue
        for frame in frames:
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
                n_samples += chunks[-1].shape[0]
        if n_samples > max_samples:
            raise AudioRejected(
                "too_long", f"decoded more than {limits.max_duration_s:g} s (container declared {declared} s)"
            )
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1))
    if bad > max(1.0, limits.max_bad_packet_fraction * packets):  # one bad (e.g. cut-off last) packet is fine
        raise AudioRejected("corrupt_audio", f"{bad} of {packets} {cc.name} packets failed to decode")
    samples = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if samples.size == 0:
        raise AudioRejected("no_samples", f"{container.format.name}/{cc.name} stream decodes to 0 samples")
    if samples.size > max_samples:
        duration = samples.size / TARGET_RATE
        raise AudioRejected("too_long", f"{duration:.1f} s > max {limits.max_duration_s:g} s", duration)
    duration = samples.size / TARGET_RATE
    if duration < limits.min_duration_s:
        raise AudioRejected("too_short", f"{duration:.2f} s < min {limits.min_duration_s:g} s", duration)
    if not np.isfinite(samples).all():
        raise AudioRejected("corrupt_audio", "decoded samples contain NaN or infinity")
    channels = int(cc.layout.nb_channels) if cc.layout is not None else int(cc.channels)
    return DecodedAudio(samples, int(cc.sample_rate), channels, str(cc.name), str(container.format.name))
