"""MinHash signatures, LSH band hashes and exact keys of texts, computed for a whole batch at once in numpy.

Shingling follows FineWeb: text is simplified (lower case, accents and punctuation removed, digits
folded to 0, CJK/Thai characters split into one token each) and cut into word 5-grams. Every step
after the regex simplification is vectorised over the batch:

1. the simplified texts are joined into one UTF-8 byte array; word boundaries come from `buf == space`;
2. each word gets a 32-bit polynomial hash from one prefix sum over the batch (code point * P**i,
   rescaled by P**-start), then fmix32;
3. each 5-gram is a fixed linear combination of its five word hashes, mixed, truncated to 32 bits;
4. the 112 permutations are datasketch 2.x's `affine32` scheme applied to all shingles as one
   (shingles x 112) array: `fmix32(h) * a + b (mod 2**32)`, with `a, b` those of
   `datasketch.MinHash(num_perm, seed).permutations`; the signature is the per-document column minimum.

Step 4 is bit-for-bit what `datasketch.MinHash(num_perm, seed, hashfunc=lambda h: h).update_batch(...)`
computes on the same shingle hashes (a unit test checks it), so signatures can be loaded into
datasketch's `LeanMinHash`/`MinHashLSH` (scheme "affine32") when that is convenient.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

U32_MAX = np.uint32(0xFFFFFFFF)
_SPACE = 32
_P = np.uint32(0x01000193)  # FNV-32 prime: odd, so it is invertible modulo 2**32
_NGRAM_KEYS = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93, 0xFF51AFD7ED558CCD]
    + [0xC4CEB9FE1A85EC53 ^ (i * 0x9E3779B97F4A7C15 % (1 << 64)) | 1 for i in range(1, 64)],
    dtype=np.uint64,
)
_BAND_KEYS = np.array([(0x9E3779B97F4A7C15 * (2 * i + 1)) % (1 << 64) | 1 for i in range(256)], dtype=np.uint64)


@dataclass(frozen=True)
class MinHashConfig:
    """MinHash/LSH parameters; the defaults are FineWeb's (word 5-grams, 112 = 14 bands x 8 rows)."""

    num_perm: int = 112
    ngram: int = 5
    bands: int = 14
    rows: int = 8
    seed: int = 1

    def __post_init__(self) -> None:
        if self.bands * self.rows != self.num_perm:
            raise ValueError(f"bands x rows must equal num_perm: {self.bands} x {self.rows} != {self.num_perm}")
        if not 1 <= self.ngram <= len(_NGRAM_KEYS):
            raise ValueError(f"ngram must be between 1 and {len(_NGRAM_KEYS)}, got {self.ngram}")

    def threshold(self) -> float:
        """The Jaccard similarity at which two documents collide in some band with probability ~0.5."""
        return float((1 / self.bands) ** (1 / self.rows))


# --- mixing functions (MurmurHash3 finalizers; multiplication wraps modulo 2**width) ---------------
def fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer applied element-wise to a uint64 array."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer applied element-wise to a uint32 array (datasketch's pre-mix)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


@lru_cache(maxsize=8)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) uint32 parameters of datasketch's affine32 permutations for `num_perm` and `seed`.

    Drawn as datasketch 2.x draws them (odd `a`, then `b`, from `np.random.RandomState(seed)`; a unit test
    compares them with `datasketch.MinHash(...).permutations`), without importing datasketch, whose scipy
    import costs a process ~0.6 CPU-s for these two arrays.
    """
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


_POWERS: dict[str, np.ndarray] = {}


def _power_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(P**i, P**-i) modulo 2**32 for i < n, cached and grown by doubling."""
    have = _POWERS.get("p")
    if have is None or len(have) < n:
        size = max(n, 2 * len(have) if have is not None else 1 << 16)
        inv = np.uint32(pow(int(_P), -1, 1 << 32))
        for key, base in (("p", _P), ("inv", inv)):
            table = np.empty(size, dtype=np.uint32)
            table[0] = 1
            table[1:] = np.multiply.accumulate(np.full(size - 1, base, dtype=np.uint32))
            _POWERS[key] = table
    return _POWERS["p"], _POWERS["inv"]


# --- text simplification -------------------------------------------------------------------------
_SEP, _WORD, _MARK, _DIGIT, _SOLO = 0, 1, 2, 3, 4


@lru_cache(maxsize=1)
def _char_classes() -> np.ndarray:
    """Class of every code point: separator, word character, combining mark, digit, or one-char word."""
    classes = np.full(0x110000, _WORD, dtype=np.uint8)  # planes 2+ (rare CJK extensions...) count as letters
    classes[:0x20000] = _SEP
    for cp in range(0x20000):
        cat = unicodedata.category(chr(cp))
        if cat[0] == "L":
            classes[cp] = _WORD
        elif cat[0] == "M":
            classes[cp] = _MARK
        elif cat[0] == "N":
            classes[cp] = _DIGIT
    for lo, hi in ((0x0E00, 0x0E7F), (0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF)):
        solo = classes[lo : hi + 1] != _SEP
        classes[lo : hi + 1][solo & (classes[lo : hi + 1] != _MARK)] = _SOLO
    return classes


def simplify(text: str) -> str:
    """The text as shingling sees it: lower case, no accents or punctuation, digits as 0, CJK split.

    This is the reference (slow) form of what `_words` does with array operations; tests compare them.
    """
    out: list[str] = []
    classes = _char_classes()
    for ch in unicodedata.normalize("NFKD", text.lower()):
        cls = classes[ord(ch)]
        if cls == _MARK:
            continue
        if cls == _DIGIT:
            out.append("0")
        elif cls == _SOLO:
            out.append(f" {ch} ")
        elif cls == _WORD:
            out.append(ch)
        else:
            out.append(" ")
    return " ".join("".join(out).split())


def _words(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hash of every word of every text as uint64, index of the text each word belongs to).

    Works on one UTF-32 array for the whole batch: code points are classified with a lookup table,
    marks are removed, digits become "0", CJK/Thai characters become one-char words and
    every other non-letter separates words. A word's hash is fmix32(sum((cp + 1) * P**i) mod 2**32).
    """
    prepared = [unicodedata.normalize("NFKD", t.lower()) for t in texts]
    lengths = np.fromiter((len(t) + 1 for t in prepared), dtype=np.int64, count=len(prepared))
    doc_starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    cps = np.frombuffer((" ".join(prepared) + " ").encode("utf-32-le", errors="replace"), dtype=np.uint32)
    cls = _char_classes()[cps]
    positions = None
    if (cls == _MARK).any():
        positions = np.flatnonzero(cls != _MARK)
        cps, cls = cps[positions], cls[positions]
    is_digit = cls == _DIGIT
    is_char = cls != _SEP
    is_start = is_char.copy()
    is_start[1:] &= (cls[:-1] == _SEP) | (cls[:-1] == _SOLO) | (cls[1:] == _SOLO)
    starts = np.flatnonzero(is_start)
    if len(starts) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    n = len(cps)
    powers, inverses = _power_tables(n)
    values = np.where(is_digit, np.uint32(ord("0") + 1), cps + np.uint32(1))
    values *= is_char
    prefix = np.zeros(n + 1, dtype=np.uint32)
    np.cumsum(values * powers[:n], out=prefix[1:])
    ends = np.append(starts[1:], n)  # separators add 0, so a word's sum runs up to the next word's start
    word_hash = fmix32((prefix[ends] - prefix[starts]) * inverses[starts]).astype(np.uint64)
    if positions is not None:
        starts = positions[starts]
    word_doc = np.searchsorted(doc_starts, starts, side="right") - 1
    return word_hash, word_doc


def shingle_hashes(texts: Sequence[str], ngram: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """(32-bit hash of every word n-gram of every text, index of its text), grouped by text in order.

    A text with fewer than `ngram` words (but at least one) gets one shingle made of all its words.
    """
    words, word_doc = _words(texts)
    n_docs = len(texts)
    counts = np.bincount(word_doc, minlength=n_docs) if len(words) else np.zeros(n_docs, np.int64)
    parts, docs = [], []
    if len(words) >= ngram:
        span = len(words) - ngram + 1
        combined = np.zeros(span, dtype=np.uint64)
        for k in range(ngram):
            combined += words[k : k + span] * _NGRAM_KEYS[k]
        ok = word_doc[:span] == word_doc[ngram - 1 :]
        parts.append(combined[ok])
        docs.append(word_doc[:span][ok])
    short = np.flatnonzero((counts > 0) & (counts < ngram))
    if len(short):
        first_word = np.concatenate(([0], np.cumsum(counts)[:-1]))
        combined = np.zeros(len(short), dtype=np.uint64)
        for i, d in enumerate(short):
            w = words[first_word[d] : first_word[d] + counts[d]]
            combined[i] = np.sum(w * _NGRAM_KEYS[: len(w)], dtype=np.uint64)
        parts.append(combined)
        docs.append(short)
    if not parts:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    hashes, doc_of = np.concatenate(parts), np.concatenate(docs)
    order = np.argsort(doc_of, kind="stable")
    return (fmix64(hashes[order]) >> np.uint64(32)).astype(np.uint32), doc_of[order]


def signatures_from_shingles(
    shingles: np.ndarray, doc_of: np.ndarray, n_docs: int, num_perm: int = 112, seed: int = 1, chunk: int = 1 << 13
) -> np.ndarray:
    """(n_docs, num_perm) uint32 MinHash signatures; a document without shingles keeps all 0xFFFFFFFF."""
    a, b = permutations(num_perm, seed)
    sig = np.full((n_docs, num_perm), U32_MAX, dtype=np.uint32)
    mixed = fmix32(shingles.astype(np.uint32, copy=False))
    for lo in range(0, len(mixed), chunk):
        hv, docs = mixed[lo : lo + chunk], doc_of[lo : lo + chunk]
        phv = a[:, None] * hv[None, :]  # (num_perm, chunk): row-wise reductions are contiguous
        phv += b[:, None]
        seg_starts = np.flatnonzero(np.concatenate(([True], docs[1:] != docs[:-1])))
        mins = np.minimum.reduceat(phv, seg_starts, axis=1).T
        seg_docs = docs[seg_starts]
        sig[seg_docs] = np.minimum(sig[seg_docs], mins)
    return sig


def minhash_signatures(texts: Sequence[str], config: MinHashConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(signatures (n, num_perm) uint32, number of shingles per text) for a batch of texts (FineWeb settings)."""
    config = config or MinHashConfig()
    shingles, doc_of = shingle_hashes(texts, config.ngram)
    sig = signatures_from_shingles(shingles, doc_of, len(texts), config.num_perm, config.seed)
    return sig, np.bincount(doc_of, minlength=len(texts)).astype(np.int64)


def band_hashes(signatures: np.ndarray, bands: int = 14, rows: int = 8) -> np.ndarray:
    """(n, bands) uint64 hashes of each band of `rows` signature values: equal bands give equal hashes."""
    n = signatures.shape[0]
    if signatures.shape[1] != bands * rows:
        raise ValueError(f"signatures have {signatures.shape[1]} values, expected {bands} bands x {rows} rows")
    blocks = signatures.reshape(n, bands, rows).astype(np.uint64)
    combined = np.zeros((n, bands), dtype=np.uint64)
    for r in range(rows):
        combined += blocks[:, :, r] * _BAND_KEYS[r]
    return fmix64(combined)


# --- exact keys ----------------------------------------------------------------------------------
def normalize_for_exact(text: str) -> str:
    """The text exact dedup compares: NFKC, lower case, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def exact_key(text: str) -> int:
    """A 64-bit key of the normalized text: equal keys mean the same text up to case and spacing."""
    digest = hashlib.blake2b(normalize_for_exact(text).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def exact_keys(texts: Sequence[str]) -> np.ndarray:
    """`exact_key` of every text, as a uint64 array."""
    return np.fromiter((exact_key(t) for t in texts), dtype=np.uint64, count=len(texts))
