"""video_clips materialized on a real instance over the committed video sample drops: metadata, checks, tampering."""

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from data_assets.quarantine import definitions, drop_gate, read_gate
from mmrecipe.recipe import load_recipe
from mmrecipe.settings import Settings
from mmrecipe.stage_output import committed_parts
from mmrecipe.storage import Storage
from partitions import drops_partitions
from tests.committed_edits import recommit
from tests.conftest import REPO, land_drop, materialize_drop, metadata_of, run_checks
from tests.video_samples import PLANTED, VIDEO_DROPS

pytestmark = pytest.mark.slow  # two real video drops through NudeNet and Whisper

VIDEO_RECIPE = load_recipe(str(REPO / "samples" / "recipes"), "video_pairs")
CHECKS = ("conservation", "no_near_duplicate_clips", "no_nsfw_clips_kept", "clip_caption_coverage")


def test_video_drops_materialize_with_passing_checks(settings: Settings, instance: dg.DagsterInstance) -> None:
    metas = {}
    for drop in PLANTED["drops"]:
        land_drop(settings, drop, src=VIDEO_DROPS / drop)
        result = materialize_drop(settings, instance, drop, ("raw_crawl", "video_clips"))
        evaluations = {
            e.check_name: e.passed for e in result.get_asset_check_evaluations() if e.asset_key.path == ["video_clips"]
        }
        assert evaluations == dict.fromkeys(CHECKS, True), (drop, evaluations)
        metas[drop] = metadata_of(result, "video_clips")
    a, b = metas["video-a"], metas["video-b"]
    assert (a["total"], a["kept"], a["records"], a["records_with_clips"]) == (12, 9, 5, 3)
    assert (a["rejected_truncated_video"], a["dropped_opt_out"], a["dropped_clip_too_short"]) == (1, 1, 1)
    assert (b["kept"], b["dropped_near_duplicate"]) == (0, 5)
    assert a["caption_coverage"] == 1.0 and a["detector"].startswith("pyscenedetect-content-")
    assert a["video_seconds"] > 26 and a["clips_per_s"] > 0
    assert a["path"].endswith("video_clips/data/video-a")
    assert not list(Path(settings.lake).glob("video_clips/staging/_post_commit/*"))  # the runs removed theirs
    gate = drop_gate(definitions(), drops_partitions, VIDEO_RECIPE.stages())  # what a video recipe's mixture reads
    assert gate["video_clips"] == ["conservation", "no_near_duplicate_clips", "no_nsfw_clips_kept"]
    assert read_gate(instance, gate, PLANTED["drops"]).admitted == ("video-a", "video-b")

    # a kept clip removed from the kept table: conservation still holds (its record has other clips), but a
    # whole record's clips removed is lost; a planted NSFW score fails the NSFW check
    lake = Storage(settings.lake)
    data_uri = committed_parts(lake, "video_clips", "video-a")[0]
    table = pq.read_table(data_uri)
    city = [i for i, u in enumerate(table["url"].to_pylist()) if u.endswith("/city.mpg")]
    keep = [i for i in range(table.num_rows) if i not in city]
    scores = [0.9 if i == keep[0] else s for i, s in enumerate(table["nsfw_score"].to_pylist())]
    tampered = table.set_column(table.schema.get_field_index("nsfw_score"), "nsfw_score", [scores]).take(keep)
    pq.write_table(tampered, data_uri)  # the embedded lake: URIs are local paths
    recommit(lake, data_uri)
    checks = run_checks(settings, instance, "video-a", "video_clips", ("conservation", "no_nsfw_clips_kept"))
    verdicts = {e.check_name: e for e in checks.get_asset_check_evaluations()}
    assert not verdicts["conservation"].passed
    assert verdicts["conservation"].metadata["lost"].value == 1
    assert not verdicts["no_nsfw_clips_kept"].passed
    assert verdicts["no_nsfw_clips_kept"].metadata["flagged"].value == 1
    # the quarantine gate of a recipe with a video source now keeps video-a out, naming both failed checks
    quarantine = read_gate(instance, gate, PLANTED["drops"])
    assert quarantine.admitted == ("video-b",)
    failed = {v.check_key: v.status for v in quarantine.quarantined["video-a"]}
    assert failed == {"video_clips:conservation": "failed", "video_clips:no_nsfw_clips_kept": "failed"}
