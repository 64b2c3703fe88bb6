"""Benchmark of the transcribed_audio ASR path against faster-whisper used well, on real speech.

On the same clips it prints, per method, the real-time factor (compute seconds per second of audio) and the corpus WER
against the reference transcripts:

- **stage**: what `transcribed_audio` runs: PyAV decode, silero VAD, the model loaded once per
  process, windows batched across clips (`Transcriber`), with short encoder windows (the default)
  and with full 30-s windows;
- **faster-whisper, loaded once**: one `WhisperModel`, `model.transcribe(path)` per file with
  faster-whisper's defaults (beam 5, no VAD);
- **faster-whisper `BatchedInferencePipeline`**: faster-whisper's own batched path (VAD on, batch 8) per file.
The headline ratio is the stage against the faster of these two (the model is loaded once on every side).

Clips (default, `--clips` takes any folder with a `transcripts.tsv`): the bundled LibriVox calibration set
(`mmrecipe/data/calibration_speech`, 5 clips, public domain) plus the 8 spoken channel names of alsa-utils
(`/usr/share/sounds/alsa/*.wav` of Debian's alsa-utils 1.2.8-1, GPL-2; `Noise.wav` holds no speech and is left
out), fetched with `apt-get download alsa-utils` into `benchmarks/.cache/` (never committed). Their reference
words are the spoken words, which are the file names ("Front_Center.wav": "front center").

Methods are interleaved and repeated (`--repeat`, median reported) because the machine is shared.
Run: `python benchmarks/audio_stage.py [--clips DIR] [--repeat 3] [--out benchmarks/audio_stage_results.md]`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from faster_whisper import BatchedInferencePipeline, WhisperModel

from mmrecipe.audio.calibration import (
    TRANSCRIPTS_FILE,
    CalibrationClip,
    default_calibration_dir,
    load_calibration_set,
    transcribe_calibration_set,
)
from mmrecipe.audio.decoding import decode_audio
from mmrecipe.audio.transcription import Transcriber, TranscriberSettings, default_model_dir, load_model
from mmrecipe.audio.wer import word_error_rate
from mmrecipe.settings import REPO_ROOT


def shown(path: str) -> str:
    """A path as the results show it: relative to the repository, or from its package folder on."""
    resolved = Path(path).resolve()
    if resolved.is_relative_to(REPO_ROOT):
        return str(resolved.relative_to(REPO_ROOT))
    return "/".join(resolved.parts[-2:])


CACHE = REPO_ROOT / "benchmarks" / ".cache"
ALSA_PACKAGE = "alsa-utils"
ALSA_SPEECH = ("Front_Center", "Front_Left", "Front_Right", "Rear_Center", "Rear_Left", "Rear_Right", "Side_Left",
               "Side_Right")  # fmt: skip


def alsa_speech(folder: Path) -> dict[str, str]:
    """The alsa-utils speech WAVs copied into `folder` (file name → the words spoken), from `apt-get download`."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", ALSA_PACKAGE], cwd=tmp, check=True, capture_output=True)
        deb = next(Path(tmp).glob(f"{ALSA_PACKAGE}_*.deb"))
        data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
        tar_path = Path(tmp) / "data.tar"
        tar_path.write_bytes(data)
        with tarfile.open(tar_path) as tar:
            for name in ALSA_SPEECH:
                member = tar.extractfile(f"./usr/share/sounds/alsa/{name}.wav")
                if member is None:
                    raise FileNotFoundError(f"{deb.name} has no /usr/share/sounds/alsa/{name}.wav")
                (folder / f"alsa-{name}.wav").write_bytes(member.read())
    return {f"alsa-{name}.wav": name.replace("_", " ").lower() for name in ALSA_SPEECH}


def benchmark_clips() -> str:
    """The default clip folder: the bundled calibration set plus alsa-utils' speech, built once in the cache."""
    folder = CACHE / "speech-clips"
    if not folder.exists():
        partial = folder.with_suffix(".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        rows = [(c.name, c.reference) for c in load_calibration_set(default_calibration_dir())]
        for name, _ in rows:
            shutil.copy(Path(default_calibration_dir()) / name, partial / name)
        rows += sorted(alsa_speech(partial).items())
        (partial / TRANSCRIPTS_FILE).write_text("file\ttranscript\n" + "".join(f"{f}\t{t}\n" for f, t in rows))
        partial.rename(folder)
    return str(folder)


def per_file(clips: list[CalibrationClip], folder: str, transcribe: Callable) -> dict[str, str]:
    """Transcripts from a per-file loop over one loaded model (`transcribe(path)` returns segments, info)."""
    hypotheses = {}
    for clip in clips:
        segments, _ = transcribe(os.path.join(folder, clip.name))
        hypotheses[clip.name] = "".join(s.text for s in segments).strip()
    return hypotheses


def stage(clips: list[CalibrationClip], settings: TranscriberSettings) -> dict[str, str]:
    """Transcripts from the stage's own path (decode, VAD, cross-clip batched Whisper)."""
    return transcribe_calibration_set(Transcriber(settings), clips).hypotheses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", default="", help="folder with clips and transcripts.tsv (default: see above)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", help="also write the results as markdown to this file")
    args = parser.parse_args()

    args.clips = args.clips or benchmark_clips()
    clips = load_calibration_set(args.clips)
    references = {c.name: c.reference for c in clips}
    sources = {"alsa-utils": [c.name for c in clips if c.name.startswith("alsa-")]}
    sources["other (LibriVox)"] = [c.name for c in clips if c.name not in sources["alsa-utils"]]
    sources = {k: v for k, v in sources.items() if v}
    by_source: dict[tuple[str, str], float] = {}
    audio_s = sum(decode_audio(c.payload).duration_s for c in clips)
    base = TranscriberSettings(default_model_dir(), model_name="whisper-tiny.en")
    started = time.perf_counter()
    load_model(base)
    load_s = time.perf_counter() - started

    model = WhisperModel(base.model_dir, device=base.device, compute_type=base.compute_type)
    batched = BatchedInferencePipeline(model)
    baselines = ("faster-whisper, loaded once, per file", "faster-whisper BatchedInferencePipeline, per file")
    methods: dict[str, Callable[[], dict[str, str]]] = {
        "stage (short windows, default)": lambda: stage(clips, base),
        "stage (full 30-s windows)": lambda: stage(clips, dataclasses.replace(base, short_windows=False)),
        baselines[0]: lambda: per_file(clips, args.clips, model.transcribe),
        baselines[1]: lambda: per_file(clips, args.clips, lambda path: batched.transcribe(path, batch_size=8)),
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    wers: dict[str, float] = {}
    loads = []
    for _ in range(args.repeat):
        for name, run in methods.items():
            loads.append(os.getloadavg()[0])
            started = time.perf_counter()
            hypotheses = run()
            times[name].append(time.perf_counter() - started)
            wers[name] = word_error_rate(hypotheses, references).wer
            for source, names in sources.items():
                by_source[name, source] = word_error_rate(hypotheses, {k: references[k] for k in names}).wer

    fastest = min(statistics.median(times[name]) for name in baselines)
    lines = [
        f"Clips: {len(clips)} real speech clips, {audio_s:.2f} s of audio, "
        f"{sum(len(r.split()) for r in references.values())} reference words ({shown(args.clips)})",
        f"Model: {shown(base.model_dir)} ({base.device}/{base.compute_type}), loaded once in {load_s:.2f} s "
        "(not counted in the stage's RTF: one load per process)",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"1-min load average during the runs {min(loads):.1f}–{max(loads):.1f} (shared machine)",
        f"Repeats: {args.repeat}, methods interleaved; median wall time reported",
        "",
        "| method | median wall s | RTF | speed-up vs the faster baseline | WER |",
        "|---|---|---|---|---|",
    ]
    for name, samples in times.items():
        wall = statistics.median(samples)
        lines.append(f"| {name} | {wall:.2f} | {wall / audio_s:.3f} | {fastest / wall:.2f}x | {wers[name]:.3f} |")
    default = "stage (short windows, default)"
    rtf, wer = statistics.median(times[default]) / audio_s, wers[default]
    verdict = "met" if rtf <= 0.1 and wer <= 0.10 else "NOT met"
    lines += ["", f"Targets (RTF <= 0.1 on CPU, WER <= 0.10), stage default: {verdict} (RTF {rtf:.3f}, WER {wer:.3f})"]
    for source, names in sources.items():
        per_method = ", ".join(f"{name} {by_source[name, source]:.3f}" for name in methods)
        lines.append(f"WER on the {len(names)} {source} clips: {per_method}")
    print("\n".join(lines))
    if args.out:
        Path(args.out).write_text(results_markdown(lines, args.repeat))


def results_markdown(lines: list[str], repeat: int) -> str:
    """The results file: the printed figures plus what they mean."""
    body = "\n".join(line if not line or line.startswith("|") else f"- {line}" for line in lines)
    return f"""# transcribed_audio ASR benchmark

Produced by `python benchmarks/audio_stage.py --repeat {repeat} --out benchmarks/audio_stage_results.md`
(RTF = wall seconds of compute per second of audio; lower is faster).

{body}

The clips: the 5 LibriVox readings of the bundled calibration set (`mmrecipe/data/calibration_speech`, 2.99-7.10 s)
and the 8 spoken channel names of Debian's alsa-utils (`/usr/share/sounds/alsa/*.wav`, 1.3-1.5 s, 48 kHz; fetched
by `apt-get download alsa-utils` into `benchmarks/.cache/speech-clips`, not committed: GPL-2), whose words are their
file names ("Rear_Right.wav": "rear right"); `Noise.wav` holds no speech and is left out.

What the rows are:
- **stage**: the path `transcribed_audio` runs for every clip: PyAV decode to 16 kHz mono, silero VAD
  (faster-whisper's), then `Transcriber`: the model loaded once per process and speech windows batched
  *across clips* (encoder once per batch, one `generate` call per batch, beam 5).
  *Short windows* (the default) pad each speech window only to its length + 1 s, rounded up to 5 s,
  instead of Whisper's 30 s (CTranslate2 accepts shorter encoder inputs), and batch windows of equal
  length together. Web audio is mostly short clips, which otherwise cost a full 30-s encoder pass
  each. This is outside Whisper's training setup and can cost accuracy on 1-2 s clips, so it is a
  resource setting (`short_windows`, env `MMRECIPE_ASR_SHORT_WINDOWS=0` turns it off, e.g. on GPUs
  where the 30-s pass is cheap), and the blocking `calibration_wer` check measures whatever
  configuration runs.
- **faster-whisper, loaded once**: one `WhisperModel`, then `model.transcribe(path)` per file with
  faster-whisper's defaults (beam 5, no VAD).
- **BatchedInferencePipeline**: faster-whisper's own batched inference (silero VAD, batch 8) per file.
  Both baselines load the model once, as the stage does; the headline speed-up is against the faster one.
"""


if __name__ == "__main__":
    main()
