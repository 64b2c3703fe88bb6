"""The captions of a drop's video records, staged per shard of video records by engine tasks (never the driver).

0. `images.analysed_images.caption_pass` with `scan_video_page` on the shards of the drop's HTML pages stages
   their `<video>` references (`VIDEO_REF_SCHEMA`), one part per shard of pages.
1. `locate_tracks` (one task) finds the drop's records of the `<track>` files those references name.
2. `stage_captions` on every shard of video records picks each record's references by its URL
   (`captions.VideoCaptionIndex`), reads the cues of their track files, and stages the record's caption and
   opt-out as JSON; the shard passes read them back with `read_captions`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mmrecipe.crawl_index import RAW_CRAWL
from mmrecipe.engine import read_shard
from mmrecipe.images.analysed_images import CaptionedShard, read_refs
from mmrecipe.images.captions import canonical_url
from mmrecipe.stage_output import committed_parts
from mmrecipe.storage import Storage
from mmrecipe.video.captions import Cue, VideoCaption, VideoCaptionIndex, VideoRef, parse_track, scan_page
from mmrecipe.warc_index import INDEX_SCHEMA, RecordReader, normalize_uri

VIDEO_REF_SCHEMA = pa.schema(
    [
        *(pa.field(n, pa.string(), nullable=False) for n in ("video_url", "page_url")),
        *(pa.field(n, pa.int64(), nullable=False) for n in ("page_order", "position")),
        *(pa.field(n, pa.string(), nullable=False) for n in ("title", "aria_label", "surrounding")),
        pa.field("tracks", pa.list_(pa.string()), nullable=False),
        pa.field("opt_out", pa.bool_(), nullable=False),
    ]
)
RECORD_SPAN = ["warc_path", "warc_offset", "warc_length"]
TRACK_SCHEMA = pa.schema([pa.field("url", pa.string(), nullable=False), *(INDEX_SCHEMA.field(n) for n in RECORD_SPAN)])


def scan_video_page(payload: bytes, url: str, headers: Any, pos: int) -> tuple[bool, list[VideoRef]]:
    """A page's opt-out and video references (pass 0's scanner)."""
    return scan_page(payload, normalize_uri(url) or "", headers, pos)


@dataclass(frozen=True)
class VideoShard(CaptionedShard):
    """A shard of video records, with the folder where its passes stage their parts and its captions."""

    @property
    def captions_uri(self) -> str:
        return f"{self.staging}/captions-{self.index:05d}.json"

    @property
    def candidates_uri(self) -> str:
        return f"{self.folder}/candidates.parquet"


def locate_tracks(lake: Storage, drop: str, out: str, refs: tuple[str, ...]) -> str:
    """Stage at `out` where each track file that pass 0's `refs` parts name is (its last 200 response in the drop,
    by canonical URL)."""
    wanted = {t for uri in refs for ts in lake.read_table(uri, ["tracks"])["tracks"].to_pylist() for t in ts}
    where: dict[str, dict[str, Any]] = {}
    if wanted:
        responses = lake.dataset(committed_parts(lake, RAW_CRAWL, drop)).to_table(
            filter=(pc.field("record_type") == "response") & (pc.field("http_status") == 200),
            columns=[*RECORD_SPAN, "target_uri"],
        )
        for r in responses.to_pylist():
            if (url := canonical_url(normalize_uri(r["target_uri"]))) in wanted:
                where[url] = r | {"url": url}
    lake.write_table(out, pa.Table.from_pylist(list(where.values()), schema=TRACK_SCHEMA))
    return out


def stage_captions(lake: Storage, refs: tuple[str, ...], tracks: str, shard: VideoShard) -> None:
    """Stage each of the shard's records' caption and opt-out: its best reference in pass 0's `refs` parts, and the
    cues of its track files (found in `locate_tracks`' table `tracks`)."""
    urls = read_shard(lake, shard, ["target_uri"])["target_uri"].to_pylist()
    index = VideoCaptionIndex()
    index.add_refs(VideoRef(**{**r, "tracks": tuple(r["tracks"])}) for r in read_refs(lake, refs, "video_url", urls))
    table = lake.read_table(tracks)
    wanted = pa.array(sorted(index.track_urls()), pa.string())
    where = {r["url"]: r for r in table.filter(pc.is_in(table["url"], value_set=wanted)).to_pylist()}
    cache: dict[str, list[Cue]] = {}
    with RecordReader(lake) as reader:

        def track(url: str) -> list[Cue]:
            if url not in cache:
                r = where.get(url)
                cache[url] = parse_track(reader.read(*(r[k] for k in RECORD_SPAN)).payload, url) if r else []
            return cache[url]

        captions = [index.caption_for(u, track) for u in urls]
    rows = [{"ref": asdict(c.ref) if c.ref else None, "cues": [asdict(q) for q in c.cues],
             "opt_out_page": c.opt_out_page} for c in captions]  # fmt: skip
    lake.write_bytes(shard.captions_uri, json.dumps(rows).encode())


def read_captions(lake: Storage, shard: VideoShard) -> list[VideoCaption]:
    """The staged captions of a shard's records (a split shard's slice of its planned shard's)."""
    rows = json.loads(lake.read_bytes(shard.captions_uri))[shard.start - shard.base : shard.stop - shard.base]
    return [
        VideoCaption(
            VideoRef(**{**r["ref"], "tracks": tuple(r["ref"]["tracks"])}) if r["ref"] else None,
            [Cue(**q) for q in r["cues"]],
            r["opt_out_page"],
        )
        for r in rows
    ]
