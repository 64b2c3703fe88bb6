"""The speech calibration set: real clips with reference transcripts, and the WER a transcriber gets on them."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmrecipe.audio.speech_detection import SpeechRegions
from mmrecipe.audio.transcribed_audio import AudioStageSettings, AudioStats, ClipOutcome, prepare_clip
from mmrecipe.audio.transcription import Transcriber
from mmrecipe.audio.wer import WerResult, word_error_rate
from mmrecipe.package_data import bundled

TRANSCRIPTS_FILE = "transcripts.tsv"


def default_calibration_dir() -> str:
    """The calibration set installed with the package: `mmrecipe/data/calibration_speech`."""
    return str(bundled("calibration_speech"))


@dataclass(frozen=True)
class CalibrationClip:
    """One reference clip: its file name, encoded bytes and reference transcript."""

    name: str
    payload: bytes
    reference: str


def load_calibration_set(folder: str) -> list[CalibrationClip]:
    """The clips listed in `<folder>/transcripts.tsv` (columns: file, transcript), in file order."""
    index = Path(folder) / TRANSCRIPTS_FILE
    if not index.is_file():
        raise FileNotFoundError(
            f"no {TRANSCRIPTS_FILE} in the speech calibration folder {folder!r}: point the transcriber "
            "resource's calibration_dir at a folder of clips with a file<TAB>transcript index"
        )
    with index.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    clips = []
    for row in rows:
        path = Path(folder) / row["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{index} lists {row['file']!r} but {path} does not exist")
        clips.append(CalibrationClip(row["file"], path.read_bytes(), row["transcript"]))
    if not clips:
        raise ValueError(f"{index} lists no clips")
    return sorted(clips, key=lambda c: c.name)


@dataclass
class CalibrationReport:
    """A transcriber's hypotheses on the calibration set, its WER and its real-time factor."""

    wer: WerResult
    hypotheses: dict[str, str]
    skipped: dict[str, str] = field(default_factory=dict)  # clip -> why it never reached ASR
    stats: AudioStats = field(default_factory=AudioStats)
    wall_s: float = 0.0

    @property
    def rtf(self) -> float:
        return self.wall_s / self.stats.in_seconds if self.stats.in_seconds else 0.0


def transcribe_calibration_set(
    transcriber: Transcriber, clips: Sequence[CalibrationClip], settings: AudioStageSettings | None = None
) -> CalibrationReport:
    """Decode, VAD and transcribe every clip through the stage's own path; score it against the references."""
    settings = settings or AudioStageSettings()
    stats, skipped = AudioStats(), {}
    started, asr_before = time.perf_counter(), transcriber.compute_s

    def inputs() -> Iterator[tuple[str, np.ndarray, SpeechRegions]]:
        for clip in clips:
            prepared = prepare_clip({"record_id": clip.name}, clip.payload, settings, stats)
            if isinstance(prepared, ClipOutcome):
                skipped[clip.name] = f"{prepared.reason}: {prepared.detail}"
                continue
            audio, regions = prepared
            yield clip.name, audio.samples, regions

    hypotheses = {name: result.text for name, result in transcriber.transcribe(inputs())}
    stats.asr_s = transcriber.compute_s - asr_before
    wer = word_error_rate(hypotheses, {c.name: c.reference for c in clips})
    return CalibrationReport(wer, hypotheses, skipped, stats, time.perf_counter() - started)
