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
from mmrecipe.engine import LocalEngine
from mmrecipe.stage_output import REJECTS, committed_parts, read_stage_table
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


def _published(storage: Storage) -> dict[str, bytes]:
    trees = ("data", REJECTS)
    return {u: storage.read_bytes(u) for t in trees for u in committed_parts(storage, "transcribed_audio", "d1", t)}


def _table(storage: Storage) -> tuple[pa.Table, pa.Table]:
    return tuple(read_stage_table(storage, "transcribed_audio", "d1", tree) for tree in ("data", REJECTS))


ASR = TranscriberSettings(default_model_dir(), model_name="tiny.en")


def test_shard_passes_publish_the_same_table_whatever_the_shard_size_and_workers(
    drop: tuple[Storage, list[dict]],
) -> None:
    storage, _ = drop
    outcomes = storage.uri("transcribed_audio", "side", "d1", "clip_outcomes")
    tables, runs, parts = {}, {}, {}
    for size, workers in ((64 << 20, 1), (200_000, 1), (1, 1), (1, 2)):
        storage.delete_dir(outcomes)  # every run transcribes
        runs[size, workers] = run_audio_stage(LocalEngine(workers), storage, "d1", SETTINGS, ASR, size)
        tables[size, workers], parts[size, workers] = _table(storage), _published(storage)
        assert not runs[size, workers].reused
    assert all(t == tables[64 << 20, 1] for t in tables.values())  # kept rows and rejects, in record order
    assert parts[1, 1] == parts[1, 2]  # the same plan in 1 or 2 processes: the same part bytes
    assert runs[64 << 20, 1].run.shards_total == 1
    assert 1 < runs[200_000, 1].run.shards_total < len(CASES)
    assert runs[1, 1].run.shards_total == runs[1, 2].run.shards_total == len(CASES)
    counts = runs[1, 2].run.output.counts
    assert (counts.total, counts.kept, sum(counts.rejected.values())) == (len(CASES), 2, 7)
    assert counts.dropped == {"too_little_speech": 2}
    assert runs[1, 2].stats.durations == runs[64 << 20, 1].stats.durations
    steps = runs[64 << 20, 1].run.steps
    assert steps["read"].rejected == {"http_error": 1} and steps["speech_detection"].dropped == {"too_little_speech": 2}
    assert steps["decode"].rejected == {"empty_payload": 1, "undecodable": 2, "no_samples": 1, "too_short": 1,
                                        "too_long": 1}  # fmt: skip
    assert steps["asr"].seconds > 0 and steps["dedup"].seen == 2

    again = run_audio_stage(LocalEngine(1), storage, "d1", SETTINGS, ASR, 1)
    assert again.reused and _published(storage) == parts[1, 1]  # stored clip outcomes: no ASR, same bytes
    assert len(storage.list_files(outcomes)) == len(CASES)  # one file per shard of the last plan
