"""spaCy-exact words and sentences, and the FineWeb rule set where it differs from the whitespace one.

The expected tokens are spaCy 3.8.18's (`spacy.blank("en")`); tests/reference/test_datatrove_agreement.py
compares with spaCy and datatrove themselves on real pages.
"""

import pytest

from mmrecipe.text.fineweb_rules import apply_fineweb_rules, rules_for
from mmrecipe.text.quality_rules import RuleThresholds, apply_rules, thresholds_for
from mmrecipe.text.words import sentence_count, tokens, words

EN = thresholds_for("en")


@pytest.mark.parametrize(
    ("text", "expected", "sentences"),
    [
        (
            "Hello, world! It's $5.00 (approx.) e.g. U.S.A. rock'n'roll",
            "Hello|,|world|!|It|'s|$|5.00|(|approx|.|)|e.g.|U.S.A.|rock'n'roll",
            3,
        ),
        (
            "See http://example.com/a?b=c, or x@y.org; don't :) x:)y (-8 a(-8",
            "See|http://example.com/a?b=c|,|or|x@y.org|;|do|n't|:)|x:)y|(-8|a(-8",
            1,
        ),
        (
            "def f(x):\n    return x**2  # square\n\n\tTabbed...  double  space",
            "def|f(x|):|\n    |return|x**2| |#|square|\n\n\t|Tabbed|...| |double| |space",
            1,
        ),
        (
            "Dr. Smith arrived at 10a.m. Then he left. Was it 3p.m.? Yes!",
            "Dr.|Smith|arrived|at|10|a.m.|Then|he|left|.|Was|it|3|p.m.|?|Yes|!",
            3,
        ),
    ],
)
def test_tokens_and_sentences_are_spacys(text: str, expected: str, sentences: int) -> None:
    """`expected`: spaCy's tokens, separated by |."""
    assert tokens(text) == expected.split("|")
    assert words(text) == [t.strip() for t in expected.split("|") if t.strip()]
    assert sentence_count(text) == sentences


def test_presets_pick_the_rule_set_by_language() -> None:
    assert rules_for("multilingual", "en") is apply_fineweb_rules
    assert rules_for("fineweb", "en") is apply_fineweb_rules
    assert rules_for("multilingual", "de") is apply_rules
    assert rules_for("whitespace", "en") is apply_rules
    with pytest.raises(ValueError, match="unknown rules preset 'c4'"):
        rules_for("c4", "en")


PROSE = [
    "The bridge over the river was built of stone in the last years of the old century.",
    "Every morning the market filled with farmers who had walked in from the villages.",
    "Nobody remembered who had planted the chestnut trees along the northern road.",
    "The harbour master kept a careful record of each ship that came into port.",
    "Children learned to read in a small school that stood beside the church.",
    "When winter came, the lake froze and the whole town went skating on it.",
    "Her grandfather had been a printer, and she inherited his love of books.",
    "A new railway station opened that spring, with a clock that never kept time.",
    "The theatre staged three plays a season and sold out most of its evenings.",
    "Visitors to the museum could see maps drawn by the first surveyors of the valley.",
]
NOUNS = ["bridge", "market", "church", "harbour", "school", "library", "garden", "station", "theatre", "museum"]


def test_quotes_do_not_end_a_line_for_fineweb() -> None:
    """Every line ends with a closing quote: datatrove's FineWeb filter counts no terminal punctuation."""
    text = "\n".join(f'"{line}"' for line in PROSE)
    result = apply_fineweb_rules(text, EN)
    assert result.reason == "fineweb_line_punct" and result.signals["line_punct_ratio"] == 0.0
    assert result.signals["c4_sentences"] == len(PROSE)  # C4 passed: spaCy finds one sentence per line
    assert apply_rules(text, EN).reason is None  # the whitespace rules count the quote as an ending
    plain = "\n".join(PROSE)
    kept = apply_fineweb_rules(plain, EN)
    assert kept.reason is None and kept.text == plain and kept.signals["line_punct_ratio"] == 1.0


def test_repeated_ngrams_skip_ahead_as_datatrove() -> None:
    """12 equal words: datatrove counts two repeated 5-grams (10 chars), the overlap count covers 11 words."""
    only_5grams = RuleThresholds().with_overrides({f"top_{n}gram_frac": -1 for n in (2, 3, 4)})
    text = " ".join(["a"] * 12)
    result = apply_fineweb_rules(text, only_5grams)
    assert result.reason == "gopher_dup_5gram" and result.signals["dup_5gram_frac"] == pytest.approx(10 / len(text))
    assert apply_rules(text, only_5grams).signals["dup_5gram_frac"] == pytest.approx(11 / len(text))


def test_punctuation_tokens_count_as_words_for_the_alpha_ratio() -> None:
    """Code-like lines: whitespace words mostly hold a letter, spaCy's tokens mostly do not."""
    text = "\n".join(f"{line} Call f(x, {i}) = g(y); h[{i}]." for i, line in enumerate(PROSE))
    result = apply_fineweb_rules(text, EN)
    assert result.reason == "gopher_alpha_words" and result.signals["alpha_words_ratio"] < 0.8
    assert apply_rules(text, EN).signals["alpha_words_ratio"] >= 0.8
