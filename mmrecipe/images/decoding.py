"""Decoded images: safe Pillow decoding of untrusted bytes, for hashing and for the normalized output.

Untrusted image bytes go through `open_image` (header only: format, size, bomb limit),
`read_header` (frame count, EXIF orientation; `probe` does both) and then `load_frame` (pixels of
frame 0). Every failure becomes an `ImageRejected(reason, detail)`:

- `decompression_bomb`: the header claims more pixels than `max_decode_pixels` (Pillow's own
  bomb warning and error, e.g. for a GIF frame larger than its screen, become this reject too);
- `undecodable_image`: Pillow cannot identify the bytes as an image;
- `truncated_image`: the compressed data ends early;
- `corrupt_image`: anything else Pillow raises while decoding;
- `unsupported_mode`: a pixel mode that has no faithful RGB conversion.

Two decodes serve the image stage's two passes:

- **Hash decode** (`hash_frame`, every image that passes the header filters): 8-bit grey pixels
  decoded no finer than a pHash needs. JPEGs decode only their luma plane, DCT-downscaled by
  `Image.draft()` (1/2 to 1/8) while both sides stay >= `HASH_MIN_SIDE`; PNG/WebP/GIF have no
  reduced-scale decoder, so they are decoded in full, composited over white (no ICC) and greyed.
- **Normalization** (`normalize`, only images the stage keeps or must compare pixel by pixel):
  JPEGs larger than needed are decoded downscaled with `Image.draft()`; the EXIF orientation is
  applied; CMYK and ICC-tagged images are converted to sRGB; palette, grey+alpha and RGBA images
  are composited over white; 16-bit grey is scaled to 8 bits; animated GIF/WebP keep their first
  frame (their frame count is recorded). The result is RGB with its longer side at most
  `max_side`, re-encoded as a baseline JPEG with fixed settings, so the same input bytes always
  give the same output bytes.

Everything here is safe to call from several threads at once (the image stage does).
"""

from __future__ import annotations

import hashlib
import io
import math
import threading
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

JPEG_SETTINGS = {"quality": 90, "optimize": False, "progressive": False, "subsampling": "4:2:0"}
DEFAULT_MAX_DECODE_PIXELS = 89_478_485  # Pillow's own MAX_IMAGE_PIXELS default
HASH_MIN_SIDE = 128  # JPEG hash decodes keep both sides >= this (64 measured worse: see test_images_phash)
EXIF_ORIENTATION = 0x0112
_WHITE = (255, 255, 255, 255)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_GREY_AS_IS = ("L", "RGB", "P", "1")  # without transparency, .convert("L") equals to_srgb(...).convert("L")


class ImageRejected(Exception):
    """Image bytes that cannot be turned into a normalized image: a reason code and a detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says before any pixel is decoded (width/height after EXIF rotation)."""

    format: str
    width: int
    height: int
    mode: str
    n_frames: int  # 2 from `read_header(..., count_frames=False)` means "animated, not counted"
    orientation: int

    @property
    def animated(self) -> bool:
        return self.n_frames > 1


@dataclass(frozen=True)
class NormalizedImage:
    """An image decoded into RGB with a bounded longer side, its pixel hash and its JPEG re-encoding."""

    header: ImageHeader
    image: Image.Image
    jpeg: bytes
    pixel_sha256: str
    drafted: bool  # decoded with JPEG DCT scaling

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


class _BombGuard:
    """Turns Pillow's decompression-bomb warning/error into `ImageRejected` inside a `with` block.

    Warning filters are process-wide, so the guard is shared: the first thread to enter installs
    an "error" filter for `DecompressionBombWarning` and the last one to leave removes it. (One
    `warnings.catch_warnings()` per thread would be unsafe: a thread leaving early would restore
    the filters while another is still decoding, and bombs would only warn.)
    """

    _lock = threading.Lock()
    _depth = 0
    _saved: warnings.catch_warnings | None = None

    def __enter__(self) -> None:
        cls = type(self)
        with cls._lock:
            if cls._depth == 0:
                cls._saved = warnings.catch_warnings()
                cls._saved.__enter__()
                warnings.simplefilter("error", Image.DecompressionBombWarning)
            cls._depth += 1

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, _tb: object) -> bool:
        cls = type(self)
        with cls._lock:
            cls._depth -= 1
            if cls._depth == 0 and cls._saved is not None:
                cls._saved.__exit__(None, None, None)
                cls._saved = None
        if exc_type is not None and issubclass(exc_type, Image.DecompressionBombWarning | Image.DecompressionBombError):
            raise ImageRejected("decompression_bomb", str(exc)) from None
        return False


def _pillow_error(e: Exception, where: str) -> ImageRejected:
    """The reject for an exception Pillow raised while reading `where` (header, frames/EXIF, pixels)."""
    truncated = isinstance(e, OSError | EOFError) and ("truncat" in str(e).lower() or isinstance(e, EOFError))
    return ImageRejected("truncated_image" if truncated else "corrupt_image", f"{where}: {type(e).__name__}: {e}")


def open_image(data: bytes, max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS) -> Image.Image:
    """The lazily opened image, from its header alone; raises ImageRejected for bombs and non-images."""
    try:
        with _BombGuard():
            im = Image.open(io.BytesIO(data))
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("undecodable_image", f"not a known image format (starts {data[:12]!r})") from None
    except Exception as e:  # Pillow raises many types on malformed headers
        raise _pillow_error(e, "header") from None
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageRejected("corrupt_image", f"header says {w}x{h} pixels")
    if w * h > max_decode_pixels:
        detail = f"{w}x{h} = {w * h} pixels from {len(data)} bytes exceeds the limit of {max_decode_pixels}"
        raise ImageRejected("decompression_bomb", detail)
    return im


def read_header(im: Image.Image, count_frames: bool = True) -> ImageHeader:
    """An opened image's header facts: frame count and EXIF orientation (width/height after rotation).

    This may read past the first header: a PNG whose EXIF chunk is not before its pixel data is
    decoded to find it, and a GIF's frames are walked to count them. Without `count_frames` only
    the first frame is walked, and an animated image reports `n_frames=2` (at least two frames).
    """
    try:
        with _BombGuard():
            animated = bool(getattr(im, "is_animated", False))
            n_frames = (int(getattr(im, "n_frames", 1)) if count_frames else 2) if animated else 1
            im.seek(0)
            orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except ImageRejected:
        raise
    except Exception as e:
        raise _pillow_error(e, "frames/EXIF") from None
    orientation = orientation if 1 <= orientation <= 8 else 1
    w, h = im.size
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    return ImageHeader(str(im.format), w, h, im.mode, n_frames, orientation)


def probe(data: bytes, max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS) -> tuple[Image.Image, ImageHeader]:
    """The lazily opened image and its header facts (`open_image`, then `read_header`)."""
    im = open_image(data, max_decode_pixels)
    return im, read_header(im)


def load_frame(
    im: Image.Image, min_size: tuple[int, int] | None = None, grey: bool = False
) -> tuple[Image.Image, bool]:
    """Frame 0's pixels, EXIF-rotated; a JPEG is DCT-downscaled while both sides stay >= `min_size`.

    Returns the image and whether it was drafted. `grey` asks a YCbCr JPEG for its luma plane only.
    """
    drafted = False
    if im.format == "JPEG" and (min_size or grey):
        original = im.size
        mode = "L" if grey and im.mode in ("RGB", "L") else None
        drafted = im.draft(mode, min_size) is not None and im.size != original
    try:
        with _BombGuard():
            im.load()
            return ImageOps.exif_transpose(im), drafted
    except ImageRejected:
        raise
    except Exception as e:  # OSError, SyntaxError, ValueError, struct.error, zlib.error, EOFError ...
        raise _pillow_error(e, "pixels") from None


def _composite_over_white(im: Image.Image) -> Image.Image:
    """The image's pixels as RGB, each composited over white by its alpha (or transparency)."""
    rgba = im.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")


def palette_over_white(im: Image.Image) -> Image.Image:
    """A palette image whose palette colours are composited over white, its transparency dropped.

    Compositing depends only on a pixel's palette entry, so compositing the 256 entries once gives
    the same pixels as compositing every pixel (`_composite_over_white`), at a fraction of the cost.
    """
    entries = im.resize((256, 1), Image.Resampling.NEAREST)  # same palette and transparency
    entries.frombytes(bytes(range(256)))  # pixel i shows palette entry i
    out = im.copy()
    out.info.pop("transparency", None)
    out.putpalette(_composite_over_white(entries).tobytes(), "RGB")
    return out


def _over_white(im: Image.Image) -> Image.Image:
    """The image as RGB composited over white (palette images through their palette)."""
    return palette_over_white(im).convert("RGB") if im.mode == "P" else _composite_over_white(im)


def _sixteen_bit_to_rgb(im: Image.Image) -> Image.Image:
    """16-bit (or 32-bit integer) grey scaled to 8 bits by its value range, transparency over white."""
    arr = np.asarray(im).astype(np.int64)
    peak = int(arr.max(initial=0))
    top = 255 if im.mode == "I" and peak <= 255 else max(65535, peak)
    grey = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
    transparency = im.info.get("transparency")
    if isinstance(transparency, int):
        grey[arr == transparency] = 255
    return Image.fromarray(grey).convert("RGB")


def _with_icc(im: Image.Image) -> Image.Image | None:
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "CMYK"):
        return None
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = ImageCms.createProfile("sRGB")  # a fresh profile per call: calls may run on several threads
        return ImageCms.profileToProfile(im, source, srgb, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None  # a broken profile: fall back to the plain conversion


def to_srgb(im: Image.Image, apply_icc: bool = True) -> Image.Image:
    """The image as 8-bit RGB pixels: ICC profile applied (if asked), alpha composited over white."""
    if apply_icc and (converted := _with_icc(im)) is not None:
        return converted
    if im.mode == "RGB" and "transparency" not in im.info:
        return im
    if im.mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit_to_rgb(im)
    if im.mode in _ALPHA_MODES or (im.mode in ("P", "L", "RGB", "1") and "transparency" in im.info):
        return _over_white(im)
    if im.mode in ("L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return im.convert("RGB")
    if im.mode == "F":
        return Image.fromarray(np.clip(np.nan_to_num(np.asarray(im)), 0, 255).astype(np.uint8)).convert("RGB")
    raise ImageRejected("unsupported_mode", f"pixel mode {im.mode} has no RGB conversion")


def hash_frame(im: Image.Image) -> Image.Image:
    """Frame 0 of a probed image as 8-bit grey pixels for its pHash, decoded no finer than needed.

    JPEGs: luma only, DCT-downscaled while both sides stay >= `HASH_MIN_SIDE`. Other formats: a
    full decode composited over white without ICC conversion, i.e. `to_srgb(frame, apply_icc=False)`
    in grey. EXIF orientation is applied in both cases.
    """
    side = (HASH_MIN_SIDE, HASH_MIN_SIDE)
    frame, _ = load_frame(im, side if im.format == "JPEG" else None, grey=im.format == "JPEG")
    try:
        if frame.mode in _GREY_AS_IS and "transparency" not in frame.info:
            return frame.convert("L")
        return to_srgb(frame, apply_icc=False).convert("L")
    except ImageRejected:
        raise
    except Exception as e:  # lazy plugins may fail only when pixels are touched
        raise ImageRejected("corrupt_image", f"{type(e).__name__}: {e}") from None


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size an image is scaled to so that its longer side is at most `max_side` (never upscaled)."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def finish(rgb: Image.Image, header: ImageHeader, max_side: int, drafted: bool = False) -> NormalizedImage:
    """An RGB frame downscaled to `max_side`, with its pixel hash and fixed-settings JPEG."""
    try:
        size = target_size(*rgb.size, max_side)
        if size != rgb.size:
            rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    except Exception as e:  # lazy plugins may fail only when pixels are touched
        raise ImageRejected("corrupt_image", f"{type(e).__name__}: {e}") from None
    buf = io.BytesIO()
    rgb.save(buf, "JPEG", **JPEG_SETTINGS)
    pixels = hashlib.sha256(f"{rgb.size[0]}x{rgb.size[1]}:".encode() + rgb.tobytes()).hexdigest()
    return NormalizedImage(header, rgb, buf.getvalue(), pixels, drafted)


def normalize_frame(frame: Image.Image, header: ImageHeader, max_side: int, drafted: bool = False) -> NormalizedImage:
    """A loaded frame as sRGB, downscaled to `max_side`, with its pixel hash and fixed-settings JPEG."""
    try:
        rgb = to_srgb(frame)
    except ImageRejected:
        raise
    except Exception as e:
        raise ImageRejected("corrupt_image", f"{type(e).__name__}: {e}") from None
    return finish(rgb, header, max_side, drafted)


def normalize(im: Image.Image, header: ImageHeader, max_side: int = 512) -> NormalizedImage:
    """Decode frame 0 of a probed image (DCT-downscaled if it is a large JPEG) and normalize it."""
    raw_w, raw_h = im.size
    scale = max_side / max(raw_w, raw_h)
    need = (max(1, math.ceil(raw_w * scale)), max(1, math.ceil(raw_h * scale))) if scale < 0.5 else None
    frame, drafted = load_frame(im, need)
    return normalize_frame(frame, header, max_side, drafted)


def decode_image(
    data: bytes, max_side: int = 512, max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS
) -> NormalizedImage:
    """Probe and normalize image bytes in one call."""
    im, header = probe(data, max_decode_pixels)
    return normalize(im, header, max_side)
