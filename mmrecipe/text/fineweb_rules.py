"""The FineWeb rule set: datatrove 0.10.1's four heuristic filters, verdict for verdict, and the rule presets.

`apply_fineweb_rules` gives the verdicts of datatrove's `GopherRepetitionFilter`, `GopherQualityFilter`,
`C4QualityFilter(filter_no_terminal_punct=False)` and `FineWebQualityFilter`, in FineWeb's order, for English:
- words are spaCy's blank English tokens (`mmrecipe.text.words`), so every punctuation mark is a word;
- duplicated 5-10-grams are counted as datatrove does: after a repeated n-gram, skip ahead n words (the
  n-gram counts are compiled: `_word_ngrams.c`);
- C4 counts the sentences of spaCy's sentencizer in each kept line;
- only datatrove's terminal punctuation ends a line for FineWeb (no quotes, no ellipsis);
- every comparison is datatrove's (`>` for the maxima, `<` for the minima), and a threshold of 0 turns a
  rule off where datatrove's does (negative values turn any rule off, as in `quality_rules`).
`tests/reference/test_datatrove_agreement.py` checks the verdicts against datatrove itself.

Presets (the text stage's `rules_preset`):
- `multilingual` (default): English documents get these rules; other languages get the whitespace rules of
  `quality_rules` with their per-language thresholds (FineWeb-2 style).
- `fineweb`: these rules, and English only, as FineWeb.
- `whitespace`: the whitespace rules of `quality_rules` for every language.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from itertools import compress
from operator import methodcaller, mul

from mmrecipe.text._word_ngrams import repeated_chars
from mmrecipe.text.quality_rules import (
    C4_END_PUNCTUATION,
    POLICY_SUBSTRINGS,
    SIGNALS,
    RuleResult,
    RuleThresholds,
    apply_rules,
    duplicates,
    run_families,
)
from mmrecipe.text.spacy_en_tables import DATATROVE_PUNCTUATION, DATATROVE_TERMINAL_PUNCTUATION
from mmrecipe.text.words import WordMemo, sentence_count, words

PRESETS = ("multilingual", "fineweb", "whitespace")
FINEWEB_LANGUAGE = "en"
_PUNCTUATION = frozenset(DATATROVE_PUNCTUATION)
_LINE_END = tuple(DATATROVE_TERMINAL_PUNCTUATION)
_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
Rules = Callable[[str, RuleThresholds], RuleResult]


_NOT_SYMBOL = WordMemo(lambda w: not _PUNCTUATION.issuperset(w))  # Gopher's symbols: only punctuation
_HAS_ALPHA = WordMemo(lambda w: any(map(str.isalpha, w)))  # Gopher's alphabetic words: a letter at least


def rules_for(preset: str, language: str) -> Rules:
    """The rule function a preset applies to a document of `language`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown rules preset {preset!r}: use one of {PRESETS}")
    return apply_fineweb_rules if preset != "whitespace" and language == FINEWEB_LANGUAGE else apply_rules


def _on(threshold: float) -> bool:
    """Whether a rule datatrove guards with `if threshold and ...` is on."""
    return threshold > 0


def _ngram_signal(n: int) -> str:
    return f"top_{n}gram_frac" if n <= 4 else f"dup_{n}gram_frac"


def _gopher_repetition(text: str, tokens: list[str], t: RuleThresholds, sig: dict[str, float]) -> str | None:
    if not text:
        return "gopher_empty"
    for unit, pieces in (("para", lambda: _PARAGRAPHS.split(text.strip())), ("line", lambda: _LINES.split(text))):
        found = pieces()
        n_dup, chars_dup = duplicates(found)
        sig[f"dup_{unit}_frac"] = n_dup / len(found)
        sig[f"dup_{unit}_char_frac"] = chars_dup / len(text)
        for name in (f"dup_{unit}_frac", f"dup_{unit}_char_frac"):
            if _on(getattr(t, name)) and sig[name] > getattr(t, name):
                return f"gopher_{name}"
    counts = repeated_chars(tokens)  # top 2-4-gram chars, then duplicated 5-10-gram chars
    for n in range(2, 11):
        name, limit = _ngram_signal(n), getattr(t, _ngram_signal(n))
        if limit < 0 or (n <= 4 and len(tokens) < n):
            continue
        sig[name] = counts[n - 2] / len(text)
        if sig[name] > limit:
            return f"gopher_{name.removesuffix('_frac')}"
    return None


def _gopher_quality(text: str, tokens: list[str], t: RuleThresholds, sig: dict[str, float]) -> str | None:
    n_words = len(tokens)
    counts = Counter(tokens)  # each test runs once per distinct word
    non_symbol = list(compress(counts, map(_NOT_SYMBOL.__getitem__, counts)))
    n_non_symbol = sum(map(counts.__getitem__, non_symbol))
    sig["n_words"] = float(n_non_symbol)
    if _on(t.min_doc_words) and n_non_symbol < t.min_doc_words:
        return "gopher_short_doc"
    if _on(t.max_doc_words) and n_non_symbol > t.max_doc_words:
        return "gopher_long_doc"
    chars = sum(map(mul, map(len, non_symbol), map(counts.__getitem__, non_symbol)))
    sig["avg_word_length"] = chars / n_non_symbol if n_non_symbol else float("nan")
    if _on(t.min_avg_word_length) and sig["avg_word_length"] < t.min_avg_word_length:
        return "gopher_avg_word_length_low"
    if _on(t.max_avg_word_length) and sig["avg_word_length"] > t.max_avg_word_length:
        return "gopher_avg_word_length_high"
    sig["hash_word_ratio"] = text.count("#") / n_words
    if _on(t.max_hash_word_ratio) and sig["hash_word_ratio"] > t.max_hash_word_ratio:
        return "gopher_hash_ratio"
    sig["ellipsis_word_ratio"] = (text.count("...") + text.count("…")) / n_words
    if _on(t.max_ellipsis_word_ratio) and sig["ellipsis_word_ratio"] > t.max_ellipsis_word_ratio:
        return "gopher_ellipsis_ratio"
    lines = text.splitlines()
    sig["bullet_lines_ratio"] = sum(map(methodcaller("startswith", ("•", "-")), map(str.lstrip, lines))) / len(lines)
    if _on(t.max_bullet_lines_ratio) and sig["bullet_lines_ratio"] > t.max_bullet_lines_ratio:
        return "gopher_bullet_lines"
    sig["ellipsis_lines_ratio"] = sum(map(methodcaller("endswith", ("...", "…")), map(str.rstrip, lines))) / len(lines)
    if _on(t.max_ellipsis_lines_ratio) and sig["ellipsis_lines_ratio"] > t.max_ellipsis_lines_ratio:
        return "gopher_ellipsis_lines"
    alpha = compress(counts, map(_HAS_ALPHA.__getitem__, counts))
    sig["alpha_words_ratio"] = sum(map(counts.__getitem__, alpha)) / n_words
    if _on(t.min_alpha_words_ratio) and sig["alpha_words_ratio"] < t.min_alpha_words_ratio:
        return "gopher_alpha_words"
    sig["stop_words"] = float(len((t.stop_words or frozenset()).intersection(counts)))  # case-sensitive, as datatrove
    if _on(t.min_stop_words) and sig["stop_words"] < t.min_stop_words:
        return "gopher_stop_words"
    return None


def _c4(text: str, t: RuleThresholds, sig: dict[str, float]) -> tuple[str | None, str]:
    """(first failing C4 rule, the text of the kept lines): datatrove's C4QualityFilter line by line."""
    sentences = removed = 0
    kept: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        n_words = len(line.split())
        if t.c4_max_word_length >= 0 and any(len(w) > t.c4_max_word_length for w in line.split()):
            removed += 1
            continue
        line = _CITATION.sub("", line) if "[" in line else line
        if t.c4_terminal_punct and (not line.endswith(C4_END_PUNCTUATION) or line.endswith("...")):
            removed += 1
            continue
        if n_words < t.c4_min_words_per_line:
            removed += 1
            continue
        lower = line.lower()
        if t.c4_lorem_ipsum and "lorem ipsum" in lower:
            return "c4_lorem_ipsum", text
        if t.c4_javascript and "javascript" in lower:
            removed += 1
            continue
        if t.c4_curly_bracket and "{" in line:
            return "c4_curly_bracket", text
        if t.c4_policy and any(p in lower for p in POLICY_SUBSTRINGS):
            removed += 1
            continue
        if t.c4_min_sentences >= 0:
            sentences += sentence_count(line)
        kept.append(line)
    sig["c4_sentences"], sig["c4_lines_removed"] = float(sentences), float(removed)
    if sentences < t.c4_min_sentences:
        return "c4_too_few_sentences", text
    return None, "\n".join(kept).strip() if t.c4_edit_lines else text


def _fineweb(text: str, t: RuleThresholds, sig: dict[str, float]) -> str | None:
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return "fineweb_empty"
    sig["line_punct_ratio"] = sum(line.endswith(_LINE_END) for line in lines) / len(lines)
    if sig["line_punct_ratio"] < t.line_punct_thr:
        return "fineweb_line_punct"
    sig["short_line_ratio"] = sum(len(line) <= t.short_line_length for line in lines) / len(lines)
    if 0 <= t.short_line_thr < sig["short_line_ratio"]:
        return "fineweb_short_lines"
    sig["char_dup_ratio"] = duplicates(lines)[1] / len(text.replace("\n", ""))
    if 0 <= t.char_dup_ratio < sig["char_dup_ratio"]:
        return "fineweb_char_dup"
    sig["newline_word_ratio"] = text.count("\n") / max(len(words(text)), 1)
    if 0 <= t.new_line_ratio < sig["newline_word_ratio"]:
        return "fineweb_list_ratio"
    return None


def apply_fineweb_rules(text: str, thresholds: RuleThresholds) -> RuleResult:
    """Gopher repetition, Gopher quality, C4 and FineWeb rules as datatrove runs them in FineWeb; stops at the first.

    Signals of rules that did not run are NaN. The returned text is C4's kept lines (when `c4_edit_lines`).
    """
    return run_families(text, words(text), thresholds, (_gopher_repetition, _gopher_quality, _c4, _fineweb))


FAMILIES = ("gopher_repetition", "gopher_quality", "c4", "fineweb")


def family_verdicts(text: str, thresholds: RuleThresholds) -> dict[str, tuple[str | None, str]]:
    """Each rule family's verdict on `text` alone, as (reason or None, the text after it), e.g. to compare with
    datatrove's filters one by one."""
    sig: dict[str, float] = dict.fromkeys(SIGNALS, float("nan"))
    tokens = words(text)
    return {
        "gopher_repetition": (_gopher_repetition(text, tokens, thresholds, sig), text),
        "gopher_quality": (_gopher_quality(text, tokens, thresholds, sig), text),
        "c4": _c4(text, thresholds, sig),
        "fineweb": (_fineweb(text, thresholds, sig), text),
    }
