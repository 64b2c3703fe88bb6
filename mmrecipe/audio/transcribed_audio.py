"""transcribed_audio rows: one per kept audio clip of a drop, with its transcript, segments and audio facts.

`transcribe_records` streams a drop's audio records (raw_crawl rows) through decode → VAD →
batched Whisper → transcript filters, and yields exactly one outcome per record: a kept row,
a drop (policy: no speech, low confidence, hallucination, language) or a reject (bad input:
unreadable record, HTTP error, empty, corrupt, too short or too long).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from mmrecipe.audio.decoding import AudioRejected, DecodedAudio, DecodeLimits, decode_audio
from mmrecipe.audio.speech_detection import SpeechRegions, VadSettings, detect_speech
from mmrecipe.audio.transcript_filters import TranscriptFilterSettings, text_language, transcript_verdict
from mmrecipe.audio.transcription import Transcriber, Transcription
from mmrecipe.stage_output import PROVENANCE_COLUMNS, PROVENANCE_FIELDS
from mmrecipe.warc_index import RecordReader

SEGMENT_TYPE = pa.struct(
    [
        pa.field("start", pa.float64()),
        pa.field("end", pa.float64()),
        pa.field("text", pa.string()),
        pa.field("avg_logprob", pa.float64()),
        pa.field("no_speech_prob", pa.float64()),
    ]
)
SCHEMA = pa.schema(
    [
        *PROVENANCE_FIELDS,
        pa.field("url", pa.string()),
        pa.field("duration_s", pa.float64()),
        pa.field("sample_rate", pa.int32()),
        pa.field("channels", pa.int32()),
        pa.field("codec", pa.string()),
        pa.field("transcript", pa.string()),
        pa.field("segments", pa.list_(SEGMENT_TYPE)),
        pa.field("language", pa.string()),
        pa.field("language_probability", pa.float64()),
        pa.field("model", pa.string()),
        pa.field("speech_ratio", pa.float64()),
        pa.field("dedup_cluster", pa.string()),
    ]
)
INPUT_COLUMNS = [*PROVENANCE_COLUMNS, "warc_length", "target_uri", "http_status", "mime_type", "payload_sha256"]
DURATION_BUCKETS: tuple[tuple[float, str], ...] = (
    (1.0, "<1 s"),
    (5.0, "1–5 s"),
    (30.0, "5–30 s"),
    (300.0, "30 s–5 min"),
    (1800.0, "5–30 min"),
    (float("inf"), "≥30 min"),
)


@dataclass(frozen=True)
class AudioStageSettings:
    """Every threshold of the stage: decode limits, VAD, the speech filter and the transcript filters."""

    limits: DecodeLimits = field(default_factory=DecodeLimits)
    vad: VadSettings = field(default_factory=VadSettings)
    filters: TranscriptFilterSettings = field(default_factory=TranscriptFilterSettings)
    min_speech_s: float = 0.5
    min_speech_ratio: float = 0.1


@dataclass
class ClipOutcome:
    """What happened to one audio record: kept (with its row), dropped or rejected (with reason)."""

    prov: dict[str, Any]
    outcome: str  # "kept", "dropped" or "rejected"
    reason: str = ""
    detail: str = ""
    row: dict[str, Any] | None = None


@dataclass
class AudioStats:
    """Seconds of audio in and kept, the duration histogram and where compute time went."""

    in_seconds: float = 0.0
    kept_seconds: float = 0.0
    decode_s: float = 0.0
    vad_s: float = 0.0
    asr_s: float = 0.0
    durations: Counter[str] = field(default_factory=Counter)

    @property
    def compute_s(self) -> float:
        return self.decode_s + self.vad_s + self.asr_s

    @property
    def rtf(self) -> float:
        """Real-time factor: compute seconds per second of decoded audio."""
        return self.compute_s / self.in_seconds if self.in_seconds else 0.0

    def add_duration(self, seconds: float) -> None:
        self.in_seconds += seconds
        self.durations[next(label for bound, label in DURATION_BUCKETS if seconds < bound)] += 1

    def merge(self, other: AudioStats) -> None:
        """Add another shard's totals and timings to these."""
        self.in_seconds += other.in_seconds
        self.kept_seconds += other.kept_seconds
        self.decode_s += other.decode_s
        self.vad_s += other.vad_s
        self.asr_s += other.asr_s
        self.durations.update(other.durations)

    def histogram_rows(self) -> list[dict[str, Any]]:
        """The duration histogram in bucket order, as rows for a markdown table."""
        return [{"duration": label, "clips": int(self.durations[label])} for _, label in DURATION_BUCKETS]


@dataclass
class _Clip:
    """A clip on its way through ASR: provenance and audio facts (its samples live only in the ASR queue)."""

    prov: dict[str, Any]
    url: str | None
    duration_s: float
    sample_rate: int
    channels: int
    codec: str
    speech_ratio: float


def prepare_clip(
    prov: dict[str, Any], payload: bytes, settings: AudioStageSettings, stats: AudioStats
) -> ClipOutcome | tuple[DecodedAudio, SpeechRegions]:
    """(decoded audio, speech regions) of a payload, or the outcome of a clip that goes no further."""
    started = time.perf_counter()
    try:
        audio = decode_audio(payload, settings.limits)
    except AudioRejected as e:
        if e.duration_s is not None:
            stats.add_duration(e.duration_s)
        return ClipOutcome(prov, "rejected", e.reason, e.detail)
    finally:
        stats.decode_s += time.perf_counter() - started
    stats.add_duration(audio.duration_s)
    started = time.perf_counter()
    regions = detect_speech(audio.samples, settings.vad)
    stats.vad_s += time.perf_counter() - started
    if regions.speech_s < settings.min_speech_s or regions.speech_ratio < settings.min_speech_ratio:
        detail = f"{regions.speech_s:.2f} s of speech in {audio.duration_s:.2f} s ({regions.speech_ratio:.0%})"
        return ClipOutcome(prov, "dropped", "too_little_speech", detail)
    return audio, regions


def transcribe_records(
    reader: RecordReader,
    records: Iterable[Mapping[str, Any]],
    transcriber: Transcriber,
    settings: AudioStageSettings = AudioStageSettings(),
    stats: AudioStats | None = None,
) -> Iterator[ClipOutcome]:
    """One outcome per raw_crawl audio record, kept rows in input order (before transcript post-processing)."""
    stats = stats if stats is not None else AudioStats()
    early: list[ClipOutcome] = []

    def asr_inputs() -> Iterator[tuple[_Clip, np.ndarray, SpeechRegions]]:
        for rec in records:
            prov = {c: rec[c] for c in [*PROVENANCE_COLUMNS, "warc_length"]}
            try:
                record = reader.read(rec["warc_path"], rec["warc_offset"], rec["warc_length"])
            except ValueError as e:
                early.append(ClipOutcome(prov, "rejected", "unreadable_record", str(e)))
                continue
            if record.http_status is not None and not 200 <= record.http_status < 300:
                early.append(ClipOutcome(prov, "rejected", "http_error", f"HTTP status {record.http_status}"))
                continue
            prepared = prepare_clip(prov, record.payload, settings, stats)
            if isinstance(prepared, ClipOutcome):
                early.append(prepared)
                continue
            audio, regions = prepared
            clip = _Clip(
                prov, rec.get("target_uri"), audio.duration_s, audio.sample_rate, audio.channels, audio.codec,
                regions.speech_ratio,
            )  # fmt: skip
            yield clip, audio.samples, regions

    asr_before = transcriber.compute_s
    for clip, result in transcriber.transcribe(asr_inputs()):
        yield from early
        early.clear()
        stats.asr_s = transcriber.compute_s - asr_before
        yield _outcome(clip, result, transcriber, settings, stats)
    yield from early
    stats.asr_s = transcriber.compute_s - asr_before


def _outcome(
    clip: _Clip, result: Transcription, transcriber: Transcriber, settings: AudioStageSettings, stats: AudioStats
) -> ClipOutcome:
    text = result.text
    language, probability = result.language, result.language_probability
    if probability is None:  # an English-only model says "en" for everything: identify the text instead
        language, probability = text_language(text)
    verdict = transcript_verdict(
        text, result.avg_logprob, result.no_speech_prob, language, probability, settings.filters
    )
    if verdict:
        return ClipOutcome(clip.prov, "dropped", verdict[0], verdict[1])
    stats.kept_seconds += clip.duration_s
    row = {
        **{c: clip.prov[c] for c in PROVENANCE_COLUMNS},
        "url": clip.url,
        "duration_s": round(clip.duration_s, 4),
        "sample_rate": clip.sample_rate,
        "channels": clip.channels,
        "codec": clip.codec,
        "transcript": text,
        "segments": [asdict(s) for s in result.segments],
        "language": language,
        "language_probability": round(float(probability), 4),
        "model": transcriber.settings.name,
        "speech_ratio": round(clip.speech_ratio, 4),
        "dedup_cluster": None,
    }
    return ClipOutcome(clip.prov, "kept", row=row)
