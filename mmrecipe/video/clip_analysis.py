"""One video record's clips: decode → shots → clips → keyframes, pHash, motion, NSFW and a timed transcript.

`analyse_video` is a pure function of one payload (plus the shared models it is handed), so it runs the
same inline or inside a shard function. It decodes once, scaled to `analysis_side`, and keeps only small
state per frame (the content detector's last frame, the previous grey frame for motion) plus, at
`keyframe_fps`, a JPEG and a 32x32 pHash input: memory grows with the keyframe count, not with pixels.
The clip MP4 of a kept clip is encoded later (`clip_encoding`), only for clips that survive dedup.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from mmrecipe.audio.decoding import AudioRejected, DecodeLimits, decode_audio
from mmrecipe.audio.speech_detection import SpeechRegions, detect_speech
from mmrecipe.audio.transcribed_audio import AudioStageSettings
from mmrecipe.audio.transcript_filters import text_language, transcript_verdict
from mmrecipe.audio.transcript_postprocessing import redact_row
from mmrecipe.audio.transcription import Transcriber, Transcription, weighted_language
from mmrecipe.images.phash import phash_batch, reduced_phash_input, to_int64
from mmrecipe.video.decoding import VideoInfo, VideoLimits, iter_frames, open_video, payload_size
from mmrecipe.video.shots import ContentShots, ShotSettings, clip_spans

AUDIO_RATE = 16_000
JPEG_QUALITY = 85
MOTION_SIDE = 64  # grey frames this wide measure motion


class Scorer(Protocol):
    """An NSFW scorer of RGB images (`mmrecipe.images.image_filters.NsfwScorer`)."""

    def score(self, image: Image.Image) -> float: ...


@dataclass(frozen=True)
class ClipSettings:
    """Everything that decides a video's clips and their features."""

    limits: VideoLimits = field(default_factory=VideoLimits)
    shots: ShotSettings = field(default_factory=ShotSettings)
    analysis_side: int = 256  # frames are decoded this small for shots, motion and keyframes
    keyframe_fps: float = 2.0  # keyframe candidates kept per second
    keyframes_per_clip: int = 3  # at 1/4, 1/2 and 3/4 of the clip; the middle one is the clip's pHash
    audio: AudioStageSettings = field(default_factory=AudioStageSettings)
    asr_full_windows: bool = True  # Whisper windows of 30 s for video speech (see `transcribe_clips`)


@dataclass
class Keyframe:
    """A candidate keyframe: its time, JPEG and pHash input."""

    time: float
    jpeg: bytes
    grey: np.ndarray


@dataclass
class Clip:
    """One clip of a video: its span, keyframes, pHashes, motion, NSFW score and transcript."""

    index: int
    start: float
    end: float
    keyframe_times: list[float]
    keyframe_phashes: list[int]  # int64 form
    keyframe_jpegs: list[bytes]
    motion: float  # mean absolute grey-level change between frames, 0-1
    nsfw_score: float | None = None  # NudeNet's score of the middle keyframe
    transcript: str = ""
    segments: list[dict[str, Any]] = field(default_factory=list)
    transcript_status: str = "no_audio"  # kept, no_audio, no_speech, or a transcript filter's reason
    pii: dict[str, int] = field(default_factory=dict)

    @property
    def phash(self) -> int:
        return self.keyframe_phashes[len(self.keyframe_phashes) // 2]

    @property
    def keyframe_jpeg(self) -> bytes:
        """The middle keyframe (the clip's thumbnail and pHash)."""
        return self.keyframe_jpegs[len(self.keyframe_jpegs) // 2]

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class VideoAnalysis:
    """What one video record yields: its declared facts, decoded length, cuts and clips, and where time went."""

    info: VideoInfo
    frames: int
    duration_s: float
    cuts: list[float]
    clips: list[Clip]
    seconds: dict[str, float]


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=JPEG_QUALITY, optimize=False)
    return buf.getvalue()


def _grey_small(rgb: np.ndarray) -> np.ndarray:
    step = max(1, rgb.shape[1] // MOTION_SIDE)
    return rgb[::step, ::step].mean(axis=2, dtype=np.float32)


def analyse_video(
    payload: bytes | str,
    settings: ClipSettings = ClipSettings(),
    scorer: Scorer | None = None,
    transcriber: Transcriber | None = None,
) -> VideoAnalysis:
    """The clips of one video payload (bytes, or a file's path) with their features (`VideoRejected` if bad)."""
    started = time.perf_counter()
    container, info = open_video(payload, settings.limits)
    shots = ContentShots(info.fps, settings.shots)
    open_shot = _OpenShot()
    clips: list[Clip] = []
    prev: np.ndarray | None = None
    next_key, last_time, n = 0.0, 0.0, 0
    with container:
        for frame in iter_frames(container, info, settings.analysis_side, payload_size(payload), settings.limits):
            shots.push(frame.index, frame.time, frame.rgb)
            grey = _grey_small(frame.rgb)
            if prev is not None:
                open_shot.motion.append((frame.time, float(np.abs(grey - prev).mean()) / 255))
            prev = grey
            if frame.time >= next_key:
                image = Image.fromarray(frame.rgb)
                open_shot.keyframes.append(Keyframe(frame.time, _jpeg(frame.rgb), reduced_phash_input(image)))
                next_key = frame.time + 1 / settings.keyframe_fps
            last_time, n = frame.time, frame.index + 1
            while len(shots.cuts) > open_shot.cuts_done:  # a shot ended: its clips are final, its frames go
                clips += open_shot.close(shots.cuts[open_shot.cuts_done], shots.cuts, len(clips), settings)
    end = round(last_time + 1 / info.fps, 4)
    clips += open_shot.close(end, shots.cuts, len(clips), settings)
    seconds = {"decode_shots_keyframes": time.perf_counter() - started}
    if scorer is not None:
        t = time.perf_counter()
        for clip in clips:  # the middle keyframe (NudeNet costs ~0.1-0.3 s per image on a shared core)
            clip.nsfw_score = round(float(scorer.score(Image.open(io.BytesIO(clip.keyframe_jpeg)))), 4)
        seconds["nsfw"] = time.perf_counter() - t
    if transcriber is not None and info.has_audio:
        t = time.perf_counter()
        transcribe_clips(payload, clips, transcriber, settings)
        seconds["audio"] = time.perf_counter() - t
    return VideoAnalysis(info, n, end, sorted(shots.cuts), clips, seconds)


@dataclass
class _OpenShot:
    """The keyframes and frame differences of the shot being decoded: memory bounded by the longest shot."""

    start: float = 0.0
    cuts_done: int = 0
    keyframes: list[Keyframe] = field(default_factory=list)
    motion: list[tuple[float, float]] = field(default_factory=list)  # (frame time, change from the previous)

    def close(self, end: float, cuts: list[float], first_index: int, settings: ClipSettings) -> list[Clip]:
        """The clips of [start, end) (split at `max_clip_s`); keeps only what belongs after `end`."""
        self.cuts_done += 1
        if end <= self.start:
            return []
        spans = clip_spans([], end, settings.shots, start=self.start)
        clips = [
            _clip(first_index + i, s, e, self.keyframes, self.motion, cuts, settings) for i, (s, e) in enumerate(spans)
        ]
        self.keyframes = [k for k in self.keyframes if k.time >= end] or self.keyframes[-1:]
        self.motion = [m for m in self.motion if m[0] >= end]
        self.start = end
        return clips


def _clip(
    index: int,
    start: float,
    end: float,
    keyframes: list[Keyframe],
    motion: list[tuple[float, float]],
    cuts: list[float],
    settings: ClipSettings,
) -> Clip:
    """A clip's keyframes (the candidates nearest 1/4, 1/2, 3/4 of its span) and motion (cut frames excluded)."""
    inside = [k for k in keyframes if start <= k.time < end] or [min(keyframes, key=lambda k: abs(k.time - start))]
    n = settings.keyframes_per_clip
    targets = [start + (end - start) * (i + 1) / (n + 1) for i in range(n)]
    chosen = [min(inside, key=lambda k: (abs(k.time - t), k.time)) for t in targets]
    hashes = phash_batch(np.stack([k.grey for k in chosen]))
    moves = [m for t, m in motion if start < t < end and t not in cuts]
    return Clip(
        index=index,
        start=start,
        end=end,
        keyframe_times=[round(k.time, 4) for k in chosen],
        keyframe_phashes=[int(to_int64(int(h))) for h in hashes],
        keyframe_jpegs=[k.jpeg for k in chosen],
        motion=round(float(np.mean(moves)) if moves else 0.0, 6),
    )


def transcribe_clips(payload: bytes | str, clips: list[Clip], transcriber: Transcriber, settings: ClipSettings) -> None:
    """The video's audio track through VAD, Whisper, the transcript filters and PII redaction, clip by clip.

    VAD runs once over the whole track; each clip's speech (the regions cut at its span) is its own Whisper
    input, so a clip's transcript holds only what is said inside it, with times in the source video. With
    `asr_full_windows` every window is Whisper's trained 30 s: in the short windows the audio stage may use,
    tiny.en repeated the sample's countdown ("Three, two, one" heard twice in a 3-s clip). The filters judge
    the video as one recording (the clips' texts joined, confidences weighted by speech), as audio does."""
    audio_settings = settings.audio
    limits = DecodeLimits(min_duration_s=0.0, max_duration_s=audio_settings.limits.max_duration_s)
    try:
        audio = decode_audio(payload if isinstance(payload, bytes) else Path(payload).read_bytes(), limits)
    except AudioRejected as e:
        _set_status(clips, f"audio_{e.reason}")
        return
    regions = detect_speech(audio.samples, audio_settings.vad)
    if regions.speech_s < audio_settings.min_speech_s or regions.speech_ratio < audio_settings.min_speech_ratio:
        _set_status(clips, "no_speech")
        return
    if settings.asr_full_windows and transcriber.settings.short_windows:
        transcriber = Transcriber(replace(transcriber.settings, short_windows=False), transcriber.model)
    inputs = [(i, audio.samples, speech_within(regions, c.start, c.end)) for i, c in enumerate(clips)]
    results = [r for _, r in transcriber.transcribe(inputs)]
    heard = [(clip, r) for clip, r in zip(clips, results, strict=True) if r.text]
    if verdict := _video_verdict([r for _, r in heard], audio_settings):
        _set_status(clips, verdict[0])
        return
    _set_status(clips, "no_speech")
    for clip, result in heard:
        segments = [asdict(s) for s in result.segments]
        clean, counts = redact_row({"transcript": result.text, "segments": segments})
        clip.transcript, clip.segments, clip.pii = clean["transcript"], clean["segments"], dict(counts)
        clip.transcript_status = "kept"


def speech_within(regions: SpeechRegions, start_s: float, end_s: float) -> SpeechRegions:
    """The speech regions of a track cut to [start_s, end_s)."""
    lo, hi = round(start_s * AUDIO_RATE), round(end_s * AUDIO_RATE)
    spans = tuple((max(a, lo), min(b, hi)) for a, b in regions.spans if a < hi and b > lo)
    return SpeechRegions(spans, regions.total_samples)


def _video_verdict(results: list[Transcription], settings: AudioStageSettings) -> tuple[str, str] | None:
    """The transcript filters' verdict on a video's clips heard as one recording."""
    text = " ".join(r.text for r in results)
    weights = [sum(s.end - s.start for s in r.segments) or 1e-3 for r in results]
    total = sum(weights) or 1.0
    avg_logprob = sum(w * r.avg_logprob for w, r in zip(weights, results, strict=True)) / total
    no_speech = sum(w * r.no_speech_prob for w, r in zip(weights, results, strict=True)) / total if results else 1.0
    if any(r.language_probability is None for r in results):  # English-only model: identify the text instead
        language, probability = text_language(text) if text else ("", 0.0)
    else:
        language, probability = weighted_language([[(r.language, r.language_probability)] for r in results], weights)
    return transcript_verdict(text, avg_logprob, no_speech, language, probability, settings.filters)


def _set_status(clips: list[Clip], status: str) -> None:
    for clip in clips:
        clip.transcript_status = status
