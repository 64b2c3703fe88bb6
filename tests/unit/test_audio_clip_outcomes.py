"""Stored clip outcomes: reused only under the same key, with every outcome and total as it was."""

from dataclasses import replace
from pathlib import Path

import pytest

from mmrecipe.audio.clip_outcomes import load_outcomes, outcomes_key, save_outcomes
from mmrecipe.audio.transcribed_audio import AudioStageSettings, AudioStats, ClipOutcome
from mmrecipe.audio.transcript_filters import TranscriptFilterSettings
from mmrecipe.audio.transcription import TranscriberSettings
from mmrecipe.storage import Storage

RECORDS = [
    {"record_id": f"<urn:uuid:{i}>", "drop": "d", "warc_path": "d/c.warc.gz", "warc_offset": 100 * i,
     "warc_length": 90, "target_uri": f"http://a.example/{i}.flac", "http_status": 200, "mime_type": "audio/flac",
     "payload_sha256": f"{i:064x}"}
    for i in range(3)
]  # fmt: skip
SEGMENT = {"start": 0.0, "end": 2.48, "text": " Chapter one.", "avg_logprob": -0.2512345678901234,
           "no_speech_prob": 0.0123}  # fmt: skip


def _model(tmp_path: Path) -> TranscriberSettings:
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "model.bin").write_bytes(b"weights")
    return TranscriberSettings(model_dir=str(folder))


def _outcomes() -> tuple[list[ClipOutcome], AudioStats]:
    prov = [{c: r[c] for c in ("record_id", "drop", "warc_path", "warc_offset", "warc_length")} for r in RECORDS]
    row = {**{c: prov[0][c] for c in ("record_id", "drop", "warc_path", "warc_offset")},
           "url": RECORDS[0]["target_uri"], "duration_s": 2.5, "sample_rate": 16000, "channels": 1, "codec": "flac",
           "transcript": "Chapter one.", "segments": [SEGMENT], "language": "en", "language_probability": 0.9876,
           "model": "tiny.en", "speech_ratio": 0.8123, "dedup_cluster": None}  # fmt: skip
    outcomes = [
        ClipOutcome(prov[2], "rejected", "undecodable", "no audio stream"),
        ClipOutcome(prov[0], "kept", row=row),
        ClipOutcome(prov[1], "dropped", "too_little_speech", "0.10 s of speech in 3.00 s (3%)"),
    ]
    stats = AudioStats(in_seconds=5.5, kept_seconds=2.5, asr_s=1.25)
    stats.add_duration(2.5)
    return outcomes, stats


def test_outcomes_come_back_in_order_with_rows_and_totals(tmp_path: Path) -> None:
    storage, model = Storage(str(tmp_path / "lake")), _model(tmp_path)
    uri, key = (
        storage.uri("transcribed_audio", "d", "clip_outcomes.parquet"),
        outcomes_key(RECORDS, AudioStageSettings(), model),
    )
    outcomes, stats = _outcomes()
    save_outcomes(storage, uri, key, outcomes, stats)
    loaded, totals = load_outcomes(storage, uri, key, RECORDS)
    assert loaded == outcomes  # order, provenance, reasons, details and the kept row (floats exact)
    assert (totals.in_seconds, totals.kept_seconds, dict(totals.durations)) == (8.0, 2.5, {"1–5 s": 1})
    assert totals.asr_s == 0.0  # timings are not stored: the file is the same for the same key
    first = (tmp_path / "lake" / "transcribed_audio" / "d" / "clip_outcomes.parquet").read_bytes()
    save_outcomes(storage, uri, key, outcomes, replace(stats, asr_s=9.0))
    assert (tmp_path / "lake" / "transcribed_audio" / "d" / "clip_outcomes.parquet").read_bytes() == first


def test_any_change_to_what_the_outcomes_depend_on_changes_the_key(tmp_path: Path) -> None:
    model, settings = _model(tmp_path), AudioStageSettings()
    key = outcomes_key(RECORDS, settings, model)
    assert outcomes_key([dict(r) for r in RECORDS], AudioStageSettings(), _model(tmp_path)) == key
    assert outcomes_key(RECORDS, settings, replace(model, cpu_threads=4, num_workers=2)) == key  # speed only
    changed = [
        outcomes_key([{**RECORDS[0], "payload_sha256": "f" * 64}, *RECORDS[1:]], settings, model),
        outcomes_key(RECORDS[:2], settings, model),
        outcomes_key(RECORDS, replace(settings, min_speech_s=1.0), model),
        outcomes_key(RECORDS, replace(settings, filters=TranscriptFilterSettings(min_avg_logprob=-0.5)), model),
        outcomes_key(RECORDS, settings, replace(model, compute_type="float16")),
        outcomes_key(RECORDS, settings, replace(model, beam_size=1)),
    ]
    (Path(model.model_dir) / "model.bin").write_bytes(b"other weights")  # same path, new files
    changed.append(outcomes_key(RECORDS, settings, model))
    assert key not in changed and len(set(changed)) == len(changed)


@pytest.mark.parametrize("case", ["other key", "other records", "corrupt file", "missing file"])
def test_outcomes_are_not_reused_when_they_may_not_apply(tmp_path: Path, case: str) -> None:
    storage, model = Storage(str(tmp_path / "lake")), _model(tmp_path)
    uri, key = (
        storage.uri("transcribed_audio", "d", "clip_outcomes.parquet"),
        outcomes_key(RECORDS, AudioStageSettings(), model),
    )
    save_outcomes(storage, uri, key, *_outcomes())
    path, records = tmp_path / "lake" / "transcribed_audio" / "d" / "clip_outcomes.parquet", RECORDS
    if case == "other key":
        key = outcomes_key(RECORDS, AudioStageSettings(min_speech_ratio=0.5), model)
    elif case == "other records":
        records = [*RECORDS, {**RECORDS[0], "record_id": "<urn:uuid:new>"}]
    elif case == "corrupt file":
        path.write_bytes(path.read_bytes()[:-20])
    else:
        path.unlink()
    assert load_outcomes(storage, uri, key, records) is None
