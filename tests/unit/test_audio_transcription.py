"""Whisper transcription on real speech: WER under a bound, cross-clip batching, long clips, model settings."""

import dataclasses
from pathlib import Path
from typing import Any

import faster_whisper
import numpy as np
import pytest

from mmrecipe.audio import transcription
from mmrecipe.audio.calibration import default_calibration_dir, load_calibration_set, transcribe_calibration_set
from mmrecipe.audio.decoding import TARGET_RATE, decode_audio
from mmrecipe.audio.speech_detection import detect_speech
from mmrecipe.audio.transcription import (
    FULL_WINDOW_FRAMES,
    Transcriber,
    TranscriberSettings,
    default_model_dir,
    encoder_frames,
    load_model,
    weighted_language,
)
from mmrecipe.audio.wer import word_error_rate

pytestmark = pytest.mark.slow  # real Whisper ASR on real speech

WER_BOUND = 0.10  # measured 0.042 with tiny.en int8 on these clips
SETTINGS = TranscriberSettings(default_model_dir(), model_name="tiny.en")
CLIPS = load_calibration_set(default_calibration_dir())


@pytest.mark.parametrize("short_windows", [True, False], ids=["short-windows", "full-30s-windows"])
def test_real_librivox_speech_is_transcribed_under_the_wer_bound(short_windows: bool) -> None:
    transcriber = Transcriber(dataclasses.replace(SETTINGS, short_windows=short_windows))
    report = transcribe_calibration_set(transcriber, CLIPS)
    assert report.skipped == {}
    assert set(report.hypotheses) == {c.name for c in CLIPS}
    assert report.wer.reference_words == 71
    assert report.wer.wer <= WER_BOUND, report.hypotheses
    assert "john dashwood had then leisure" in report.hypotheses["ss01-0870.flac"].lower()
    assert transcriber.windows == len(CLIPS)


def test_batching_across_clips_gives_the_same_transcripts_as_one_at_a_time() -> None:
    one = transcribe_calibration_set(Transcriber(dataclasses.replace(SETTINGS, batch_size=1)), CLIPS)
    batched = Transcriber(dataclasses.replace(SETTINGS, batch_size=8))
    many = transcribe_calibration_set(batched, CLIPS)
    assert many.hypotheses == one.hypotheses
    assert list(many.hypotheses) == [c.name for c in CLIPS]  # input order kept


def test_clips_without_speech_regions_come_back_empty_in_order() -> None:
    speech = decode_audio(CLIPS[1].payload).samples
    silence = np.zeros(3 * TARGET_RATE, np.float32)
    items = [
        ("a", speech, detect_speech(speech)),
        ("b", silence, detect_speech(silence)),
        ("c", speech, detect_speech(speech)),
    ]
    results = list(Transcriber(dataclasses.replace(SETTINGS, batch_size=1)).transcribe(items))
    assert [k for k, _ in results] == ["a", "b", "c"]
    assert results[1][1].segments == [] and results[1][1].text == ""
    assert results[0][1].text == results[2][1].text != ""


def test_a_clip_waiting_for_a_rare_window_length_does_not_hold_back_the_stream() -> None:
    long_clip = decode_audio(CLIPS[0].payload).samples  # 7.1 s: a 10-s encoder window
    short_clip = decode_audio(CLIPS[1].payload).samples  # 3 s: a 5-s encoder window
    consumed = []

    def clips():
        for i in range(12):
            consumed.append(i)
            samples = long_clip if i == 0 else short_clip
            yield i, samples, detect_speech(samples)

    stream = Transcriber(dataclasses.replace(SETTINGS, batch_size=2)).transcribe(clips())
    first_key, first = next(stream)
    assert first_key == 0 and "dashwood" in first.text.lower()
    assert len(consumed) <= 4 * 2 + 1  # yielded long before the input ran out
    rest = list(stream)
    assert [k for k, _ in rest] == list(range(1, 12))
    assert len({r.text for _, r in rest}) == 1  # the same clip gives the same transcript in any batch


def test_a_long_recording_is_split_into_windows_with_timed_segments() -> None:
    gap = np.zeros(TARGET_RATE, np.float32)
    parts = [decode_audio(c.payload).samples for c in CLIPS] * 2
    samples = np.concatenate([x for p in parts for x in (p, gap)])  # ~59 s
    transcriber = Transcriber(SETTINGS)
    [(_, result)] = list(transcriber.transcribe([("long", samples, detect_speech(samples))]))
    assert len(result.segments) >= 2 and transcriber.windows == len(result.segments)
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and result.segments[-1].end <= samples.size / TARGET_RATE + 0.01
    assert all(s.end > s.start and s.text and s.avg_logprob < 0 and 0 <= s.no_speech_prob <= 1 for s in result.segments)
    reference = " ".join(c.reference for c in CLIPS) * 1
    wer = word_error_rate({"long": result.text}, {"long": f"{reference} {reference}"})
    assert wer.wer <= WER_BOUND, result.text
    assert (result.language, result.language_probability) == ("en", None)  # English-only model: no language ID


def test_the_model_is_loaded_once_per_process() -> None:
    first, second = Transcriber(SETTINGS), Transcriber(dataclasses.replace(SETTINGS, batch_size=3))
    assert first.model is second.model is load_model(SETTINGS)
    assert second.load_s < 0.05


@pytest.mark.parametrize(
    ("longest", "short_windows", "frames"),
    [(299, True, 500), (400, True, 500), (401, True, 1000), (2950, True, 3000), (299, False, FULL_WINDOW_FRAMES)],
)
def test_encoder_window_length(longest: int, short_windows: bool, frames: int) -> None:
    assert encoder_frames(longest, short_windows) == frames


def test_device_and_compute_type_reach_whisper_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Production settings (cuda, float16) are what WhisperModel is built with; a recorder stands in for the GPU."""
    gpu = dataclasses.replace(SETTINGS, device="cuda", compute_type="float16", cpu_threads=4)
    assert gpu.whisper_kwargs() == {
        "model_size_or_path": default_model_dir(),
        "device": "cuda",
        "compute_type": "float16",
        "cpu_threads": 4,
        "num_workers": 1,
        "local_files_only": True,
    }
    built: list[dict[str, Any]] = []

    class RecordingWhisperModel:
        def __init__(self, **kwargs: Any) -> None:
            built.append(kwargs)

    monkeypatch.setattr(faster_whisper, "WhisperModel", RecordingWhisperModel)  # load_model imports it on use
    monkeypatch.setattr(transcription, "_MODELS", {})
    model = load_model(gpu)
    assert isinstance(model, RecordingWhisperModel) and built == [gpu.whisper_kwargs()]
    assert load_model(gpu) is model and len(built) == 1  # cached per process


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model_dir": "/nonexistent/whisper-large-v3"}, "holds no CTranslate2 model.bin"),
        ({"device": "tpu"}, "is not one of cpu, cuda, auto"),
        ({"batch_size": 0}, "must be >= 1"),
    ],
)
def test_bad_settings_say_what_to_fix(change: dict[str, Any], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        load_model(dataclasses.replace(SETTINGS, **change))


@pytest.mark.parametrize(
    ("per_window", "weights", "expected"),
    [
        ([[("<|fr|>", 0.9), ("<|en|>", 0.1)], [("<|en|>", 0.8), ("<|fr|>", 0.2)]], [10.0, 5.0], ("fr", 10 / 15)),
        ([[("<|en|>", 0.6), ("<|de|>", 0.4)]], [3.0], ("en", 0.6)),
        ([[("<|en|>", 0.5), ("<|de|>", 0.5)]], [2.0], ("de", 0.5)),  # a tie goes to the first code
        ([], [], ("", 0.0)),
    ],
)
def test_a_multilingual_clip_language_is_the_length_weighted_detection(
    per_window: list, weights: list[float], expected: tuple[str, float]
) -> None:
    """The aggregation of per-window language detections (no multilingual model ships offline to run end to end)."""
    language, probability = weighted_language(per_window, weights)
    assert (language, probability) == (expected[0], pytest.approx(expected[1]))
