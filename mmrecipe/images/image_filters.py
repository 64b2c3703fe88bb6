"""Image filters: which decodable images a training set takes (size, shape, format, NSFW score).

Header-level filters run before any pixel is decoded, so an oversized or wrongly shaped image
costs only its header. Reasons are policy drops: `format_not_allowed`, `too_small`,
`bad_aspect_ratio`, `too_many_pixels` and `nsfw`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

DEFAULT_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF"})
# Pillow format names of the MIME types that Pillow cannot rasterize (so no format is known for them).
VECTOR_MIME = frozenset({"image/svg+xml"})
# NudeNet classes that make an image not safe for work (exposed genitals, breasts, buttocks, anus).
NSFW_CLASSES = frozenset(
    {
        "FEMALE_GENITALIA_EXPOSED",
        "MALE_GENITALIA_EXPOSED",
        "FEMALE_BREAST_EXPOSED",
        "BUTTOCKS_EXPOSED",
        "ANUS_EXPOSED",
    }
)


@dataclass(frozen=True)
class ImageFilters:
    """Thresholds of the header-level filters."""

    min_side: int = 64
    max_aspect_ratio: float = 3.0
    max_pixels: int = 40_000_000
    allowed_formats: frozenset[str] = field(default_factory=lambda: DEFAULT_FORMATS)

    @classmethod
    def of(cls, min_side: int, max_aspect_ratio: float, max_pixels: int, formats: Iterable[str]) -> ImageFilters:
        return cls(min_side, max_aspect_ratio, max_pixels, frozenset(f.upper() for f in formats))

    def mime_drop(self, mime: str | None) -> tuple[str, str] | None:
        """(reason, detail) if a served MIME type is one no allowed format can be (vector graphics)."""
        if mime in VECTOR_MIME and "SVG" not in self.allowed_formats:
            return "format_not_allowed", f"{mime} is vector graphics; allowed: {sorted(self.allowed_formats)}"
        return None

    def header_drop(self, fmt: str, w: int, h: int) -> tuple[str, str] | None:
        """(reason, detail) if the format and stored size alone rule the image out, else None.

        Every rule is symmetric in width and height, so an EXIF rotation (read later) cannot change it.
        """
        if fmt not in self.allowed_formats:
            return "format_not_allowed", f"{fmt}; allowed: {sorted(self.allowed_formats)}"
        if min(w, h) < self.min_side:
            return "too_small", f"{w}x{h}, shorter side < {self.min_side}"
        if max(w, h) / min(w, h) > self.max_aspect_ratio:
            return "bad_aspect_ratio", f"{w}x{h}, aspect {max(w, h) / min(w, h):.2f} > {self.max_aspect_ratio}"
        if w * h > self.max_pixels:
            return "too_many_pixels", f"{w}x{h} = {w * h} > {self.max_pixels}"
        return None


class NsfwScorer:
    """NudeNet's offline ONNX detector (shipped inside the `nudenet` wheel) as a 0-1 NSFW score.

    The score is the highest confidence of any explicit-exposure class (`NSFW_CLASSES`); faces,
    feet or covered body parts score 0. `model_path` overrides the packaged 320n.onnx model.
    """

    def __init__(self, model_path: str | None = None) -> None:
        from nudenet import NudeDetector  # heavy (onnxruntime, OpenCV): imported only when enabled

        self.detector = NudeDetector(model_path=model_path or None)

    def detections(self, image: Image.Image) -> list[dict[str, Any]]:
        """NudeNet's raw detections (class, score, box) on an RGB image."""
        return list(self.detector.detect(np.asarray(image.convert("RGBA"))))

    def score(self, image: Image.Image) -> float:
        """The NSFW score of an RGB image."""
        scores = [d["score"] for d in self.detections(image) if d["class"] in NSFW_CLASSES]
        return round(float(max(scores, default=0.0)), 4)
