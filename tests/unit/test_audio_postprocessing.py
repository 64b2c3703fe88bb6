"""Transcript post-processing through the text stage's library: PII redaction and dedup across drops."""

import json
from pathlib import Path

import pytest

from mmrecipe.audio.transcript_postprocessing import (
    Verdict,
    dedup_parts,
    pii_left,
    redact_row,
    verdicts_of,
    write_entries,
)
from mmrecipe.dedup.band_index import SOURCES_KEY, BandIndex, DecisionParts
from mmrecipe.storage import Storage

STORY = (
    "Had he married a more amiable woman he might have been made still more respectable than he was, he might even "
    "have been made amiable himself, for he was very young when he married and very fond of his wife. But Mrs John "
    "Dashwood was a strong caricature of himself, more narrow minded and selfish. When he gave his promise to his "
    "father, he meditated within himself to increase the fortunes of his sisters by the present of a thousand pounds "
    "apiece. He then really thought himself equal to it. The prospect of four thousand a year, in addition to his "
    "present income, besides the remaining half of his own mother's fortune, warmed his heart."
)


def row(record_id: str, drop: str, transcript: str) -> dict:
    words = transcript.split()
    half = " ".join(words[: len(words) // 2]), " ".join(words[len(words) // 2 :])
    return {
        "record_id": record_id,
        "drop": drop,
        "warc_path": f"/landing/{drop}/a.warc.gz",
        "warc_offset": 0,
        "url": f"http://{drop}.example.org/{record_id}.flac",
        "duration_s": 10.0,
        "transcript": transcript,
        "segments": [
            {"start": 0.0, "end": 5.0, "text": half[0], "avg_logprob": -0.2, "no_speech_prob": 0.01},
            {"start": 5.0, "end": 10.0, "text": half[1], "avg_logprob": -0.2, "no_speech_prob": 0.01},
        ],
        "dedup_cluster": None,
    }


def test_pii_is_redacted_in_transcript_and_segments_and_the_audit_agrees() -> None:
    spoken = "You can write to jane.doe@example.org or call +1 202 555 0143 after nine in the morning."
    raw = row("r1", "d1", spoken)
    assert {kind for _, kind, _ in pii_left([raw])} == {"email", "phone"}
    clean, counts = redact_row(raw)
    assert clean["transcript"] == "You can write to <EMAIL> or call <PHONE> after nine in the morning."
    assert "<EMAIL>" in clean["segments"][0]["text"] + clean["segments"][1]["text"]
    assert counts == {"email": 1, "phone": 1}
    assert pii_left([clean]) == []


def decide(rows: list[dict], lake: Storage, drop: str) -> tuple[dict[str, Verdict], DecisionParts]:
    """The drop-level dedup of kept rows, from their index entries alone, staged as two shards' parts."""
    half = len(rows) // 2
    parts = [
        write_entries(lake, lake.uri("staging"), f"s{i}", r, 256) for i, r in enumerate([rows[:half], rows[half:]])
    ]
    decided = dedup_parts(lake, drop, parts, lake.uri("decisions", drop))
    assert [p.rows for p in parts] == [half, len(rows) - half] and len(decided.parts) == 2
    verdicts = {}
    for uri in decided.parts:
        verdicts |= verdicts_of(lake.read_table(uri))
    assert list(verdicts) == [r["record_id"] for r in rows]  # every kept row decided, in order
    return verdicts, decided


def test_exact_and_near_copies_in_a_later_drop_are_dropped_in_favour_of_the_earlier_drop(tmp_path: Path) -> None:
    lake = Storage(str(tmp_path))
    first, _ = decide([row("a1", "d1", STORY), row("a2", "d1", "He was not an ill disposed young man.")], lake, "d1")
    assert [(rid, v.reason, v.cluster) for rid, v in first.items()] == [
        ("a1", None, "a1"),
        ("a2", None, "a2"),
    ]
    near = STORY.replace("very fond of his wife", "very fond indeed of his wife")
    later = [
        row("b1", "d2", STORY.upper()),  # the same words: exact after normalisation
        row("b2", "d2", near),
        row("b3", "d2", "Unless to be rather cold hearted and rather selfish is to be ill disposed."),
    ]
    second, decided = decide(later, lake, "d2")
    fates = {
        rid: (v.reason, json.loads(v.detail(f"http://d2.example.org/{rid}.flac")) if v.reason else None)
        for rid, v in second.items()
    }
    assert fates["b1"][0] == "exact_duplicate" and fates["b1"][1]["kept_copy_drop"] == "d1"
    assert fates["b2"][0] == "near_duplicate" and fates["b2"][1]["cluster"] == "a1"
    assert fates["b3"] == (None, None)
    assert fates["b1"][1]["url"] == "http://d2.example.org/b1.flac" and fates["b1"][1]["cluster"] == "a1"
    assert decided.counts == {"kept": 1, "exact_duplicate": 1, "near_duplicate": 1, "cross_partition": 2}
    assert set(json.loads(decided.sources_metadata()[SOURCES_KEY])) == {"d1", "d2"}

    again, redecided = decide(later, lake, "d2")  # idempotent: the drop replaces its own entries
    assert again == second and redecided.sources == decided.sources


def test_a_drop_without_kept_transcripts_still_gets_an_index(tmp_path: Path) -> None:
    lake = Storage(str(tmp_path))
    assert decide([], lake, "d0")[0] == {}
    assert lake.exists(BandIndex(lake, "transcribed_audio").uri("d0"))


@pytest.mark.parametrize("text", ["He might even have been made amiable himself.", "Version 3.11.2.1 was released."])
def test_clean_transcripts_pass_the_audit(text: str) -> None:
    assert pii_left([row("r", "d", text)]) == []
