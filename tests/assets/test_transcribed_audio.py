"""transcribed_audio materialized on a real instance: the sample drop, bad inputs, dedup across drops, checks."""

import io
import shutil
import wave
from pathlib import Path

import av
import dagster as dg
import numpy as np
import pytest
import soundfile as sf

import mmrecipe.audio.clip_outcomes
from mmrecipe.audio.calibration import default_calibration_dir
from mmrecipe.audio.wer import word_error_rate
from mmrecipe.settings import Settings
from mmrecipe.stage_output import REJECTS, committed_parts, read_stage_table
from mmrecipe.storage import Storage
from sensors.stale_drops import audio_dedup_refresh
from tests.conftest import (
    SampleDemo,
    check_evaluations,
    land_drop,
    last_run_events,
    materialization_metadata,
    materialize_drop,
    metadata_of,
    run_sensor_requests,
)
from tests.warc_fixtures import HttpResponse, warc_bytes

pytestmark = pytest.mark.slow  # real Whisper ASR on several drops

REPO = Path(__file__).resolve().parents[2]
SPEECH = Path(default_calibration_dir())
ASSETS = ("raw_crawl", "transcribed_audio")
CONTRACT = [
    "record_id", "drop", "warc_path", "warc_offset", "url", "duration_s", "sample_rate", "channels", "codec",
    "transcript", "segments", "language", "language_probability", "model", "speech_ratio", "dedup_cluster",
]  # fmt: skip


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations() if e.asset_key == dg.AssetKey(ASSETS[1])}


def tables(settings: Settings, drop: str) -> tuple[list[dict], list[dict]]:
    lake = Storage(settings.lake)
    data, rejects = (read_stage_table(lake, "transcribed_audio", drop, tree) for tree in ("data", REJECTS))
    return data.to_pylist(), rejects.to_pylist()


def test_sample_drop_speech_is_transcribed_close_to_its_known_transcripts(
    sample_demo: SampleDemo, sample_instance: dg.DagsterInstance
) -> None:
    """transcribed_audio[sample-a] as the session's sample demo materialized it (default settings)."""
    settings = sample_demo.settings
    events = last_run_events(sample_instance, "drop_stages_job", "sample-a")
    checks = check_evaluations(events, ASSETS[1])
    assert {name: c.passed for name, c in checks.items()} == {
        "conservation": True,
        "calibration_wer": True,
        "no_pii_left": True,
    }
    meta = materialization_metadata(events, ASSETS[1])
    assert (meta["total"], meta["kept"], meta["dropped_too_little_speech"], meta["rejected"]) == (6, 4, 2, 0)
    rows, rejects = tables(settings, "sample-a")
    assert read_stage_table(Storage(settings.lake), ASSETS[1], "sample-a").schema.names == CONTRACT
    no_speech = {r["detail"].split(" ")[0] for r in rejects}
    assert [r["reason"] for r in rejects] == ["too_little_speech"] * 2 and no_speech == {"0.00"}

    known = dict(
        line.split("\t", 1) for line in (REPO / "samples/reference/audio_transcripts.tsv").read_text().splitlines()
    )
    hyps = {r["url"]: r["transcript"] for r in rows}
    assert set(hyps) <= set(known) and len(hyps) == 4
    assert word_error_rate(hyps, {u: known[u] for u in hyps}).wer <= 0.10, hyps
    assert {r["codec"] for r in rows} == {"flac", "pcm_s16le", "vorbis"}
    assert all(r["language"] == "en" and r["dedup_cluster"] == r["record_id"] for r in rows)

    assert meta["hours_in"] == pytest.approx((7.1 + 2.99 + 5.3 + 6.05 + 3 + 3) / 3600, abs=1e-4)
    assert meta["hours_kept"] == pytest.approx((7.1 + 2.99 + 5.3 + 6.05) / 3600, abs=1e-4)
    assert 0 < meta["rtf"] < 1 and meta["model"].startswith("whisper-tiny.en")
    assert "| 1–5 s | 3 |" in meta["duration_histogram"] and "| 5–30 s | 3 |" in meta["duration_histogram"]
    assert "John Dashwood" in meta["preview"]
    assert checks["calibration_wer"].metadata["wer"].value <= 0.15


def _mp3(flac: Path) -> bytes:
    """A real LibriVox clip re-encoded as a 22.05 kHz stereo MP3 (another copy of the same recording)."""
    samples, rate = sf.read(flac, dtype="int16")
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=22050, layout="stereo")
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="stereo", rate=22050)
        for converted in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(converted):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _wav(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def _drop(*responses: HttpResponse) -> dict[str, bytes]:
    return {"crawl-00000.warc.gz": warc_bytes(responses)}


def _land_two_drops(settings: Settings) -> None:
    """2026-01-a: a speech clip and bad inputs; 2026-01-b: an MP3 copy of that clip and another clip."""
    flac = (SPEECH / "ss01-0870.flac").read_bytes()
    land_drop(
        settings,
        "2026-01-a",
        _drop(
            HttpResponse("http://a.example.org/ch1.flac", flac, "audio/flac"),
            HttpResponse("http://a.example.org/empty.wav", b"", "audio/wav"),
            HttpResponse("http://a.example.org/broken.mp3", np.random.default_rng(5).bytes(4000), "audio/mpeg"),
            HttpResponse("http://a.example.org/quiet.wav", _wav(np.zeros(48000, np.int16)), "audio/wav"),
            HttpResponse("http://a.example.org/index.html", b"<html><body>not audio</body></html>"),
        ),
    )
    land_drop(
        settings,
        "2026-01-b",
        _drop(
            HttpResponse("http://b.example.net/mirror/ch1.mp3", _mp3(SPEECH / "ss01-0870.flac"), "audio/mpeg"),
            HttpResponse("http://b.example.net/ch1-0880.flac", (SPEECH / "ss01-0880.flac").read_bytes(), "audio/flac"),
        ),
    )


def _snapshot(settings: Settings, drops: tuple[str, ...] = ("2026-01-a", "2026-01-b")) -> dict[str, bytes]:
    lake = Storage(settings.lake)
    trees = ("data", REJECTS)
    return {
        u: lake.read_bytes(u) for d in drops for t in trees for u in committed_parts(lake, "transcribed_audio", d, t)
    }


def test_bad_inputs_and_a_copy_in_a_later_drop_are_accounted_for_deterministically(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    _land_two_drops(settings)
    first = materialize_drop(settings, instance, "2026-01-a", ASSETS)
    assert all(c.passed for c in checks_of(first).values())
    rows_a, rejects_a = tables(settings, "2026-01-a")
    assert [r["url"] for r in rows_a] == ["http://a.example.org/ch1.flac"]
    assert sorted((r["outcome"], r["reason"]) for r in rejects_a) == [
        ("dropped", "too_little_speech"),
        ("rejected", "empty_payload"),
        ("rejected", "undecodable"),
    ]

    second = materialize_drop(settings, instance, "2026-01-b", ASSETS)
    assert all(c.passed for c in checks_of(second).values())
    rows_b, rejects_b = tables(settings, "2026-01-b")
    assert [r["url"] for r in rows_b] == ["http://b.example.net/ch1-0880.flac"]
    [dup] = rejects_b
    assert dup["reason"] in ("exact_duplicate", "near_duplicate")
    assert '"kept_copy_drop": "2026-01-a"' in dup["detail"] and rows_a[0]["record_id"] in dup["detail"]
    meta_b = metadata_of(second, "transcribed_audio")
    assert (meta_b["total"], meta_b["kept"], meta_b["dropped"]) == (2, 1, 1)
    # B's decisions read A's index too (footers and the buckets B shares with it)
    assert 0 < metadata_of(first, "transcribed_audio")["index_bytes_read"] < meta_b["index_bytes_read"]

    assert metadata_of(second, "transcribed_audio")["asr_reused"] is False
    before = _snapshot(settings)
    rerun = materialize_drop(settings, instance, "2026-01-b", ASSETS)
    assert _snapshot(settings) == before  # byte-identical rerun
    assert metadata_of(rerun, "transcribed_audio")["asr_reused"] is True  # nothing changed: no ASR


def refresh_stale(settings: Settings, instance: dg.DagsterInstance) -> list[str]:
    """Run what the audio_dedup_refresh sensor requests; the refreshed drops (each reusing its clip outcomes)."""
    results = run_sensor_requests(settings, instance, audio_dedup_refresh)
    assert all(metadata_of(r, "transcribed_audio")["asr_reused"] is True for r in results.values())
    return list(results)


def test_dedup_does_not_depend_on_the_order_drops_arrive_in(
    settings: Settings, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    _land_two_drops(settings)
    for drop in ("2026-01-a", "2026-01-b"):
        materialize_drop(settings, instance, drop, ASSETS)
    assert refresh_stale(settings, instance) == []
    in_order = _snapshot(settings)

    shutil.rmtree(Path(settings.lake) / "transcribed_audio")
    materialize_drop(settings, instance, "2026-01-b", ASSETS)  # B first: with nothing earlier, its copy survives
    assert [r["url"] for r in tables(settings, "2026-01-b")[0]] == [
        "http://b.example.net/mirror/ch1.mp3",
        "http://b.example.net/ch1-0880.flac",
    ]
    late = materialize_drop(settings, instance, "2026-01-a", ASSETS)
    assert metadata_of(late, "transcribed_audio")["stale_later_drops"] == "2026-01-b"

    def no_asr(*_: object, **__: object) -> None:
        raise AssertionError("a dedup refresh must reuse the drop's clip outcomes, not transcribe again")

    monkeypatch.setattr(mmrecipe.audio.clip_outcomes, "transcribe_records", no_asr)  # the stage's ASR path
    assert refresh_stale(settings, instance) == ["2026-01-b"]
    assert _snapshot(settings) == in_order  # byte for byte what A-then-B produced
    assert refresh_stale(settings, instance) == []


def test_calibration_wer_check_fails_above_its_bound(settings: Settings, instance: dg.DagsterInstance) -> None:
    from data_assets.definitions import build_defs

    instance.add_dynamic_partitions("drops", ["d"])
    job = build_defs(settings).resolve_job_def("drop_stages_job")
    op = "transcribed_audio_calibration_wer"
    run = job.execute_in_process(
        instance=instance,
        partition_key="d",
        op_selection=[op],
        run_config={"ops": {op: {"config": {"max_wer": 0.01}}}},
        raise_on_error=False,
    )
    [evaluation] = run.get_asset_check_evaluations()
    assert evaluation.check_name == "calibration_wer" and evaluation.passed is False
    assert 0.01 < evaluation.metadata["wer"].value <= 0.10
    assert evaluation.metadata["reference_words"].value == 71
