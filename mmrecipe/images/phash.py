"""Perceptual hashes (pHash) of images: 64-bit DCT hashes, bit-compatible with `imagehash.phash`.

`imagehash.phash` greys the image, resizes it to 32x32 with Lanczos, takes a 2-D type-II DCT and
sets bit i when the i-th of the 8x8 lowest-frequency coefficients (row-major) exceeds their
median. This module does the same on a whole (n, 32, 32) batch in one `scipy.fftpack.dct` call per
axis and one vectorised median: the same FFT routine on the same rows gives bit-identical hashes,
even on degenerate images (a chessboard) whose coefficients tie with the median, where a
matrix-product DCT flips bits through rounding. The hash is returned as a
uint64 whose most significant bit is coefficient (0, 0), i.e. `int(str(imagehash.phash(im)), 16)`;
tables store it as the same 64 bits reinterpreted as a signed int64.

`phash_input` is imagehash's exact preprocessing (one Lanczos resize of the whole image to 32x32).
The image stage uses `reduced_phash_input` instead: Pillow first shrinks the image by an integer
box factor while it stays >= 2x the target (`reducing_gap`), then resizes with Lanczos; this costs
a fraction of the full-size Lanczos pass and moves hashes by a few bits at most (measured in
`tests/unit/test_images_phash.py` and `benchmarks/image_stage.py`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_SIZE = 8
SIDE = 32  # HASH_SIZE * imagehash's highfreq_factor 4
REDUCING_GAP = 2.0  # box-reduce to >= 64 px before the Lanczos resize to 32 (stage preprocessing)
_WEIGHTS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


def phash_input(image: Image.Image) -> np.ndarray:
    """The 32x32 uint8 grey pixels a pHash is computed from (imagehash's exact preprocessing)."""
    return np.asarray(image.convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS), dtype=np.uint8)


def reduced_phash_input(image: Image.Image) -> np.ndarray:
    """The 32x32 uint8 grey pixels the image stage hashes: integer box reduction, then Lanczos."""
    small = image.convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    return np.asarray(small, dtype=np.uint8)


def phash_batch(pixels: np.ndarray) -> np.ndarray:
    """The uint64 pHashes of a (n, 32, 32) stack of grey images."""
    import scipy.fftpack  # ~0.4 CPU-s to import: loaded with the first image, not with the Definitions

    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, SIDE, SIDE)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)
    flat = dct[:, :HASH_SIZE, :HASH_SIZE].reshape(len(pixels), HASH_SIZE * HASH_SIZE)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return (bits.astype(np.uint64) * _WEIGHTS).sum(axis=1, dtype=np.uint64)


def phash(image: Image.Image) -> int:
    """The 64-bit pHash of one image as an unsigned int (equal to `int(str(imagehash.phash(image)), 16)`)."""
    return int(phash_batch(phash_input(image)[None])[0])


def to_int64(h: int | np.ndarray) -> int | np.ndarray:
    """A uint64 hash as the signed int64 with the same bits (how tables store it)."""
    if isinstance(h, np.ndarray):
        return h.astype(np.uint64).view(np.int64)
    return h - (1 << 64) if h >= 1 << 63 else h


def to_uint64(h: int | np.ndarray) -> int | np.ndarray:
    """The unsigned 64-bit hash stored as a signed int64."""
    if isinstance(h, np.ndarray):
        return h.astype(np.int64).view(np.uint64)
    return h + (1 << 64) if h < 0 else h


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes (signed or unsigned)."""
    return ((a ^ b) & ((1 << 64) - 1)).bit_count()


def phash_hex(h: int) -> str:
    """The 16-hex-digit form of a hash (what `str(imagehash.phash(...))` prints)."""
    return f"{to_uint64(h):016x}"
