"""Speech regions from silero VAD: real speech is found, silence, noise and tones are not."""

from pathlib import Path

import numpy as np
import pytest

from mmrecipe.audio.calibration import default_calibration_dir
from mmrecipe.audio.decoding import TARGET_RATE, decode_audio
from mmrecipe.audio.speech_detection import SpeechRegions, VadSettings, detect_speech

SPEECH = Path(default_calibration_dir())
RNG = np.random.default_rng(20231)


@pytest.mark.parametrize("name", sorted(p.name for p in SPEECH.glob("*.flac")))
def test_real_speech_is_mostly_speech(name: str) -> None:
    samples = decode_audio((SPEECH / name).read_bytes()).samples
    regions = detect_speech(samples)
    assert regions.spans, name
    assert regions.speech_ratio > 0.9
    assert all(0 <= s < e <= samples.size for s, e in regions.spans)
    assert list(regions.spans) == sorted(regions.spans)


def test_speech_between_silences_is_located() -> None:
    speech = decode_audio((SPEECH / "ss01-0880.flac").read_bytes()).samples
    gap = np.zeros(5 * TARGET_RATE, np.float32)
    regions = detect_speech(np.concatenate([gap, speech, gap]))
    start, end = regions.spans[0][0] / TARGET_RATE, regions.spans[-1][1] / TARGET_RATE
    assert 4.5 < start < 5.5 and 7.5 < end < 8.5
    assert regions.speech_ratio == pytest.approx(regions.speech_s / 12.99)
    assert 0.15 < regions.speech_ratio < 0.3


NOT_SPEECH = [
    ("digital silence", np.zeros(3 * TARGET_RATE, np.float32)),
    ("white noise", RNG.normal(0, 0.15, 3 * TARGET_RATE).astype(np.float32)),
    ("a 440 Hz tone", (0.3 * np.sin(2 * np.pi * 440 * np.arange(3 * TARGET_RATE) / TARGET_RATE)).astype(np.float32)),
    ("nothing", np.zeros(0, np.float32)),
]


@pytest.mark.parametrize(("case", "samples"), NOT_SPEECH, ids=[c[0] for c in NOT_SPEECH])
def test_non_speech_has_no_speech_regions(case: str, samples: np.ndarray) -> None:
    regions = detect_speech(samples)
    assert regions == SpeechRegions((), samples.size)
    assert regions.speech_ratio == 0.0 and regions.speech_s == 0.0


def test_long_speech_is_split_into_regions_that_fit_a_whisper_window() -> None:
    speech = decode_audio((SPEECH / "ss01-0870.flac").read_bytes()).samples
    regions = detect_speech(np.tile(speech, 6), VadSettings(max_region_s=10.0))  # 42.6 s of speech
    assert len(regions.spans) >= 5
    assert max(e - s for s, e in regions.spans) <= 10 * TARGET_RATE
