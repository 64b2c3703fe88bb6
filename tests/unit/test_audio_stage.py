"""transcribed_audio stage logic on a real WARC: each audio record ends kept, dropped or rejected, with a reason."""

import io
import wave
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import soundfile as sf

from mmrecipe.audio.audio_shards import run_audio_stage
from mmrecipe.audio.calibration import default_calibration_dir, load_calibration_set
from mmrecipe.audio.decoding import TARGET_RATE, DecodeLimits
from mmrecipe.audio.transcribed_audio import (
    INPUT_COLUMNS,
    SCHEMA,
    AudioStageSettings,
    AudioStats,
    transcribe_records,
)
from mmrecipe.audio.transcription import Transcriber, TranscriberSettings, default_model_dir
from mmrecipe.audio.wer import word_error_rate
from mmrecipe.crawl_index import index_drop, read_records
from mmrecipe.stage_output import stage_tables_uri
from mmrecipe.storage import Storage
from mmrecipe.warc_index import RecordReader
from tests.warc_fixtures import HttpResponse, warc_bytes

SPEECH = Path(default_calibration_dir())
REFS = {c.name: c.reference for c in load_calibration_set(str(SPEECH))}


def wav(samples: np.ndarray, rate: int = TARGET_RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(samples * 32767, -32768, 32767).astype("<i2").tobytes())
    return buf.getvalue()


def speech(name: str) -> np.ndarray:
    return sf.read(SPEECH / name, dtype="float32")[0]


HOST = "http://audio.example.org/"
# url -> (payload, content type, HTTP status, expected outcome, expected reason)
CASES: dict[str, tuple[bytes, str, int, str, str]] = {
    "ss01-0870.flac": ((SPEECH / "ss01-0870.flac").read_bytes(), "audio/flac", 200, "kept", ""),
    "ss01-0890.wav": (wav(speech("ss01-0890.flac")), "audio/x-wav", 200, "kept", ""),
    "silence.wav": (wav(np.zeros(3 * TARGET_RATE)), "audio/wav", 200, "dropped", "too_little_speech"),
    "noise.wav": (
        wav(np.random.default_rng(20231).normal(0, 0.15, 3 * TARGET_RATE)),
        "audio/wav",
        200,
        "dropped",
        "too_little_speech",
    ),
    "empty.mp3": (b"", "audio/mpeg", 200, "rejected", "empty_payload"),
    "corrupt.ogg": (np.random.default_rng(1).bytes(5000), "audio/ogg", 200, "rejected", "undecodable"),
    "header-only.wav": (wav(np.zeros(0)), "audio/wav", 200, "rejected", "no_samples"),
    "blip.wav": (wav(speech("ss01-0880.flac")[:3200]), "audio/wav", 200, "rejected", "too_short"),
    "podcast.wav": (wav(np.tile(speech("ss01-0930.flac"), 4)), "audio/wav", 200, "rejected", "too_long"),
    "gone.flac": (b"<html>gone</html>", "audio/flac", 404, "rejected", "http_error"),
    "cast.ogg": (b"OggS" + bytes(200), "application/ogg", 200, "rejected", "undecodable"),
}
SETTINGS = AudioStageSettings(limits=DecodeLimits(max_duration_s=12.0))


@pytest.fixture(scope="module")
def drop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Storage, list[dict]]:
    """A lake holding a raw_crawl index of one WARC with every case above, plus one HTML page."""
    root = tmp_path_factory.mktemp("lake")
    storage = Storage(str(root))
    responses = [HttpResponse(HOST + url, body, ctype, status) for url, (body, ctype, status, _, _) in CASES.items()]
    responses.append(HttpResponse(HOST + "index.html", b"<html><body>audio index</body></html>"))
    storage.write_bytes(storage.uri("d1", "a.warc.gz"), warc_bytes(responses))
    assert not index_drop(storage, storage, "d1", ["a.warc.gz"]).counts.rejected
    return storage, read_records(storage, "d1", "audio", columns=INPUT_COLUMNS).to_pylist()


def test_every_audio_record_gets_exactly_one_outcome_with_its_reason(drop: tuple[Storage, list[dict]]) -> None:
    storage, records = drop
    assert len(records) == len(CASES)  # the HTML page is not an input of this stage
    stats = AudioStats()
    transcriber = Transcriber(TranscriberSettings(default_model_dir(), model_name="tiny.en"))
    with RecordReader(storage) as reader:
        outcomes = list(transcribe_records(reader, records, transcriber, SETTINGS, stats))
    url_of = {r["record_id"]: r["target_uri"].removeprefix(HOST) for r in records}
    got = {url_of[o.prov["record_id"]]: (o.outcome, o.reason) for o in outcomes}
    assert len(outcomes) == len(records) == len(got)
    assert got == {url: (case[3], case[4]) for url, case in CASES.items()}
    assert all(o.detail for o in outcomes if o.outcome != "kept")

    kept = {url_of[o.row["record_id"]]: o.row for o in outcomes if o.outcome == "kept"}
    table = pa.Table.from_pylist(list(kept.values()), schema=SCHEMA)  # rows fit the published schema
    assert table.num_rows == 2
    flac, wav_row = kept["ss01-0870.flac"], kept["ss01-0890.wav"]
    assert (flac["codec"], flac["sample_rate"], flac["channels"], flac["duration_s"]) == ("flac", 16000, 1, 7.1)
    assert (wav_row["codec"], wav_row["url"]) == ("pcm_s16le", HOST + "ss01-0890.wav")
    hyps = {"ss01-0870.flac": flac["transcript"], "ss01-0890.flac": wav_row["transcript"]}
    refs = {k: REFS[k] for k in hyps}
    assert word_error_rate(hyps, refs).wer <= 0.10, hyps
    for row in kept.values():
        assert row["language"] == "en" and row["language_probability"] > 0.9
        assert row["model"] == "tiny.en" and row["speech_ratio"] > 0.9
        assert row["segments"] and all(s["end"] > s["start"] for s in row["segments"])
        assert row["segments"][0]["text"] in row["transcript"]
    # hours in: every clip whose duration is known (decoded, or declared by the container of the too-long one)
    assert stats.durations == {"<1 s": 1, "1–5 s": 2, "5–30 s": 3}
    assert stats.in_seconds == pytest.approx(7.1 + 5.3 + 3 + 3 + 0.2 + 4 * 3.29)
    assert stats.kept_seconds == pytest.approx(7.1 + 5.3)
    assert stats.asr_s > 0 and 0 < stats.rtf < 1.0


def test_a_bad_record_span_is_rejected_not_raised(drop: tuple[Storage, list[dict]]) -> None:
    storage, records = drop
    broken = {**records[0], "warc_offset": records[0]["warc_offset"] + 7}
    transcriber = Transcriber(TranscriberSettings(default_model_dir()))
    with RecordReader(storage) as reader:
        [outcome] = list(transcribe_records(reader, [broken], transcriber, SETTINGS))
    assert (outcome.outcome, outcome.reason) == ("rejected", "unreadable_record")
    assert "not one whole record" in outcome.detail


def _published(storage: Storage) -> tuple[bytes, bytes]:
    data, rejects = stage_tables_uri(storage, "transcribed_audio", "d1")
    return storage.read_bytes(data), storage.read_bytes(rejects)


def test_shard_passes_publish_the_same_bytes_whatever_the_shard_size(drop: tuple[Storage, list[dict]]) -> None:
    storage, records = drop
    transcriber = Transcriber(TranscriberSettings(default_model_dir(), model_name="tiny.en"))
    published, results = {}, {}
    for size in (len(records), 4, 1):
        spans = [records[i : i + size] for i in range(0, len(records), size)]
        results[size] = run_audio_stage(storage, "d1", spans, transcriber, SETTINGS)
        published[size] = _published(storage)
        assert results[size].shards == len(spans) and results[size].reused is False  # a new span: transcribed
    assert published[len(records)] == published[4] == published[1]
    counts = results[1].output.counts
    assert (counts.total, counts.kept, sum(counts.rejected.values())) == (len(CASES), 2, 7)
    assert counts.dropped == {"too_little_speech": 2}
    assert results[1].stats.durations == results[len(records)].stats.durations
    again = run_audio_stage(storage, "d1", [records[i : i + 1] for i in range(len(records))], transcriber, SETTINGS)
    assert again.reused is True and _published(storage) == published[1]  # same spans: stored outcomes, no ASR
