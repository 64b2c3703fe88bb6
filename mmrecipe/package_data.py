"""Files that install with mmrecipe (`mmrecipe/data/`): default eval sets, calibration speech, reference texts.

Stages read these by default, so an installed package (the production image) needs no source checkout.
Provenance and licences: `mmrecipe/data/PROVENANCE.md`.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def bundled(*parts: str) -> Path:
    """The installed path of `mmrecipe/data/<parts...>`."""
    return Path(str(files("mmrecipe"))).joinpath("data", *parts)
