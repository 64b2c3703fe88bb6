"""The FineWeb rule set: datatrove 0.10.1's four heuristic filters, verdict for verdict, and the rule presets.

`apply_fineweb_rules` gives the verdicts of datatrove's `GopherRepetitionFilter`, `GopherQualityFilter`,
`C4QualityFilter(filter_no_terminal_punct=False)` and `FineWebQualityFilter`, in FineWeb's order, for English:
- words are spaCy's blank English tokens (`mmrecipe.text.words`), so every punctuation mark is a word;
- duplicated 5-10-grams are counted as datatrove does: after a repeated n-gram, skip ahead n words;
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
from collections.abc import Callable
from functools import cached_property

import numpy as np

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
from mmrecipe.text.words import sentence_count, words

PRESETS = ("multilingual", "fineweb", "whitespace")
FINEWEB_LANGUAGE = "en"
_PUNCTUATION = frozenset(DATATROVE_PUNCTUATION)
_LINE_END = tuple(DATATROVE_TERMINAL_PUNCTUATION)
_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")
_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
Rules = Callable[[str, RuleThresholds], RuleResult]


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


_BASE = 1_000_003  # polynomial hashes of n-gram strings, modulo 2**64 (numpy's uint64 wraps)
_powers: list[np.ndarray] = []  # _BASE ** k and _BASE ** -k modulo 2**64, for k below their length


def _power_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(_BASE ** k, _BASE ** -k) modulo 2**64 for k < n at least, grown by doubling."""
    if not _powers or len(_powers[0]) < n:
        size = max(n, 1 << 16, 2 * len(_powers[0]) if _powers else 0)
        bases = (np.uint64(_BASE), np.uint64(pow(_BASE, -1, 1 << 64)))  # _BASE is odd: invertible
        _powers[:] = [np.cumprod(np.r_[np.uint64(1), np.full(size - 1, b, dtype=np.uint64)]) for b in bases]
    return _powers[0], _powers[1]


def _string_hashes(words: list[str], lengths: np.ndarray) -> np.ndarray:
    """Each word's polynomial hash, sum(ord(c) * _BASE ** (chars after c)) modulo 2**64, for all words at once.

    A concatenation's hash follows from its words' hashes and lengths: h(ab) = h(a) * _BASE ** len(b) + h(b).
    """
    chars = np.frombuffer("".join(words).encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
    up, down = _power_tables(len(chars) + 1)
    prefix = np.zeros(len(chars) + 1, dtype=np.uint64)
    np.cumsum(chars * down[: len(chars)], out=prefix[1:])  # sum of ord(c_j) * _BASE ** -j
    ends = np.cumsum(lengths)
    return (prefix[ends] - prefix[ends - lengths]) * up[ends - 1]


class _WordGrams:
    """A document's word n-grams, counted as datatrove counts them without building every n-gram's string.

    Top 2-4-grams (words joined with spaces; words hold no whitespace, so equal strings are equal word tuples)
    are numbered exactly, n-gram by n-gram. Duplicated 5-10-grams (words joined without spaces, so different
    word tuples can be equal strings) are first grouped by a hash of their string; only n-grams whose hash
    repeats get their string built and compared, so the result is exact.
    """

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        index = {t: i for i, t in enumerate(dict.fromkeys(tokens))}  # words numbered in order of first use
        self.ids = np.fromiter(map(index.__getitem__, tokens), dtype=np.int64, count=len(tokens))
        self.vocab, self.words = len(index), list(index)
        self._tuples = {1: self.ids}
        self.word_lengths = np.fromiter(map(len, self.words), dtype=np.int64, count=self.vocab)
        self.lengths = self.word_lengths[self.ids]
        self.offsets = np.concatenate(([0], np.cumsum(self.lengths)))
        self._word_hashes: np.ndarray | None = None  # per position, the word's hash
        self._grams: tuple[int, np.ndarray | None] = (0, None)  # (n, the n-grams' hashes)

    def _tuple_ids(self, n: int) -> np.ndarray:
        """Per position, the number of its word n-gram (equal numbers: equal word tuples)."""
        if n not in self._tuples:
            previous = self._tuple_ids(n - 1)
            keys = previous[:-1] * self.vocab + self.ids[n - 1 :]
            self._tuples[n] = np.unique(keys, return_inverse=True)[1].reshape(-1)
        return self._tuples[n]

    def top_chars(self, n: int) -> int:
        """Characters of the most frequent n-gram (joined with spaces) times its count; ties: the first seen."""
        ids = self._tuple_ids(n)
        counts = np.bincount(ids)
        top = counts.max()
        at = int(np.argmax(counts[ids] == top))  # the first position of a most frequent n-gram
        return (int(self.lengths[at : at + n].sum()) + n - 1) * int(top)

    def _hashes(self, n: int) -> np.ndarray:
        """Per position, a 64-bit hash of the n-gram's string.

        Called with growing n: n-gram m's hash extends n-gram m-1's by one word's.
        """
        if self._word_hashes is None:
            self._word_hashes = _string_hashes(self.words, self.word_lengths)[self.ids]
            self._grams = (1, self._word_hashes)
        have, grams = self._grams
        if n < have:
            raise ValueError(f"n-gram hashes go up from {have}, not back to {n}")
        up = _power_tables(int(self.word_lengths.max()) + 1)[0]
        for m in range(have + 1, n + 1):
            grams = grams[:-1] * up[self.lengths[m - 1 :]] + self._word_hashes[m - 1 :]  # type: ignore[index]
        self._grams = (n, grams)
        return grams

    @cached_property
    def _joined(self) -> tuple[str, list[int]]:
        """The words joined without spaces, and where each word starts in that string."""
        return "".join(self.tokens), self.offsets.tolist()

    def skip_ahead_chars(self, n: int) -> int:
        """Characters of repeated n-grams (words joined without spaces), skipping n words after each repeat."""
        if len(self.tokens) < n:
            return 0
        hashes = self._hashes(n)  # an n-gram whose hash is unique cannot repeat
        order = np.argsort(hashes)
        ordered = hashes[order]
        repeats = np.zeros(len(hashes), dtype=bool)
        same = ordered[1:] == ordered[:-1]
        repeats[order[1:][same]] = True
        repeats[order[:-1][same]] = True
        positions = np.flatnonzero(repeats).tolist()
        if not positions:
            return 0
        text, offsets = self._joined
        seen: set[str] = set()
        repeated = next_free = 0
        for i in positions:
            if i < next_free:
                continue
            gram = text[offsets[i] : offsets[i + n]]
            if gram in seen:
                repeated += len(gram)
                next_free = i + n
            else:
                seen.add(gram)
        return repeated


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
    grams = _WordGrams(tokens)
    for n in range(2, 11):
        name, limit = _ngram_signal(n), getattr(t, _ngram_signal(n))
        if limit < 0:
            continue
        if n <= 4:
            if len(tokens) < n:
                continue
            sig[name] = grams.top_chars(n) / len(text)
        else:
            sig[name] = grams.skip_ahead_chars(n) / len(text)
        if sig[name] > limit:
            return f"gopher_{name.removesuffix('_frac')}"
    return None


def _gopher_quality(text: str, tokens: list[str], t: RuleThresholds, sig: dict[str, float]) -> str | None:
    n_words = len(tokens)
    distinct = set(tokens)  # each test runs once per distinct word
    symbols = {w for w in distinct if _PUNCTUATION.issuperset(w)}
    non_symbol = [w for w in tokens if w not in symbols] if symbols else tokens
    sig["n_words"] = float(len(non_symbol))
    if _on(t.min_doc_words) and len(non_symbol) < t.min_doc_words:
        return "gopher_short_doc"
    if _on(t.max_doc_words) and len(non_symbol) > t.max_doc_words:
        return "gopher_long_doc"
    sig["avg_word_length"] = sum(map(len, non_symbol)) / len(non_symbol) if non_symbol else float("nan")
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
    sig["bullet_lines_ratio"] = sum(s.lstrip().startswith(("•", "-")) for s in lines) / len(lines)
    if _on(t.max_bullet_lines_ratio) and sig["bullet_lines_ratio"] > t.max_bullet_lines_ratio:
        return "gopher_bullet_lines"
    sig["ellipsis_lines_ratio"] = sum(s.rstrip().endswith(("...", "…")) for s in lines) / len(lines)
    if _on(t.max_ellipsis_lines_ratio) and sig["ellipsis_lines_ratio"] > t.max_ellipsis_lines_ratio:
        return "gopher_ellipsis_lines"
    alpha = {w for w in distinct if w.isalpha() or any(map(str.isalpha, w))}
    sig["alpha_words_ratio"] = sum(map(alpha.__contains__, tokens)) / n_words
    if _on(t.min_alpha_words_ratio) and sig["alpha_words_ratio"] < t.min_alpha_words_ratio:
        return "gopher_alpha_words"
    sig["stop_words"] = float(len((t.stop_words or frozenset()).intersection(distinct)))  # case-sensitive, as datatrove
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
