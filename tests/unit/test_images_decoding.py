"""Safe decoding on real photos and on broken/odd files: every input gives a correct image or a reason."""

import io
import struct
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image, ImageOps

from mmrecipe.images.decoding import (
    JPEG_SETTINGS,
    ImageRejected,
    decode_image,
    hash_frame,
    palette_over_white,
    probe,
    target_size,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "images"
GRACE_HOPPER = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def _bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _mad(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference of two same-size images' RGB pixels."""
    return float(np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16)).mean())


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("truncated_jpeg.jpg", "truncated_image"),
        ("decompression_bomb.gif", "decompression_bomb"),
        ("broken.png", "undecodable_image"),
        ("broken_data_stream.png", "corrupt_image"),
    ],
)
def test_broken_files_are_rejected_with_a_reason(name: str, reason: str) -> None:
    with pytest.raises(ImageRejected) as err:
        decode_image(_bytes(name))
    assert err.value.reason == reason
    assert err.value.detail  # says what was wrong


def test_truncation_anywhere_in_a_real_jpeg_is_rejected_never_a_crash() -> None:
    data = _bytes("astronaut.jpg")
    reasons = set()
    for cut in (20, 200, len(data) // 3, len(data) // 2, len(data) - 100):
        with pytest.raises(ImageRejected) as err:
            decode_image(data[:cut])
        reasons.add(err.value.reason)
    assert reasons <= {"truncated_image", "corrupt_image", "undecodable_image"}
    assert "truncated_image" in reasons


def test_configured_pixel_limit_rejects_a_real_photo_as_a_bomb_before_decoding() -> None:
    with pytest.raises(ImageRejected) as err:
        decode_image(GRACE_HOPPER.read_bytes(), max_decode_pixels=100_000)
    assert err.value.reason == "decompression_bomb" and "512x600" in err.value.detail


def test_real_photo_is_normalized_to_max_side_deterministically() -> None:
    data = GRACE_HOPPER.read_bytes()
    a, b = decode_image(data, max_side=256), decode_image(data, max_side=256)
    assert (a.header.width, a.header.height, a.header.format) == (512, 600, "JPEG")
    assert a.size == target_size(512, 600, 256) == (218, 256)
    assert a.jpeg == b.jpeg and a.pixel_sha256 == b.pixel_sha256
    again = Image.open(io.BytesIO(a.jpeg))
    assert again.format == "JPEG" and again.mode == "RGB" and again.size == (218, 256)
    reference = Image.open(GRACE_HOPPER).convert("RGB").resize((218, 256), Image.Resampling.LANCZOS)
    assert _mad(again, reference) < 4


def test_large_jpeg_is_decoded_with_draft_and_still_looks_the_same() -> None:
    big = Image.open(GRACE_HOPPER).convert("RGB").resize((2048, 2400), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    big.save(buf, "JPEG", **JPEG_SETTINGS)
    norm = decode_image(buf.getvalue(), max_side=512)
    assert norm.drafted and norm.size == (437, 512)
    assert _mad(norm.image, big.resize((437, 512), Image.Resampling.LANCZOS)) < 4


def test_cmyk_jpeg_becomes_the_same_colours_in_rgb() -> None:
    norm = decode_image(_bytes("pil_sample_cmyk.jpg"))
    assert norm.header.mode == "CMYK" and norm.image.mode == "RGB"
    reference = Image.open(FIXTURES / "pil_sample_cmyk.jpg").convert("RGB")
    assert _mad(norm.image, reference) < 3
    assert np.asarray(norm.image).std() > 20  # a real picture, not a flat colour


def test_palette_png_with_transparency_is_composited_over_white() -> None:
    src = Image.open(FIXTURES / "pil123p.png")
    assert src.mode == "P" and "transparency" in src.info
    alpha = np.asarray(src.convert("RGBA"))[..., 3]
    norm = decode_image(_bytes("pil123p.png"))
    pixels = np.asarray(norm.image)
    assert (alpha == 0).any()
    assert (pixels[alpha == 0] == 255).all()  # transparent pixels became white
    opaque = np.asarray(src.convert("RGBA"))[..., :3][alpha == 255]
    assert np.array_equal(pixels[alpha == 255], opaque)


def _composited_pixel_by_pixel(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_composite_equals_compositing_every_pixel(fmt: str) -> None:
    rng = np.random.default_rng(7)
    checked = 0
    for case in range(40):
        n = int(rng.choice([2, 7, 100, 256]))
        w, h = (int(v) for v in rng.integers(1, 50, 2))
        top = 256 if case % 3 == 0 else n  # a third of the cases use indexes past a short palette
        im = Image.frombytes("P", (w, h), rng.integers(0, top, w * h, dtype=np.uint8).tobytes())
        im.putpalette(rng.integers(0, 256, 3 * n, dtype=np.uint8).tobytes())
        alphas = rng.integers(0, 256, int(rng.integers(1, n + 1)), dtype=np.uint8).tobytes()
        table = case % 2 and fmt == "PNG"  # a tRNS alpha table (PNG only) or one transparent index
        im.info["transparency"] = alphas if table else int(rng.integers(0, n))
        buf = io.BytesIO()
        im.save(buf, fmt)
        for src in (im, Image.open(io.BytesIO(buf.getvalue()))):
            src.load()
            if src.mode != "P" or "transparency" not in src.info:
                continue
            expected = _composited_pixel_by_pixel(src)
            assert palette_over_white(src).convert("RGB").tobytes() == expected.tobytes()
            assert "transparency" in src.info  # the source is left as it was
            if src is not im:  # the decoded file, through the stage's hash decode
                assert hash_frame(probe(buf.getvalue())[0]).tobytes() == expected.convert("L").tobytes()
                checked += 1
    assert checked >= 30


def test_sixteen_bit_grey_is_scaled_to_eight_bits() -> None:
    grey = np.asarray(Image.open(GRACE_HOPPER).convert("L"), dtype=np.uint16)
    sixteen = Image.fromarray(grey * 257)  # full 16-bit range of a real photo
    buf = io.BytesIO()
    sixteen.save(buf, "PNG")
    norm = decode_image(buf.getvalue(), max_side=1024)
    assert Image.open(io.BytesIO(buf.getvalue())).mode.startswith("I")
    assert np.abs(np.asarray(norm.image)[..., 0].astype(int) - grey).max() <= 1


def test_sixteen_bit_png_with_trns_value_keeps_transparent_pixels_white() -> None:
    src = Image.open(FIXTURES / "i_trns.png")
    values = np.asarray(src)
    norm = decode_image(_bytes("i_trns.png"))
    pixels = np.asarray(norm.image)[..., 0]
    transparent = values == src.info["transparency"]
    assert transparent.sum() == 559 and (pixels[transparent] == 255).all()
    assert np.array_equal(pixels[~transparent], np.rint(values[~transparent] * 255 / 65535).astype(np.uint8))


def test_exif_orientation_is_applied() -> None:
    upright = Image.open(FIXTURES / "hopper.jpg").convert("RGB")
    stored = Image.open(FIXTURES / "hopper_orientation_6.jpg")
    norm = decode_image(_bytes("hopper_orientation_6.jpg"))
    assert norm.header.orientation == 6
    assert _mad(norm.image, upright) < 6
    assert _mad(stored.convert("RGB"), upright) > 30  # without the rotation it would be wrong


def test_exif_orientation_swaps_the_reported_size() -> None:
    img = Image.open(GRACE_HOPPER)
    exif = img.getexif()
    exif[0x0112] = 8
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes(), quality=92)
    _, header = probe(buf.getvalue())
    assert (header.width, header.height, header.orientation) == (600, 512, 8)
    norm = decode_image(buf.getvalue(), max_side=1024)
    assert norm.size == (600, 512)
    assert _mad(norm.image, ImageOps.exif_transpose(Image.open(buf))) < 3


def test_animated_gif_keeps_its_first_frame_and_records_the_frame_count() -> None:
    norm = decode_image(_bytes("dispose_bgnd.gif"))
    assert norm.header.format == "GIF" and norm.header.n_frames == 5 and norm.header.animated
    first = Image.open(FIXTURES / "dispose_bgnd.gif").convert("RGB")
    assert _mad(norm.image, first) == 0


def test_animated_webp_keeps_its_first_frame() -> None:
    frames = [Image.open(FIXTURES / n).convert("RGB").resize((256, 256)) for n in ("astronaut.jpg", "chelsea.jpg")]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    norm = decode_image(buf.getvalue())
    assert norm.header.format == "WEBP" and norm.header.n_frames == 2
    assert _mad(norm.image, frames[0]) < 1
    assert _mad(norm.image, frames[1]) > 20


def test_bomb_guard_holds_on_several_threads_and_restores_the_warning_filters() -> None:
    # A 29-byte GIF whose frame (10000x10000) outgrows its 16x16 screen: only Pillow's
    # DecompressionBombWarning (> 89.5 Mpx) stops it when the stage's own limit is set higher.
    bomb = b"GIF89a" + struct.pack("<HHBBB", 16, 16, 0, 0, 0) + b","
    bomb += struct.pack("<HHHHB", 0, 0, 10000, 10000, 0) + bytes([2, 2, 0x4C, 0x01, 0]) + b";"
    photo = _bytes("chelsea.jpg")

    def job(i: int) -> str | None:
        if i % 2:  # a real decode keeps another thread inside the guard meanwhile
            return decode_image(photo).header.format
        try:
            probe(bomb, max_decode_pixels=10**9)
        except ImageRejected as e:
            return e.reason
        return "not rejected"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a bomb that slipped past the guard would only be ignored
        before = list(warnings.filters)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(job, range(400)))
        assert warnings.filters == before  # no guard's "error" filter left behind
    assert results == ["decompression_bomb", "JPEG"] * 200
