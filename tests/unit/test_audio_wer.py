"""Word error rate: normalisation, edit distance and corpus aggregation."""

import pytest

from mmrecipe.audio.wer import edit_distance, normalize_for_wer, word_error_rate


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("And Mr. John Dashwood had then leisure", ["and", "mister", "john", "dashwood", "had", "then", "leisure"]),
        ("cold-hearted, and rather selfish!", ["cold", "hearted", "and", "rather", "selfish"]),
        ("It's Dr. Smith’s", ["it's", "doctor", "smith's"]),
        ("  ", []),
    ],
)
def test_normalisation(text: str, words: list[str]) -> None:
    assert normalize_for_wer(text) == words


@pytest.mark.parametrize(
    ("hyp", "ref", "distance"),
    [
        ("a b c", "a b c", 0),
        ("a x c", "a b c", 1),  # substitution
        ("a c", "a b c", 1),  # deletion
        ("a b b c", "a b c", 1),  # insertion
        ("", "a b c", 3),
        ("a b c", "", 3),
        ("c b a", "a b c", 2),
    ],
)
def test_edit_distance(hyp: str, ref: str, distance: int) -> None:
    assert edit_distance(hyp.split(), ref.split()) == distance


def test_corpus_wer_counts_errors_over_reference_words() -> None:
    refs = {
        "a": "he was not an ill disposed young man",
        "b": "and mister john dashwood had then leisure",
        "c": "he might even have been made amiable himself",
    }
    hyps = {"a": "He was not an old-sposed young man.", "b": "And Mr. John Dashwood had then leisure."}
    result = word_error_rate(hyps, refs)
    # a: "ill disposed" -> "old sposed" = 2 substitutions; b: exact after normalisation; c: missing = 8 deletions
    assert result.per_item == (("a", 2, 8), ("b", 0, 7), ("c", 8, 8))
    assert (result.errors, result.reference_words) == (10, 23)
    assert result.wer == pytest.approx(10 / 23)
