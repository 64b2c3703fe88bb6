"""The compiled n-gram counts of the Gopher repetition filter against datatrove 0.10.1's own two functions.

`find_top_duplicate` and `find_all_duplicate` below are datatrove's `gopher_repetition_filter` functions, restated
as the oracle (datatrove itself runs in tests/reference, in its own environment).
"""

import importlib.metadata
import random
from collections import Counter

import pytest

from mmrecipe.text._word_ngrams import repeated_chars
from mmrecipe.text.words import words


def find_top_duplicate(x: list[str]) -> int:
    if not x:
        return 0
    top_n_gram = Counter(x).most_common(1)[0]
    return len(top_n_gram[0]) * top_n_gram[1]


def find_all_duplicate(words: list[str], n: int) -> int:
    unique, repeated_chars, idx = set(), 0, 0
    while idx < len(words) - n + 1:
        n_gram = "".join(words[idx : idx + n])
        if n_gram in unique:
            repeated_chars += len(n_gram)
            idx += n
        else:
            unique.add(n_gram)
            idx += 1
    return repeated_chars


def datatrove_counts(tokens: list[str]) -> tuple[int, ...]:
    top = [find_top_duplicate([" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]) for n in (2, 3, 4)]
    return (*top, *(find_all_duplicate(tokens, n) for n in range(5, 11)))


def test_counts_match_datatrove_on_real_readmes() -> None:
    """spaCy words of the installed packages' READMEs (prose, code, tables): every count equal, many non-zero."""
    texts = [d.metadata.get_payload() or "" for d in importlib.metadata.distributions()]
    texts = sorted(t for t in texts if len(t) > 2_000)[:120]
    assert len(texts) >= 60
    nonzero = [0] * 9
    for text in texts:
        tokens = words(text)
        ours = repeated_chars(tokens)
        assert ours == datatrove_counts(tokens)
        nonzero = [k + (v > 0) for k, v in zip(nonzero, ours, strict=True)]
    assert min(nonzero) >= 20  # every n-gram size found repeats in many documents


def test_equal_strings_of_different_words_repeat() -> None:
    """Joined without spaces, ("ab", "c", ...) and ("a", "bc", ...) are the same 5-gram string: a repeat."""
    tokens = ["ab", "c", "d", "e", "f", "a", "bc", "d", "e", "f"]
    assert datatrove_counts(tokens)[3] == 6  # "abcdef" once more
    assert repeated_chars(tokens) == datatrove_counts(tokens)


def test_counts_match_datatrove_on_random_word_lists() -> None:
    """Few distinct words (many repeats, many equal strings of different words), non-ASCII ones included."""
    rng = random.Random(16)
    alphabet = ["a", "b", "ab", "ba", "aa", "é", "aé", "😀", "a😀", "xyz", ""]
    for _ in range(3_000):
        tokens = [rng.choice(alphabet[: rng.randint(1, len(alphabet))]) for _ in range(rng.randint(0, 60))]
        assert repeated_chars(tokens) == datatrove_counts(tokens), tokens


def test_short_and_bad_inputs() -> None:
    assert repeated_chars([]) == (0,) * 9
    assert repeated_chars(["word"]) == (0,) * 9
    assert repeated_chars(("a", "a", "a")) == (6, 5, 0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(TypeError, match="words must be str, not int"):
        repeated_chars(["a", 1])
    with pytest.raises(TypeError, match="sequence of str"):
        repeated_chars(3)


def test_equal_strings_with_an_empty_word_at_the_end() -> None:
    """The string "pqrsxy" twice as 6-grams: the first ends in an empty word, the second ends the document."""
    tokens = ["p", "q", "r", "s", "xy", "", "p", "q", "r", "s", "x", "y"]
    assert datatrove_counts(tokens)[4] == 6
    assert repeated_chars(tokens) == datatrove_counts(tokens)
