"""The whitespace rule set: Gopher / C4 / FineWeb heuristics over whitespace-separated words, for any language.

This is the rule set of the `whitespace` preset, and of every language but English under the default
`multilingual` preset (FineWeb-2 style: per-language thresholds). English documents get datatrove's exact
verdicts from `fineweb_rules` instead. The rules, their order (Gopher repetition, Gopher quality, C4, FineWeb)
and default thresholds are those of datatrove's filters as run in FineWeb (after Rae et al. 2021 and Raffel et
al. 2020); each failing rule has its own reason code (`gopher_short_doc`, `c4_curly_bracket`, ...).

Where this rule set differs from datatrove's (so its verdicts differ on some documents):
* Words are whitespace-separated tokens, as in the Gopher paper and Dolma's Gopher tagger (one token per
  character for CJK/Thai, which are written without spaces, and for which the word-length and word-n-gram rules
  are off by default); datatrove uses spaCy, whose punctuation tokens count as words. Stop words are matched
  case-insensitively with surrounding punctuation removed.
* The duplicated-n-gram fraction is the Gopher paper's definition: characters of all words covered by a
  repeated n-gram occurrence (first occurrences excluded, overlaps counted); datatrove skips ahead n words.
* C4 counts sentences by sentence-final punctuation (a regex), not spaCy's sentencizer.
* FineWeb's line-ending punctuation includes quotes and the ellipsis, and its short-line and duplicated-character
  ratios fail at `>=` where datatrove fails at `>`.
* Language-bound thresholds are per language: stop words for common languages, and for Chinese, Japanese and
  Thai (one token per character) the average-word-length rule is off.
* The C4 terminal-punctuation line filter is off by default, as in FineWeb (which replaces it with
  `fineweb_line_punct`); when it is on and the document then has too few sentences because of it, the reason
  is `c4_terminal_punct`.

Rules whose threshold is negative are disabled.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from itertools import chain, compress, filterfalse
from operator import methodcaller, mul
from typing import Any

from mmrecipe.text._word_ngrams import covered_chars

STOP_WORDS: dict[str, frozenset[str]] = {
    # Gopher's English list; for other languages, the most frequent function words of the language.
    "en": frozenset({"the", "be", "to", "of", "and", "that", "have", "with"}),
    "de": frozenset({"der", "die", "das", "und", "ist", "zu", "den", "mit", "nicht", "von", "sie", "ein"}),
    "fr": frozenset({"de", "la", "le", "et", "les", "des", "en", "un", "une", "est", "que", "pour"}),
    "es": frozenset({"de", "la", "que", "el", "en", "y", "los", "del", "se", "las", "por", "un"}),
    "it": frozenset({"di", "e", "il", "la", "che", "in", "per", "un", "del", "non", "una", "sono"}),
    "pt": frozenset({"de", "a", "o", "que", "e", "do", "da", "em", "um", "para", "os", "não"}),
    "nl": frozenset({"de", "het", "een", "en", "van", "in", "is", "dat", "op", "te", "zijn", "niet"}),
    "ru": frozenset({"и", "в", "не", "на", "что", "с", "по", "это", "как", "к", "для", "из"}),
    "ja": frozenset({"の", "に", "は", "を", "た", "が", "で", "て", "と", "し", "れ", "な"}),
    "zh": frozenset({"的", "了", "是", "在", "和", "有", "不", "这", "我", "个", "们", "中"}),
}
END_PUNCTUATION = (".", "?", "!", '"', "'", "。", "！", "？", "”", "’", "」", "』", "؟", "।", "॥", "…")
C4_END_PUNCTUATION = (".", "?", "!", '"', "'")
BULLETS = ("•", "-", "*", "·", "‣", "◦", "▪", "–")
POLICY_SUBSTRINGS = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_ONE_CHAR_SCRIPTS = r"\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff01-\uff65"  # Thai, CJK
_TOKEN = re.compile(rf"[{_ONE_CHAR_SCRIPTS}]|[^\s{_ONE_CHAR_SCRIPTS}]+")
_HAS_ONE_CHAR_SCRIPT = re.compile(rf"[{_ONE_CHAR_SCRIPTS}]")
_HAS_ALNUM = re.compile(r"[^\W_]")
_HAS_ALPHA = re.compile(r"[^\W\d_]")
_OPENING, _CLOSING = "\"'(«“‘¿¡[", "\"'),.;:!?»”’]。、，"
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|(?<=[。！？])")
_SENTENCE_BREAK = re.compile(r"[.!?。！？][^\S\n]+(?=\S)|[。！？](?=[^\s])")  # a break inside one line
_PARAGRAPH = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


@dataclass(frozen=True)
class RuleThresholds:
    """Gopher, C4 and FineWeb thresholds (datatrove/FineWeb defaults); negative values disable a rule."""

    # Gopher repetition
    dup_line_frac: float = 0.3
    dup_para_frac: float = 0.3
    dup_line_char_frac: float = 0.2
    dup_para_char_frac: float = 0.2
    top_2gram_frac: float = 0.20
    top_3gram_frac: float = 0.18
    top_4gram_frac: float = 0.16
    dup_5gram_frac: float = 0.15
    dup_6gram_frac: float = 0.14
    dup_7gram_frac: float = 0.13
    dup_8gram_frac: float = 0.12
    dup_9gram_frac: float = 0.11
    dup_10gram_frac: float = 0.10
    # Gopher quality
    min_doc_words: float = 50
    max_doc_words: float = 100_000
    min_avg_word_length: float = 3
    max_avg_word_length: float = 10
    max_hash_word_ratio: float = 0.1
    max_ellipsis_word_ratio: float = 0.1
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8
    min_stop_words: float = 2
    # C4
    c4_min_sentences: float = 5
    c4_min_words_per_line: float = 3
    c4_max_word_length: float = 1000
    c4_lorem_ipsum: bool = True
    c4_curly_bracket: bool = True
    c4_javascript: bool = True
    c4_policy: bool = True
    c4_terminal_punct: bool = False
    c4_edit_lines: bool = True  # keep only the lines C4 keeps, as datatrove does
    # FineWeb
    line_punct_thr: float = 0.12
    short_line_thr: float = 0.67
    short_line_length: float = 30
    char_dup_ratio: float = 0.01
    new_line_ratio: float = 0.3
    stop_words: frozenset[str] | None = field(default=None, compare=False)

    def with_overrides(self, overrides: Mapping[str, Any]) -> RuleThresholds:
        """A copy with some thresholds replaced; unknown names raise a ValueError that lists the valid ones."""
        names = {f.name for f in fields(self)} - {"stop_words"}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown quality thresholds {unknown}: valid names are {sorted(names)}")
        return replace(self, **overrides)


# Language-bound defaults: scripts written without spaces get one token per character, so word-length
# and word-n-gram rules do not apply to them (their n-grams are character n-grams).
_CHARACTER_TOKENS = {"min_avg_word_length": -1, "max_avg_word_length": -1} | {
    f"top_{n}gram_frac" if n <= 4 else f"dup_{n}gram_frac": -1 for n in range(2, 11)
}
LANGUAGE_OVERRIDES: dict[str, dict[str, Any]] = {lang: dict(_CHARACTER_TOKENS) for lang in ("zh", "ja", "th")}


def thresholds_for(
    language: str, base: RuleThresholds = RuleThresholds(), overrides: Mapping[str, Mapping[str, Any]] | None = None
) -> RuleThresholds:
    """The thresholds for one language: base, then built-in language defaults, then configured overrides."""
    out = base.with_overrides(LANGUAGE_OVERRIDES.get(language, {}))
    out = out.with_overrides((overrides or {}).get(language, {}))
    if out.stop_words is None:
        words = STOP_WORDS.get(language)
        out = replace(out, stop_words=words) if words else out.with_overrides({"min_stop_words": -1})
    return out


@dataclass
class RuleResult:
    """The first failing rule (None if the document passes), its detail, all signals, and the kept text."""

    reason: str | None
    detail: str
    signals: dict[str, float]
    text: str


@lru_cache(maxsize=64)
def _stop_word_forms(stop_words: frozenset[str]) -> dict[str, str]:
    """Each stop word with the punctuation that can stick to it in a whitespace token → the bare word."""
    forms = {}
    for w in stop_words:
        for before in ("", *_OPENING):
            for after in ("", *_CLOSING):
                forms[before + w + after] = w
    return forms


def tokenize(text: str) -> list[str]:
    """Whitespace-separated words of a text (one token per CJK/Thai character)."""
    return _TOKEN.findall(text) if _HAS_ONE_CHAR_SCRIPT.search(text) else text.split()


def duplicates(items: list[str]) -> tuple[int, int]:
    """(number of repeated elements, their total characters), first occurrences excluded."""
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


def _ngram_signal(n: int) -> str:
    return f"top_{n}gram_frac" if n <= 4 else f"dup_{n}gram_frac"


def _repetition_signals(words: list[str], text_len: int, t: RuleThresholds | None = None) -> dict[str, float]:
    """Top 2-4-gram and duplicated 5-10-gram character fractions (Gopher), counted by `_word_ngrams.c`.

    A top n-gram is the most frequent word tuple (the earliest of equals); a duplicated n-gram's characters are
    those of every word covered by a word tuple seen before. With thresholds `t`, stops after the first failing
    n (the later signals stay NaN), as datatrove does.
    """
    out = {_ngram_signal(n): 0.0 if len(words) < n or text_len == 0 else float("nan") for n in range(2, 11)}
    if text_len == 0 or len(words) < 2:
        return out
    for n, chars in zip(range(2, min(len(words), 10) + 1), covered_chars(words), strict=False):
        out[_ngram_signal(n)] = chars / text_len
        if t is not None and 0 <= getattr(t, _ngram_signal(n)) < out[_ngram_signal(n)]:
            break
    return out


def _gopher_repetition(text: str, words: list[str], t: RuleThresholds, sig: dict[str, float]) -> str | None:
    paragraphs = _PARAGRAPH.split(text.strip())
    n_dup, chars_dup = duplicates(paragraphs)
    sig["dup_para_frac"] = n_dup / max(len(paragraphs), 1)
    sig["dup_para_char_frac"] = chars_dup / max(len(text), 1)
    lines = _LINES.split(text)
    n_dup, chars_dup = duplicates(lines)
    sig["dup_line_frac"] = n_dup / max(len(lines), 1)
    sig["dup_line_char_frac"] = chars_dup / max(len(text), 1)
    for name in ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac"):
        if 0 <= getattr(t, name) < sig[name]:
            return f"gopher_{name}"
    sig |= _repetition_signals(words, len(text), t)
    for n in range(2, 11):
        name = _ngram_signal(n)
        if 0 <= getattr(t, name) < sig[name]:
            return f"gopher_{name.removesuffix('_frac')}"
    return None


def _gopher_quality(text: str, words: list[str], t: RuleThresholds, sig: dict[str, float]) -> str | None:
    counts = Counter(words)  # each test runs once per distinct word
    alpha = list(filter(str.isalpha, counts))  # the common case, without a regex call per word
    others = list(filterfalse(str.isalpha, counts))
    non_symbol = alpha + list(compress(others, map(_HAS_ALNUM.search, others)))
    n_non_symbol = sum(map(counts.__getitem__, non_symbol))
    n_words = max(len(words), 1)
    sig["n_words"] = float(n_non_symbol)
    chars = sum(map(mul, map(len, non_symbol), map(counts.__getitem__, non_symbol)))
    sig["avg_word_length"] = chars / n_non_symbol if n_non_symbol else 0.0
    sig["hash_word_ratio"] = text.count("#") / n_words
    sig["ellipsis_word_ratio"] = (text.count("...") + text.count("…")) / n_words
    lines = text.splitlines() or [""]
    sig["bullet_lines_ratio"] = sum(map(methodcaller("startswith", BULLETS), map(str.lstrip, lines))) / len(lines)
    ellipsis_lines = sum(map(methodcaller("endswith", ("...", "…")), map(str.rstrip, lines)))
    sig["ellipsis_lines_ratio"] = ellipsis_lines / len(lines)
    alpha_words = compress(others, map(_HAS_ALPHA.search, others))
    sig["alpha_words_ratio"] = sum(map(counts.__getitem__, chain(alpha, alpha_words))) / n_words
    forms = _stop_word_forms(t.stop_words or frozenset())
    found = forms.keys() & set(map(str.lower, counts) if forms else ())
    sig["stop_words"] = float(len({forms[f] for f in found}))
    checks = (
        ("gopher_short_doc", t.min_doc_words >= 0 and sig["n_words"] < t.min_doc_words),
        ("gopher_long_doc", t.max_doc_words >= 0 and sig["n_words"] > t.max_doc_words),
        ("gopher_avg_word_length_low", t.min_avg_word_length >= 0 and sig["avg_word_length"] < t.min_avg_word_length),
        ("gopher_avg_word_length_high", t.max_avg_word_length >= 0 and sig["avg_word_length"] > t.max_avg_word_length),
        ("gopher_hash_ratio", 0 <= t.max_hash_word_ratio < sig["hash_word_ratio"]),
        ("gopher_ellipsis_ratio", 0 <= t.max_ellipsis_word_ratio < sig["ellipsis_word_ratio"]),
        ("gopher_bullet_lines", 0 <= t.max_bullet_lines_ratio < sig["bullet_lines_ratio"]),
        ("gopher_ellipsis_lines", 0 <= t.max_ellipsis_lines_ratio < sig["ellipsis_lines_ratio"]),
        ("gopher_alpha_words", t.min_alpha_words_ratio >= 0 and sig["alpha_words_ratio"] < t.min_alpha_words_ratio),
        ("gopher_stop_words", t.min_stop_words >= 0 and sig["stop_words"] < t.min_stop_words),
    )
    return next((reason for reason, failed in checks if failed), None)


def count_sentences(line: str) -> int:
    """Sentences in a line: pieces separated by sentence-final punctuation."""
    return sum(1 for s in _SENTENCE_END.split(line) if s.strip())


def _c4_only_short_lines(text: str, t: RuleThresholds) -> bool:
    """Whether no C4 line rule but the words-per-line one can apply (most documents): checked on the whole text."""
    if t.c4_terminal_punct or "{" in text or "[" in text:
        return False
    lower = text.lower()
    if "javascript" in lower or "lorem ipsum" in lower or any(p in lower for p in POLICY_SUBSTRINGS):
        return False
    return t.c4_max_word_length < 0 or max(map(len, text.split()), default=0) <= t.c4_max_word_length


C4Edit = tuple[list[str], int, int, str | None]


def c4_edit(text: str, t: RuleThresholds) -> C4Edit:
    """(kept lines, lines removed, sentences in lines cut for their punctuation, first document-level reason).

    Most documents can only lose lines for having too few words; those skip the per-line rule checks.
    """
    if not _c4_only_short_lines(text, t):
        return c4_edit_lines(text, t)
    lines = [line for line in map(str.strip, text.splitlines()) if line]
    kept = lines if t.c4_min_words_per_line < 0 else [x for x in lines if len(x.split()) >= t.c4_min_words_per_line]
    return kept, len(lines) - len(kept), 0, None


def c4_edit_lines(text: str, t: RuleThresholds) -> C4Edit:
    """`c4_edit` with every C4 line rule checked on every line."""
    kept: list[str] = []
    sentences_cut_by_punct = removed = 0
    reason = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        words = line.split()
        if t.c4_max_word_length >= 0 and max(map(len, words)) > t.c4_max_word_length:
            removed += 1
            continue
        if "[" in line:
            line = _CITATION.sub("", line)
        if t.c4_terminal_punct and (not line.endswith(C4_END_PUNCTUATION) or line.endswith("...")):
            removed += 1
            sentences_cut_by_punct += count_sentences(line)
            continue
        if t.c4_min_words_per_line >= 0 and len(words) < t.c4_min_words_per_line:
            removed += 1
            continue
        lower = line.lower()
        if t.c4_lorem_ipsum and "lorem ipsum" in lower:
            reason = reason or "c4_lorem_ipsum"
        if t.c4_javascript and "javascript" in lower:
            removed += 1
            continue
        if t.c4_curly_bracket and "{" in line:
            reason = reason or "c4_curly_bracket"
        if (
            t.c4_policy
            and ("polic" in lower or "cookie" in lower or "terms" in lower)
            and any(p in lower for p in POLICY_SUBSTRINGS)
        ):
            removed += 1
            continue
        kept.append(line)
    return kept, removed, sentences_cut_by_punct, reason


def _c4(text: str, t: RuleThresholds, sig: dict[str, float]) -> tuple[str | None, str]:
    kept, removed, sentences_cut_by_punct, reason = c4_edit(text, t)
    joined = "\n".join(kept)
    sentences = len(kept) + len(_SENTENCE_BREAK.findall(joined))  # = sum(count_sentences(line) for kept lines)
    sig["c4_sentences"] = float(sentences)
    sig["c4_lines_removed"] = float(removed)
    if reason is None and t.c4_min_sentences >= 0 and sentences < t.c4_min_sentences:
        cut = sentences + sentences_cut_by_punct >= t.c4_min_sentences
        reason = "c4_terminal_punct" if cut else "c4_too_few_sentences"
    return reason, joined if t.c4_edit_lines else text


def _fineweb(text: str, t: RuleThresholds, sig: dict[str, float]) -> str | None:
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        return "fineweb_empty"
    sig["line_punct_ratio"] = sum(line.rstrip().endswith(END_PUNCTUATION) for line in lines) / len(lines)
    sig["short_line_ratio"] = sum(len(line) <= t.short_line_length for line in lines) / len(lines)
    sig["char_dup_ratio"] = duplicates(lines)[1] / max(len(text.replace("\n", "")), 1)
    sig["newline_word_ratio"] = text.count("\n") / max(len(tokenize(text)), 1)
    if t.line_punct_thr >= 0 and sig["line_punct_ratio"] < t.line_punct_thr:
        return "fineweb_line_punct"
    if t.short_line_thr >= 0 and sig["short_line_ratio"] >= t.short_line_thr:
        return "fineweb_short_lines"
    if t.char_dup_ratio >= 0 and sig["char_dup_ratio"] >= t.char_dup_ratio:
        return "fineweb_char_dup"
    if t.new_line_ratio >= 0 and sig["newline_word_ratio"] > t.new_line_ratio:
        return "fineweb_list_ratio"
    return None


SIGNALS = (
    ["dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac"]
    + [f"top_{n}gram_frac" for n in (2, 3, 4)]
    + [f"dup_{n}gram_frac" for n in range(5, 11)]
    + ["n_words", "avg_word_length", "hash_word_ratio", "ellipsis_word_ratio", "bullet_lines_ratio"]
    + ["ellipsis_lines_ratio", "alpha_words_ratio", "stop_words", "c4_sentences", "c4_lines_removed"]
    + ["line_punct_ratio", "short_line_ratio", "char_dup_ratio", "newline_word_ratio"]
)


def apply_rules(text: str, thresholds: RuleThresholds) -> RuleResult:
    """Gopher repetition, Gopher quality, C4 and FineWeb rules in that order; stops at the first failure.

    Signals of stages that did not run are NaN. C4 may remove lines: FineWeb rules and the returned
    text use the C4-kept lines (when `c4_edit_lines`).
    """
    return run_families(text, tokenize(text), thresholds, (_gopher_repetition, _gopher_quality, _c4, _fineweb))


WordRule = Callable[[str, list[str], RuleThresholds, dict[str, float]], str | None]
TextRule = Callable[[str, RuleThresholds, dict[str, float]], str | None]
LineRule = Callable[[str, RuleThresholds, dict[str, float]], tuple[str | None, str]]


def run_families(
    text: str, words: list[str], thresholds: RuleThresholds, rules: tuple[WordRule, WordRule, LineRule, TextRule]
) -> RuleResult:
    """Gopher repetition, Gopher quality, C4 and FineWeb families in that order, stopping at the first failure.

    Signals of families that did not run are NaN. C4 may remove lines: FineWeb and the returned text use the
    C4-kept lines.
    """
    gopher_repetition, gopher_quality, c4, fineweb = rules
    sig: dict[str, float] = dict.fromkeys(SIGNALS, float("nan"))
    reason = gopher_repetition(text, words, thresholds, sig) or gopher_quality(text, words, thresholds, sig)
    if reason:
        return RuleResult(reason, signal_detail(reason, sig), sig, text)
    reason, kept = c4(text, thresholds, sig)
    if reason:
        return RuleResult(reason, signal_detail(reason, sig), sig, text)
    reason = fineweb(kept, thresholds, sig)
    return RuleResult(reason, signal_detail(reason, sig) if reason else "", sig, kept)


def signal_detail(reason: str | None, sig: dict[str, float]) -> str:
    """The detail of a verdict: `reason: signal=value, ...` over the signals that were computed."""
    shown = {k: round(v, 4) for k, v in sig.items() if v == v}
    return f"{reason}: " + ", ".join(f"{k}={v}" for k, v in shown.items())
