"""Quality verdicts on Whisper transcripts: confidence, no-speech, hallucination and language filters.

Each filter returns a snake_case reason code. The hallucination filter looks for what Whisper
produces when it has nothing real to transcribe: loops of the same words (repeated n-grams, a
high gzip compression ratio, the signal Whisper itself uses) and the stock phrases it learned
from subtitle credits ("Thanks for watching!", "Subtitles by the Amara.org community").
"""

from __future__ import annotations

import functools
import re
import zlib
from dataclasses import dataclass

from mmrecipe.text.language_id import LanguageIdentifier

WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*", re.UNICODE)

# Phrases Whisper emits on silence, music or noise: subtitle credits and outros seen in its
# training data. Matched as whole word sequences anywhere in a transcript.
STOCK_PHRASES: tuple[str, ...] = (
    "thank you for watching",
    "thanks for watching",
    "thank you so much for watching",
    "thank you very much for watching",
    "thank you for listening",
    "thanks for listening",
    "please subscribe",
    "please like and subscribe",
    "like and subscribe",
    "don't forget to like and subscribe",
    "subscribe to my channel",
    "subscribe to our channel",
    "see you in the next video",
    "see you next time",
    "subtitles by the amara org community",
    "subtitles by",
    "subtitled by",
    "captions by",
    "transcribed by",
    "transcription by",
    "translated by",
    "amara org",
    "untertitel im auftrag des zdf",
    "untertitelung des zdf",
    "sous titrage st 501",
    "sous titres réalisés par la communauté d amara org",
    "subtítulos realizados por la comunidad de amara org",
    "sottotitoli creati dalla comunità amara org",
)
# Short outputs that are hallucinations when they are the *whole* transcript of a clip.
STOCK_WHOLE: frozenset[str] = frozenset(
    {"you", "thank you", "thanks", "thank you very much", "bye", "bye bye", "so", "okay", "oh", "the end", "music"}
)


@dataclass(frozen=True)
class TranscriptFilterSettings:
    """Thresholds of the transcript filters; `languages` empty means every language is accepted."""

    min_avg_logprob: float = -1.0
    max_no_speech_prob: float = 0.6
    ngram: int = 3
    min_words_for_repetition: int = 6
    max_repeated_ngram_fraction: float = 0.3
    max_compression_ratio: float = 2.4
    min_chars_for_compression: int = 60
    max_stock_phrase_fraction: float = 0.5
    languages: tuple[str, ...] = ("en",)
    min_language_probability: float = 0.5


def words_of(text: str) -> list[str]:
    """The lower-cased words of `text`, punctuation removed (apostrophes inside words kept)."""
    return WORD.findall(text.lower().replace("’", "'"))


def repeated_ngram_fraction(words: list[str], n: int) -> float:
    """The share of a text's word n-grams that repeat an earlier one (0 for texts shorter than n)."""
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def compression_ratio(text: str) -> float:
    """Whisper's repetition signal: UTF-8 length over zlib-compressed length."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@functools.cache
def _stock_sequences() -> tuple[tuple[str, ...], ...]:
    seqs = {tuple(words_of(p)) for p in STOCK_PHRASES}
    return tuple(sorted(seqs, key=lambda s: (-len(s), s)))


def stock_phrase_fraction(words: list[str]) -> float:
    """The share of `words` covered by Whisper's known stock phrases (1.0 for a whole-transcript one)."""
    if not words:
        return 0.0
    if " ".join(words) in STOCK_WHOLE or _is_repeated_whole(words):
        return 1.0
    covered = [False] * len(words)
    for seq in _stock_sequences():
        n = len(seq)
        for i in range(len(words) - n + 1):
            if tuple(words[i : i + n]) == seq:
                covered[i : i + n] = [True] * n
    return sum(covered) / len(words)


def _is_repeated_whole(words: list[str]) -> bool:
    """Whether `words` is one whole-transcript stock phrase said over and over ("thank you thank you")."""
    for phrase in STOCK_WHOLE:
        p = phrase.split()
        if len(words) % len(p) == 0 and words == p * (len(words) // len(p)):
            return True
    return False


def hallucination(text: str, settings: TranscriptFilterSettings) -> tuple[str, str] | None:
    """(reason, detail) if `text` looks like a Whisper hallucination, else None."""
    words = words_of(text)
    stock = stock_phrase_fraction(words)
    if stock >= settings.max_stock_phrase_fraction:
        return "hallucination_stock_phrase", f"{stock:.0%} of {len(words)} words are stock phrases: {text[:120]!r}"
    if len(words) >= settings.min_words_for_repetition:
        rep = repeated_ngram_fraction(words, settings.ngram)
        if rep > settings.max_repeated_ngram_fraction:
            return "hallucination_repetition", f"{rep:.0%} of word {settings.ngram}-grams repeat: {text[:120]!r}"
    if len(text) >= settings.min_chars_for_compression:
        ratio = compression_ratio(text)
        if ratio > settings.max_compression_ratio:
            return "hallucination_repetition", f"compression ratio {ratio:.2f} > {settings.max_compression_ratio}"
    return None


def transcript_verdict(
    text: str,
    avg_logprob: float,
    no_speech_prob: float,
    language: str,
    language_probability: float | None,
    settings: TranscriptFilterSettings,
) -> tuple[str, str] | None:
    """(drop reason, detail) for a transcript that fails a filter, or None to keep it."""
    if not words_of(text):
        return "empty_transcript", f"Whisper produced no words ({text!r})"
    if no_speech_prob > settings.max_no_speech_prob:
        return "high_no_speech_prob", f"mean no_speech_prob {no_speech_prob:.3f} > {settings.max_no_speech_prob}"
    if avg_logprob < settings.min_avg_logprob:
        return "low_avg_logprob", f"mean avg_logprob {avg_logprob:.3f} < {settings.min_avg_logprob}"
    found = hallucination(text, settings)
    if found:
        return found
    if settings.languages:
        if language not in settings.languages:
            accepted = ", ".join(settings.languages)
            return "language_mismatch", f"language {language} ({language_probability}) not in [{accepted}]"
        if language_probability is not None and language_probability < settings.min_language_probability:
            return "language_mismatch", f"language {language} only at probability {language_probability:.2f}"
    return None


# --- transcript language ------------------------------------------------------------------
@functools.cache
def _language_identifier() -> LanguageIdentifier:
    return LanguageIdentifier()


def text_language(text: str) -> tuple[str, float]:
    """(ISO code, probability) of a transcript, by the text stage's fastText lid.176 identifier (offline)."""
    [(language, probability)] = _language_identifier().predict([text])
    return language, probability
