"""Transcript filters: confidence, no-speech, hallucination (stock phrases, loops) and language."""

import pytest

from mmrecipe.audio.transcript_filters import (
    TranscriptFilterSettings,
    compression_ratio,
    repeated_ngram_fraction,
    stock_phrase_fraction,
    text_language,
    transcript_verdict,
    words_of,
)

SETTINGS = TranscriptFilterSettings()
REAL = "Unless to be rather cold-hearted and rather selfish is to be ill-disposed."
LOOP = "I don't know what to do. " * 8

# (case, text, avg_logprob, no_speech_prob, language, language_probability, expected reason or None)
VERDICTS = [
    ("real LibriVox transcript", REAL, -0.17, 0.015, "en", 0.98, None),
    ("short real answer", "He might even have been made amiable himself.", -0.11, 0.02, "en", 0.99, None),
    ("no words at all", " ... ", -0.5, 0.1, "en", None, "empty_transcript"),
    ("Whisper says it heard no speech", REAL, -0.2, 0.85, "en", 0.98, "high_no_speech_prob"),
    ("low decoder confidence", REAL, -1.4, 0.1, "en", 0.98, "low_avg_logprob"),
    ("outro credit", "Thanks for watching!", -0.3, 0.2, "en", 0.97, "hallucination_stock_phrase"),
    ("subtitle credit", "Subtitles by the Amara.org community", -0.3, 0.2, "en", 0.9, "hallucination_stock_phrase"),
    ("bare 'you'", "you", -0.4, 0.3, "en", 0.12, "hallucination_stock_phrase"),
    ("thank you, repeated", "Thank you. Thank you. Thank you.", -0.3, 0.2, "en", 0.98, "hallucination_stock_phrase"),
    ("German ZDF credit", "Untertitel im Auftrag des ZDF, 2017", -0.3, 0.2, "de", 0.98, "hallucination_stock_phrase"),
    ("decoder loop", LOOP, -0.2, 0.05, "en", 0.99, "hallucination_repetition"),
    ("French speech", "Il était une fois un petit garçon.", -0.3, 0.1, "fr", 0.99, "language_mismatch"),
    ("unsure language", REAL, -0.3, 0.1, "en", 0.31, "language_mismatch"),
]


@pytest.mark.parametrize(
    ("case", "text", "logprob", "no_speech", "lang", "lang_p", "reason"), VERDICTS, ids=[v[0] for v in VERDICTS]
)
def test_transcript_verdicts(
    case: str, text: str, logprob: float, no_speech: float, lang: str, lang_p: float | None, reason: str | None
) -> None:
    verdict = transcript_verdict(text, logprob, no_speech, lang, lang_p, SETTINGS)
    assert (verdict[0] if verdict else None) == reason, f"{case}: {verdict}"
    if verdict:
        assert verdict[1]


def test_empty_language_list_accepts_every_language() -> None:
    settings = TranscriptFilterSettings(languages=())
    assert transcript_verdict("Il était une fois un petit garçon.", -0.3, 0.1, "fr", 0.99, settings) is None


def test_a_stock_phrase_inside_real_speech_is_kept() -> None:
    text = "Thank you for listening to my explanation of how the old stone bridge was built across the river."
    assert stock_phrase_fraction(words_of(text)) == pytest.approx(4 / 18)
    assert transcript_verdict(text, -0.3, 0.1, "en", 0.95, SETTINGS) is None


def test_repetition_measures() -> None:
    assert repeated_ngram_fraction(words_of(REAL), 3) == 0.0
    assert repeated_ngram_fraction(["a", "b", "c", "a", "b", "c", "a", "b", "c"], 3) == pytest.approx(4 / 7)
    assert repeated_ngram_fraction(["a", "b"], 3) == 0.0
    assert compression_ratio(LOOP) > 2.4 > compression_ratio(REAL * 1)


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("He was not an ill-disposed young man.", "en"),
        ("Il était une fois un petit garçon qui habitait à Paris.", "fr"),
        ("Der schnelle braune Fuchs springt über den faulen Hund.", "de"),
    ],
)
def test_text_language_identifies_transcripts_offline(text: str, lang: str) -> None:
    got, probability = text_language(text)
    assert got == lang and probability > 0.8


def test_text_language_of_nothing() -> None:
    assert text_language("   ") == ("", 0.0)
