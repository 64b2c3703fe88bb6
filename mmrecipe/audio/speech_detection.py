"""Speech regions of a clip: where silero VAD (shipped inside faster-whisper) hears a voice.

The regions drive both the speech filter (clips with too little speech are dropped) and the
ASR chunking (only speech is sent to Whisper, merged into windows of at most 30 s), so the VAD
runs once per clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmrecipe.audio.decoding import TARGET_RATE

if TYPE_CHECKING:  # faster-whisper (and PyAV) load with the first clip, not with the Definitions
    from faster_whisper.vad import VadOptions

WHISPER_WINDOW_S = 30.0


@dataclass(frozen=True)
class VadSettings:
    """Silero VAD parameters (faster-whisper's batched-pipeline defaults, with regions ≤ 30 s)."""

    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 160
    speech_pad_ms: int = 200
    max_region_s: float = WHISPER_WINDOW_S

    def options(self) -> VadOptions:
        from faster_whisper.vad import VadOptions

        return VadOptions(
            threshold=self.threshold,
            min_speech_duration_ms=self.min_speech_ms,
            max_speech_duration_s=self.max_region_s,
            min_silence_duration_ms=self.min_silence_ms,
            speech_pad_ms=self.speech_pad_ms,
        )


@dataclass(frozen=True)
class SpeechRegions:
    """Speech spans of one clip as (start, end) sample indices at 16 kHz, and the clip's length."""

    spans: tuple[tuple[int, int], ...]
    total_samples: int

    @property
    def speech_s(self) -> float:
        return sum(end - start for start, end in self.spans) / TARGET_RATE

    @property
    def speech_ratio(self) -> float:
        return (self.speech_s * TARGET_RATE / self.total_samples) if self.total_samples else 0.0


def detect_speech(samples: np.ndarray, settings: VadSettings = VadSettings()) -> SpeechRegions:
    """The speech regions silero VAD finds in 16 kHz mono float32 `samples`."""
    from faster_whisper.vad import get_speech_timestamps

    if samples.size == 0:
        return SpeechRegions((), 0)
    stamps = get_speech_timestamps(samples, settings.options(), sampling_rate=TARGET_RATE)
    spans = tuple((int(s["start"]), min(int(s["end"]), samples.size)) for s in stamps)
    return SpeechRegions(tuple(s for s in spans if s[1] > s[0]), int(samples.size))
