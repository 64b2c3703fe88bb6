"""The video stage's decode → shots → keyframes → pHash → motion path vs a baseline, in one run on the same videos.

    PYTHONPATH=. .venv/bin/python benchmarks/video_stage.py [VIDEO ...] [--loop N]

- **stage**: `clip_analysis.analyse_video` (frames decoded scaled to 256 px by FFmpeg, PySceneDetect's content
  detector on them, 2 keyframes/s kept as JPEG + 32x32 pHash input, frame-difference motion);
- **baseline**: a full-resolution decode, PySceneDetect's default ContentDetector on every full-size frame, and
  `imagehash.phash` on every 12th frame (about 2 frames/s, the stage's keyframe rate).

Per core: CPU seconds (`time.process_time`, every thread of the process), so decoder threads do not flatter it.
Peak RSS: each path on each video runs in a fresh subprocess that reports its own peak (`VmHWM`; `ru_maxrss`
would report the benchmark's own peak, inherited across fork and exec). The moviepy 2.2.1
sdist's Big Buck Bunny (`docs/_static/medias/getting_started/moviepy_10_minutes/trailer_bbb.mp4`) is a 55 s 720p
trailer (the folder is the "MoviePy in 10 minutes" tutorial); `--loop 11` also runs the stage on it played 11
times in a row (10.1 min, re-timed packets) to show RSS flat in video length.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NTH_FRAME = 12


def stage_path(warc: Path) -> dict[str, float]:
    """The stage's path over one video record: payload streamed from the WARC into a scratch file, then analysed."""
    from mmrecipe.storage import Storage
    from mmrecipe.video.clip_analysis import ClipSettings, analyse_video
    from mmrecipe.video.decoding import VideoLimits
    from mmrecipe.video.payload import VideoRecord

    limits = VideoLimits(max_bytes=1 << 31, max_duration_s=4 * 3600, max_frames=10**6)
    storage = Storage(str(warc.parent), scratch=str(warc.parent / "scratch"))
    with VideoRecord(storage, str(warc), 0, warc.stat().st_size) as rec:
        analysis = analyse_video(rec.spool(limits.max_bytes).path, ClipSettings(limits=limits))
    return {"clips": len(analysis.clips), "seconds": analysis.duration_s}


def warc_of(video: Path) -> Path:
    """`video` as the one HTTP response record of a gzipped WARC file beside it (the stage reads records)."""
    import gzip

    warc = video.with_name(video.name + ".warc.gz")
    payload = video.read_bytes()
    http = b"HTTP/1.1 200 OK\r\nContent-Type: video/mp4\r\nContent-Length: %d\r\n\r\n" % len(payload)
    head = (
        f"WARC/1.0\r\nWARC-Type: response\r\nWARC-Target-URI: http://bench.example/{video.name}\r\n"
        "WARC-Record-ID: <urn:uuid:00000000-0000-0000-0000-000000000000>\r\nWARC-Date: 2026-12-03T00:00:00Z\r\n"
        f"Content-Type: application/http; msgtype=response\r\nContent-Length: {len(http) + len(payload)}\r\n\r\n"
    )
    with gzip.open(warc, "wb", compresslevel=1) as f:
        f.write(head.encode() + http)
        f.write(payload)
        f.write(b"\r\n\r\n")
    return warc


def baseline_path(video: Path) -> dict[str, float]:
    import io

    payload = video.read_bytes()

    import av
    import imagehash
    from scenedetect import FrameTimecode
    from scenedetect.detectors import ContentDetector

    with av.open(io.BytesIO(payload)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or 25)
        detector, cuts, last = ContentDetector(), 0, 0.0
        for i, frame in enumerate(container.decode(stream)):
            bgr = frame.to_ndarray(format="bgr24")
            cuts += len(detector.process_frame(FrameTimecode(i, fps), bgr))
            if i % NTH_FRAME == 0:
                imagehash.phash(frame.to_image())
            last = float(frame.time or i / fps)
    return {"clips": cuts + 1, "seconds": last + 1 / fps}


def measure(path: str, video: str) -> dict[str, float]:
    """One path over one video file (the stage's: a WARC holding it), in this process: clips, video seconds, CPU
    and wall seconds, peak RSS."""
    import imagehash  # noqa: F401 (imports are not the path's cost)
    import scenedetect.detectors  # noqa: F401

    import mmrecipe.video.clip_analysis  # noqa: F401

    cpu, wall = time.process_time(), time.perf_counter()
    out = (stage_path if path == "stage" else baseline_path)(Path(video))
    out |= {"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}
    return out | {"peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, which starts afresh at exec (`ru_maxrss` keeps the forking parent's peak)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) / 1024


def sample_files(folder: Path) -> list[Path]:
    """The sample's three real videos, written out of the video-a WARC."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from shot_detection import sample_videos

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, payload in sample_videos().items():
        (folder / name).write_bytes(payload)
        files.append(folder / name)
    return files


def looped(src: Path, times: int, dst: Path) -> Path:
    """`src`'s video stream played `times` times in a row (packets re-timed, not re-encoded): a long real video."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        span = int(inp.duration / 1e6 / vin.time_base) + 1
        for i in range(times):
            inp.seek(0)
            for packet in inp.demux(vin):
                if packet.dts is None:
                    continue
                packet.pts, packet.dts = packet.pts + i * span, packet.dts + i * span
                packet.stream = vout
                out.mux(packet)
    return dst


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2], sys.argv[3])))
        return
    args = sys.argv[1:]
    loop = int(args.pop(args.index("--loop") + 1)) if "--loop" in args else 0
    args = [a for a in args if a != "--loop"]
    videos = sample_files(Path("/tmp/mmrecipe-video-bench")) + [Path(p) for p in args]
    long = [looped(Path(p), loop, Path(f"/tmp/mmrecipe-video-bench/looped{loop}-{Path(p).name}")) for p in args if loop]
    rows = []
    for video in videos + long:
        for path in ("stage", "baseline") if video not in long else ("stage",):
            cmd = [sys.executable, __file__, "--one", path, str(warc_of(video) if path == "stage" else video)]
            result = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            rows.append((video.name, path, result))
    print("| video | path | video s | clips | CPU s | clips/s/core | RTF (CPU s / video s) | wall s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, path, r in rows:
        per_core = r["clips"] / r["cpu_s"]
        print(
            f"| {name} | {path} | {r['seconds']:.1f} | {r['clips']:.0f} | {r['cpu_s']:.2f} | {per_core:.2f} "
            f"| {r['cpu_s'] / r['seconds']:.3f} | {r['wall_s']:.2f} | {r['peak_rss_mb']:.0f} |"
        )
    for path in ("stage", "baseline"):
        cpu = sum(r["cpu_s"] for _, p, r in rows if p == path)
        secs = sum(r["seconds"] for _, p, r in rows if p == path)
        print(f"{path}: {secs:.1f} s of video in {cpu:.2f} CPU s: RTF {cpu / secs:.3f} per core")


if __name__ == "__main__":
    main()
