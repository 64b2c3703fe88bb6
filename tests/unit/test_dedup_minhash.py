"""MinHash signatures, band hashes and exact keys on real text (Python's own documentation topics)."""

import subprocess
import sys
from pydoc_data.topics import topics

import numpy as np
import pytest

from mmrecipe.dedup.minhash import (
    _P,
    MinHashConfig,
    _words,
    band_hashes,
    exact_key,
    exact_keys,
    fmix32,
    minhash_signatures,
    permutations,
    shingle_hashes,
    simplify,
)

TEXTS = [t for t in topics.values() if len(t.split()) > 300][:12]


def reference_word_hashes(text: str) -> np.ndarray:
    """Word hashes computed one character at a time from `simplify`'s reference tokenization."""
    out = []
    for word in simplify(text).split():
        h = sum((ord(c) + 1) * pow(int(_P), i, 1 << 32) for i, c in enumerate(word)) % (1 << 32)
        out.append(h)
    return fmix32(np.array(out, dtype=np.uint32)).astype(np.uint64)


@pytest.mark.parametrize(
    "text",
    [
        "Héllo, wörld! 123 45.6 ok_go",
        "中文字符 テスト abc 😀x",
        "naïve café — 2024-01-02",
        "a\u0301b 1\u03012",
        "",
        "   \n\t ",
        TEXTS[0],
    ],
)
def test_vectorised_words_equal_the_reference_tokenizer(text: str) -> None:
    hashes, doc = _words([text])
    assert np.array_equal(hashes, reference_word_hashes(text))
    assert len(hashes) == len(simplify(text).split())
    assert (doc == 0).all()


def test_simplify_folds_case_accents_digits_and_punctuation() -> None:
    assert simplify("Café, CAFE! 2024") == "cafe cafe 0000"
    assert simplify("中文 ok") == "中 文 ok"


def test_signatures_are_bit_identical_to_datasketch_affine32() -> None:
    from datasketch import MinHash  # with scipy ~2 CPU-s: paid by the test that uses it, not by collection

    shingles, doc_of = shingle_hashes(TEXTS, 5)
    sig, n_shingles = minhash_signatures(TEXTS)
    assert sig.shape == (len(TEXTS), 112) and sig.dtype == np.uint32
    for i in range(len(TEXTS)):
        m = MinHash(num_perm=112, seed=1, hashfunc=lambda h: h)
        m.update_batch(shingles[doc_of == i].tolist())
        assert np.array_equal(m.hashvalues, sig[i])
        assert n_shingles[i] == len(simplify(TEXTS[i]).split()) - 4


def test_permutations_are_datasketchs_without_importing_it() -> None:
    from datasketch import MinHash

    for num_perm, seed in ((112, 1), (128, 42), (7, 0)):
        a, b = permutations(num_perm, seed)
        expected = MinHash(num_perm=num_perm, seed=seed).permutations
        assert a.dtype == b.dtype == np.uint32
        assert np.array_equal(a, expected[0]) and np.array_equal(b, expected[1])
    code = "import sys; from mmrecipe.dedup import minhash_signatures; minhash_signatures(['a b c d e f']); "
    code += "print(sorted(m for m in ('datasketch', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_signature_does_not_depend_on_its_batch() -> None:
    together, _ = minhash_signatures(TEXTS)
    alone = np.vstack([minhash_signatures([t])[0] for t in TEXTS])
    assert np.array_equal(together, alone)


def _jaccard(a: str, b: str) -> float:
    sa, sb = set(shingle_hashes([a])[0].tolist()), set(shingle_hashes([b])[0].tolist())
    return len(sa & sb) / len(sa | sb)


@pytest.mark.parametrize("cut", [0.0, 0.1, 0.3, 0.6])
def test_estimated_jaccard_tracks_the_true_jaccard(cut: float) -> None:
    text = TEXTS[1]
    words = text.split()
    edited = " ".join(words[: int(len(words) * (1 - cut))])
    sig, _ = minhash_signatures([text, edited])
    estimate = float(np.mean(sig[0] == sig[1]))
    assert abs(estimate - _jaccard(text, edited)) < 0.12


def test_band_hashes_match_exactly_when_the_band_matches() -> None:
    sig, _ = minhash_signatures(TEXTS[:4])
    other = sig.copy()
    other[1, 0] ^= 1  # one value in band 0 of document 1
    bands, other_bands = band_hashes(sig), band_hashes(other)
    assert bands.shape == (4, 14) and bands.dtype == np.uint64
    assert (bands[1, 0] != other_bands[1, 0]) and np.array_equal(bands[1, 1:], other_bands[1, 1:])
    assert np.array_equal(np.delete(bands, 1, 0), np.delete(other_bands, 1, 0))
    assert len(np.unique(bands[:, 0])) == 4  # different documents, different buckets


def test_short_and_empty_texts() -> None:
    sig, n = minhash_signatures(["", "two words", "Two  words!", "one two three four five six"])
    assert n.tolist() == [0, 1, 1, 2]
    assert (sig[0] == np.uint32(0xFFFFFFFF)).all()
    assert np.array_equal(sig[1], sig[2])
    assert not np.array_equal(sig[1], sig[3])


def test_config_validates_bands_and_rows() -> None:
    assert MinHashConfig().threshold() == pytest.approx((1 / 14) ** (1 / 8))
    with pytest.raises(ValueError, match="bands x rows"):
        MinHashConfig(num_perm=100, bands=14, rows=8)


def test_exact_keys_ignore_case_and_spacing_only() -> None:
    base = TEXTS[2]
    assert exact_key(base) == exact_key("  " + base.upper().replace(" ", "\n  ") + "\n")
    assert exact_key(base) != exact_key(base + ".")
    keys = exact_keys(TEXTS)
    assert keys.dtype == np.uint64 and len(set(keys.tolist())) == len(TEXTS)
