"""Decoding web audio payloads: real speech in every container, and every way a payload can be bad."""

import io
import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from mmrecipe.audio import decoding
from mmrecipe.audio.calibration import default_calibration_dir
from mmrecipe.audio.decoding import TARGET_RATE, AudioRejected, DecodeLimits, decode_audio

SPEECH = Path(default_calibration_dir())


def speech_int16(name: str = "ss01-0880.flac") -> np.ndarray:
    """A real LibriVox clip (16 kHz mono) as int16 samples."""
    samples, rate = sf.read(SPEECH / name, dtype="int16")
    assert rate == TARGET_RATE
    return samples


def encode(samples: np.ndarray, fmt: str, codec: str, rate: int, layout: str = "mono") -> bytes:
    """`samples` (16 kHz mono int16) re-encoded with PyAV into container `fmt` / `codec` at `rate` Hz."""
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = TARGET_RATE
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=rate)
        for converted in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(converted):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def wav_bytes(samples: np.ndarray, rate: int = TARGET_RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def reject_reason(payload: bytes, limits: DecodeLimits | None = None) -> tuple[str, str]:
    with pytest.raises(AudioRejected) as err:
        decode_audio(payload, limits or DecodeLimits())
    return err.value.reason, err.value.detail


@pytest.mark.parametrize(
    ("fmt", "codec", "rate", "layout", "expect_codec"),
    [
        ("wav", "pcm_s16le", 16000, "mono", "pcm_s16le"),
        ("wav", "pcm_s16le", 44100, "stereo", "pcm_s16le"),
        ("flac", "flac", 16000, "mono", "flac"),
        ("mp3", "libmp3lame", 22050, "stereo", "mp3float"),
        ("ogg", "libopus", 48000, "mono", "opus"),
    ],
)
def test_real_speech_decodes_to_16k_mono_float_in_every_container(
    fmt: str, codec: str, rate: int, layout: str, expect_codec: str
) -> None:
    original = speech_int16()
    audio = decode_audio(encode(original, fmt, codec, rate, layout))
    assert (audio.sample_rate, audio.channels, audio.codec) == (rate, 2 if layout == "stereo" else 1, expect_codec)
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.duration_s - len(original) / TARGET_RATE) < 0.1  # codec priming/padding only
    assert np.abs(audio.samples).max() <= 1.0
    # the content survives: same loudness as the original speech (lossy codecs and resampling included)
    rms_in = np.sqrt(np.mean((original / 32768.0) ** 2))
    rms_out = np.sqrt(np.mean(audio.samples.astype(np.float64) ** 2))
    assert rms_out == pytest.approx(rms_in, rel=0.15)


def test_16k_mono_pcm_decodes_sample_exact() -> None:
    original = speech_int16()
    audio = decode_audio(wav_bytes(original))
    np.testing.assert_array_equal(audio.samples, original.astype(np.float32) / 32768.0)


def test_bundled_flac_decodes_with_its_source_facts() -> None:
    audio = decode_audio((SPEECH / "ss01-0870.flac").read_bytes())
    assert (audio.container, audio.codec, audio.sample_rate, audio.channels) == ("flac", "flac", 16000, 1)
    assert audio.duration_s == pytest.approx(7.1)


BAD_PAYLOADS = [
    ("zero-length body", b"", DecodeLimits(), "empty_payload"),
    ("random bytes", np.random.default_rng(7).bytes(8192), DecodeLimits(), "undecodable"),
    (
        "an HTML page served as audio",
        b"<!doctype html><html><body>404 Not Found</body></html>",
        DecodeLimits(),
        "undecodable",
    ),
    ("a WAV header without samples", wav_bytes(np.zeros(0, np.int16)), DecodeLimits(), "no_samples"),
    ("0.2 s of speech", wav_bytes(speech_int16()[: TARGET_RATE // 5]), DecodeLimits(), "too_short"),
    ("3 s of speech over a 2 s limit", wav_bytes(speech_int16()), DecodeLimits(max_duration_s=2.0), "too_long"),
    (
        "a body over the byte limit",
        wav_bytes(speech_int16()),
        DecodeLimits(max_payload_bytes=1000),
        "payload_too_large",
    ),
]


@pytest.mark.parametrize(("case", "payload", "limits", "reason"), BAD_PAYLOADS, ids=[c[0] for c in BAD_PAYLOADS])
def test_bad_payloads_are_rejected_with_a_reason(case: str, payload: bytes, limits: DecodeLimits, reason: str) -> None:
    got, detail = reject_reason(payload, limits)
    assert got == reason, f"{case}: {got} ({detail})"
    assert detail


def test_truncated_flac_is_rejected_or_shorter_never_a_crash() -> None:
    full = (SPEECH / "ss01-0870.flac").read_bytes()
    with pytest.raises(AudioRejected) as err:
        decode_audio(full[:64])  # cut inside the STREAMINFO header
    assert err.value.reason in {"undecodable", "no_samples"}
    partial = decode_audio(full[: len(full) // 2])  # cut mid-stream: what is there decodes
    assert 2.0 < partial.duration_s < 7.1


def test_declared_duration_is_checked_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoding started although the container declared a duration over the limit")

    monkeypatch.setattr(decoding.av, "AudioResampler", no_decoding)
    long_speech = np.tile(speech_int16(), 20)  # 60 s; the limit is 2 s
    started = time.perf_counter()
    reason, detail = reject_reason(wav_bytes(long_speech), DecodeLimits(max_duration_s=2.0))
    assert reason == "too_long" and "declares 59.8 s" in detail
    assert time.perf_counter() - started < 1.0


def test_decoding_stops_at_the_limit_when_the_container_declares_no_duration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding, "declared_duration_s", lambda container, stream: None)
    seen: list[int] = []
    real_concatenate = np.concatenate
    monkeypatch.setattr(decoding.np, "concatenate", lambda arrays, *a, **k: seen.append(1) or real_concatenate(arrays))
    long_speech = np.tile(speech_int16(), 20)  # 60 s
    reason, detail = reject_reason(wav_bytes(long_speech), DecodeLimits(max_duration_s=2.0))
    assert reason == "too_long" and "decoded more than 2 s" in detail
    assert not seen  # stopped while streaming: the 60 s were never assembled
