"""pHash: bit-identical with imagehash, near-duplicates found within k, distinct photos kept apart."""

import io
import itertools
from pathlib import Path

import imagehash
import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from mmrecipe.images.image_analysis import image_phash
from mmrecipe.images.phash import hamming, phash, phash_batch, phash_hex, phash_input, to_int64, to_uint64
from mmrecipe.images.stage import PIXEL_CHECK_BITS

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "images"
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
PHOTOS = [FIXTURES / f"{n}.jpg" for n in ("astronaut", "chelsea", "coffee", "hubble_deep_field", "rocket")]
PHOTOS.append(GRACE_HOPPER)
K = 10  # the stage's default threshold


def encode(img: Image.Image, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore:Palette images with Transparency")
@pytest.mark.parametrize("path", [*PHOTOS, FIXTURES / "pil123p.png", FIXTURES / "hopper.jpg"], ids=lambda p: p.name)
def test_phash_is_bit_identical_to_imagehash(path: Path) -> None:
    img = Image.open(path)
    assert phash_hex(phash(img)) == str(imagehash.phash(img))


def test_batched_phash_equals_one_by_one_and_handles_a_degenerate_chessboard() -> None:
    board = Image.fromarray((np.indices((200, 200)).sum(axis=0) // 25 % 2 * 255).astype(np.uint8))
    images = [Image.open(p) for p in PHOTOS] + [board]
    batch = phash_batch(np.stack([phash_input(i) for i in images]))
    assert [int(h) for h in batch] == [int(str(imagehash.phash(i)), 16) for i in images]


def test_int64_storage_round_trips_the_64_bits() -> None:
    for h in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        assert to_uint64(to_int64(h)) == h
    hashes = np.array([0, 2**63, 2**64 - 1], dtype=np.uint64)
    assert to_uint64(to_int64(hashes)).tolist() == hashes.tolist()
    assert hamming(to_int64(2**64 - 1), 0) == 64


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_stage_hash_of_jpegs_is_within_two_bits_of_imagehash(path: Path) -> None:
    data = path.read_bytes()
    assert hamming(image_phash(data), int(str(imagehash.phash(Image.open(io.BytesIO(data)))), 16)) <= 2


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_lossless_copy_of_a_jpeg_hashes_within_the_pixel_check_distance(path: Path) -> None:
    # The JPEG is hashed from a DCT-scaled grey draft, its PNG copy from a full decode: same pixels,
    # so the two must be close enough to be compared pixel by pixel (pixel_duplicate). With a
    # 64 px draft instead of 128, hubble_deep_field's copy is 4 bits away.
    jpeg = path.read_bytes()
    png = encode(Image.open(io.BytesIO(jpeg)).convert("RGB"), "PNG")
    assert hamming(image_phash(jpeg), image_phash(png)) <= PIXEL_CHECK_BITS


def _variants(img: Image.Image) -> dict[str, bytes]:
    w, h = img.size
    return {
        "reencode_q60": encode(img, quality=60),
        "resize_80pct_q70": encode(img.resize((w * 4 // 5, h * 4 // 5), Image.Resampling.LANCZOS), quality=70),
        "resize_50pct_png": encode(img.resize((w // 2, h // 2), Image.Resampling.BILINEAR), "PNG"),
        "brightness_1.1": encode(ImageEnhance.Brightness(img).enhance(1.1), quality=90),
        "brightness_1.2": encode(ImageEnhance.Brightness(img).enhance(1.2), quality=90),
        "webp_q75": encode(img, "WEBP", quality=75),
    }


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.name)
def test_reencoded_resized_and_brightened_copies_are_within_k(path: Path) -> None:
    original = image_phash(path.read_bytes())
    distances = {
        name: hamming(original, image_phash(data)) for name, data in _variants(Image.open(path).convert("RGB")).items()
    }
    assert all(d <= K for d in distances.values()), distances
    assert distances["reencode_q60"] <= 4 and distances["resize_80pct_q70"] <= 4


def test_distinct_photos_are_further_apart_than_k() -> None:
    hashes = {p.name: image_phash(p.read_bytes()) for p in PHOTOS}
    distances = {(a, b): hamming(hashes[a], hashes[b]) for a, b in itertools.combinations(hashes, 2)}
    assert min(distances.values()) > K + 4, distances
