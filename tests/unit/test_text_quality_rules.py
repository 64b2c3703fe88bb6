"""Gopher, C4 and FineWeb rules: one case per reason code, each built from real prose (Python's docs)."""

import random
import re
from collections import Counter
from collections.abc import Callable
from pydoc_data.topics import topics

import pytest

from mmrecipe.text.quality_rules import (
    SIGNALS,
    STOP_WORDS,
    RuleThresholds,
    _repetition_signals,
    apply_rules,
    c4_edit,
    c4_edit_lines,
    thresholds_for,
    tokenize,
)

_RAW = topics["exceptions"] + "\n\n" + topics["execmodel"] + "\n\n" + topics["customization"]
PARAGRAPHS = [" ".join(p.split()) for p in _RAW.split("\n\n") if len(p.split()) > 25 and '"' not in p[:1]]
SENTENCES = [s for s in re.split(r"(?<=[.!?])\s+", " ".join(PARAGRAPHS)) if len(s.split()) >= 6 and "{" not in s]
PROSE = "\n\n".join(PARAGRAPHS[:10])
WORDS = PROSE.split()
EN = thresholds_for("en")
NUMERIC = [f for f in RuleThresholds.__dataclass_fields__ if f not in ("stop_words",)]


def only(*names: str, **values: float) -> RuleThresholds:
    """English thresholds with every rule disabled except `names` (at their defaults) and `values`."""
    off = {
        f: (False if isinstance(getattr(EN, f), bool) else -1) for f in NUMERIC if f not in names and f not in values
    }
    return EN.with_overrides(off | values)


def lines_of(words: list[str], per_line: int) -> list[str]:
    return [" ".join(words[i : i + per_line]) for i in range(0, len(words), per_line)]


# (reason, text builder, thresholds); None thresholds means the English defaults
CASES: list[tuple[str, Callable[[], str], RuleThresholds | None]] = [
    ("gopher_dup_para_frac", lambda: "\n\n".join(PARAGRAPHS[:3] * 3), None),
    (
        "gopher_dup_para_char_frac",
        lambda: "\n\n".join([*PARAGRAPHS[:8], PARAGRAPHS[0] * 3, PARAGRAPHS[0] * 3]),
        only("dup_para_char_frac"),
    ),
    ("gopher_dup_line_frac", lambda: "\n".join(SENTENCES[:10] + SENTENCES[:5]), only("dup_line_frac")),
    (
        "gopher_dup_line_char_frac",
        lambda: "\n".join([*SENTENCES[:6], PARAGRAPHS[1], PARAGRAPHS[1]]),
        only("dup_line_char_frac"),
    ),
    ("gopher_top_2gram", lambda: PROSE + " the exception" * 150, only("top_2gram_frac")),
    ("gopher_top_3gram", lambda: PROSE + " raise an exception" * 120, only("top_3gram_frac")),
    ("gopher_top_4gram", lambda: PROSE + " when an exception occurs" * 100, only("top_4gram_frac")),
    *[
        (
            f"gopher_dup_{n}gram",
            lambda n=n: PROSE + "\n" + " ".join(WORDS[: 20 * n] * 2),
            only(f"dup_{n}gram_frac", dup_5gram_frac=-1 if n > 5 else 0.15),
        )
        for n in range(5, 11)
    ],
    ("gopher_short_doc", lambda: " ".join(WORDS[:40]), None),
    ("gopher_long_doc", lambda: PROSE, only(max_doc_words=200)),
    ("gopher_avg_word_length_low", lambda: " ".join(w[:2] for w in WORDS), only("min_avg_word_length")),
    (
        "gopher_avg_word_length_high",
        lambda: " ".join("".join(WORDS[i : i + 3]) for i in range(0, 600, 3)),
        only("max_avg_word_length"),
    ),
    ("gopher_hash_ratio", lambda: " ".join(f"#{w}" if i % 5 == 0 else w for i, w in enumerate(WORDS)), None),
    ("gopher_ellipsis_ratio", lambda: " ".join(f"{w}..." if i % 6 == 0 else w for i, w in enumerate(WORDS)), None),
    ("gopher_bullet_lines", lambda: "\n".join(f"- {s}" for s in SENTENCES[:30]), None),
    (
        "gopher_ellipsis_lines",
        lambda: "\n".join(f"{s[:-1]}…" if i % 2 else s for i, s in enumerate(SENTENCES[:30])),
        None,
    ),
    ("gopher_alpha_words", lambda: " ".join(f"{w} {i}" for i, w in enumerate(WORDS)), None),
    ("gopher_stop_words", lambda: " ".join(w for w in WORDS if w.lower().strip(".,") not in STOP_WORDS["en"]), None),
    ("c4_lorem_ipsum", lambda: PROSE + "\nLorem ipsum dolor sit amet, consectetur adipiscing elit.", None),
    ("c4_curly_bracket", lambda: PROSE + "\nUse a dict such as {'key': value} to map names.", None),
    ("c4_too_few_sentences", lambda: " ".join(SENTENCES[:3]), only("c4_min_sentences")),
    (
        "c4_terminal_punct",
        lambda: "\n".join([s.rstrip(".") for s in SENTENCES[:12]] + SENTENCES[12:14]),
        only("c4_min_sentences", c4_terminal_punct=True),
    ),
    ("fineweb_line_punct", lambda: "\n".join(s.rstrip(".!?") + " and more" for s in SENTENCES[:40]), None),
    (
        "fineweb_short_lines",
        lambda: "\n".join(" ".join(s.split()[:4]).rstrip(".,;") + "." for s in SENTENCES[:60]),
        only("short_line_thr", "short_line_length"),
    ),
    ("fineweb_char_dup", lambda: "\n".join([*SENTENCES[:40], SENTENCES[0]]), None),
    ("fineweb_list_ratio", lambda: "\n".join(lines_of(WORDS, 2)), only("new_line_ratio")),
    ("fineweb_empty", lambda: "  \n\n ", only()),
]


@pytest.mark.parametrize(("reason", "build", "thresholds"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_has_its_reason(reason: str, build: Callable[[], str], thresholds: RuleThresholds | None) -> None:
    result = apply_rules(build(), thresholds or EN)
    assert result.reason == reason, result.detail
    assert result.detail.startswith(f"{reason}:")


def test_every_reason_code_is_covered() -> None:
    names = {c[0] for c in CASES}
    assert len(names) == len(CASES) == 32


def test_real_prose_passes_with_signals() -> None:
    result = apply_rules(PROSE, EN)
    assert result.reason is None and result.detail == ""
    assert set(result.signals) == set(SIGNALS)
    assert result.signals["n_words"] == sum(1 for w in WORDS if any(c.isalnum() for c in w))
    assert result.signals["stop_words"] >= 6 and result.signals["alpha_words_ratio"] > 0.95
    assert result.signals["dup_line_frac"] == 0.0


def test_c4_removes_javascript_and_policy_lines() -> None:
    text = PROSE + "\nPlease enable JavaScript to view the comments.\nRead our privacy policy before you continue."
    result = apply_rules(text, EN)
    assert result.reason is None
    assert result.signals["c4_lines_removed"] == 2
    assert "JavaScript" not in result.text and "privacy policy" not in result.text
    assert result.text.startswith(PARAGRAPHS[0])


@pytest.mark.parametrize(
    "text",
    [
        PROSE,  # no line rule but words-per-line applies: the whole-text shortcut
        PROSE + "\nshort line\n\n   \nTwo words",
        PROSE + "\nPlease enable JavaScript to view the comments.",
        PROSE + "\nRead our privacy policy before you continue.",
        PROSE + "\nSee the example [1] and [edit] here for more.",
        PROSE + "\nlorem ipsum dolor sit amet",
        PROSE + "\nif x { return y } is a block",
        PROSE + "\n" + "x" * 1200 + " is a long word",
        "",
    ],
)
@pytest.mark.parametrize(
    "thresholds", [EN, RuleThresholds(c4_min_words_per_line=-1), RuleThresholds(c4_max_word_length=-1)]
)
def test_c4_shortcut_edits_lines_exactly_like_the_line_by_line_rules(text: str, thresholds: RuleThresholds) -> None:
    assert c4_edit(text, thresholds) == c4_edit_lines(text, thresholds)


def test_disabled_rules_never_fire() -> None:
    result = apply_rules(" ".join(WORDS[:10]), only())
    assert result.reason is None


def test_language_bound_thresholds() -> None:
    ja = thresholds_for("ja")
    assert ja.min_avg_word_length == -1 and ja.dup_5gram_frac == -1 and "の" in (ja.stop_words or ())
    assert thresholds_for("de").stop_words == STOP_WORDS["de"]
    assert thresholds_for("xx").min_stop_words == -1  # no stop-word list: the rule is off
    custom = thresholds_for("en", overrides={"en": {"min_doc_words": 10}})
    assert custom.min_doc_words == 10 and thresholds_for("en").min_doc_words == 50
    with pytest.raises(ValueError, match="unknown quality thresholds"):
        thresholds_for("en", overrides={"en": {"min_doc_wordz": 10}})


def test_tokens_split_cjk_characters_and_keep_words_whole() -> None:
    assert tokenize("os.path.join() is used; 日本語です") == [
        "os.path.join()",
        "is",
        "used;",
        "日",
        "本",
        "語",
        "で",
        "す",
    ]


def _repetition_by_definition(words: list[str], text_len: int) -> dict[str, float]:
    """The Gopher n-gram signals straight from their definition, with a Counter per n (slow, obviously right)."""
    out = {}
    for n in range(2, 11):
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        name = f"top_{n}gram_frac" if n <= 4 else f"dup_{n}gram_frac"
        if not grams:
            out[name] = 0.0
        elif n <= 4:
            gram, count = Counter(grams).most_common(1)[0]  # ties: the first seen
            out[name] = count * len(" ".join(gram)) / text_len
        else:
            seen: set[tuple[str, ...]] = set()
            covered = [False] * len(words)
            for i, gram in enumerate(grams):
                if gram in seen:
                    covered[i : i + n] = [True] * n
                seen.add(gram)
            out[name] = sum(len(w) for w, c in zip(words, covered, strict=True) if c) / text_len
    return out


@pytest.mark.parametrize("seed", range(6))
def test_repetition_signals_match_their_definition(seed: int) -> None:
    """Only positions whose (n-1)-gram repeats are sorted for n: the signals still equal the definition's."""
    rng = random.Random(seed)
    vocabulary = WORDS[: 5 + 40 * seed]  # from a handful of words (every n-gram repeats) to mostly distinct ones
    words = [rng.choice(vocabulary) for _ in range(rng.randrange(1, 400))]
    words += words[: rng.randrange(0, 30)]  # a repeated run as long as 30 words
    text = " ".join(words)
    assert _repetition_signals(words, len(text)) == pytest.approx(_repetition_by_definition(words, len(text)))
    assert _repetition_signals(WORDS, len(PROSE)) == pytest.approx(_repetition_by_definition(WORDS, len(PROSE)))
