"""deduped_images materialized on a real instance: metadata, checks, the stale-drop sensor, the sample drops."""

import io
import json
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmrecipe.images import phash_index
from mmrecipe.settings import Settings
from mmrecipe.stage_output import read_stage_table
from mmrecipe.storage import Storage
from resources import LakeResource
from sensors.stale_drops import stale_image_drops
from tests.conftest import REPO, SAMPLE_DROPS, land_drop, materialize_drop, metadata_of, run_checks
from tests.warc_fixtures import HttpResponse, warc_bytes

pytestmark = pytest.mark.slow  # several drops through every image stage

FIXTURES = REPO / "tests" / "fixtures" / "images"
ASSETS = ("raw_crawl", "deduped_images")


def _jpeg(name: str, scale: float = 1.0, quality: int = 90) -> bytes:
    img = Image.open(FIXTURES / name).convert("RGB")
    img = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _drop(images: dict[str, bytes]) -> dict[str, bytes]:
    """One WARC: a page whose <img alt> names each image, then the images."""
    tags = "".join(f'<img src="/{name}" alt="Photo {name}">' for name in images)
    responses = [HttpResponse("http://photos.example/index.html", f"<html><body>{tags}</body></html>".encode())]
    responses += [HttpResponse(f"http://photos.example/{n}", data, "image/jpeg") for n, data in images.items()]
    return {"crawl-00000.warc.gz": warc_bytes(responses)}


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


def test_materialization_reports_counts_histograms_preview_shards_and_passes_checks(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    land_drop(
        settings,
        "2024-01",
        _drop(
            {
                "astronaut.jpg": (FIXTURES / "astronaut.jpg").read_bytes(),
                "astronaut-small.jpg": _jpeg("astronaut.jpg", 0.8, 60),
                "coffee.jpg": (FIXTURES / "coffee.jpg").read_bytes(),
                "broken.jpg": (FIXTURES / "truncated_jpeg.jpg").read_bytes(),
            }
        ),
    )
    result = materialize_drop(settings, instance, "2024-01", ASSETS)
    meta = metadata_of(result, "deduped_images")
    assert (meta["total"], meta["kept"], meta["dagster/row_count"]) == (4, 2, 2)
    assert meta["dropped_near_duplicate"] == 1 and meta["rejected_truncated_image"] == 1
    assert pq.read_table(meta["path"]).num_rows == 2 and pq.read_table(meta["rejects_path"]).num_rows == 2
    assert "| JPEG | 2 |" in meta["formats"] and "| <1024 | 2 |" in meta["sizes"]
    assert "near_duplicate" in meta["drop_reasons"] and "Photo astronaut.jpg" in meta["preview"]
    assert meta["thumbnails"].count("data:image/jpeg;base64,") == 2
    assert meta["caption_coverage"] == 1.0 and meta["shard_samples"] == 2 and meta["stale_drops"] == []
    assert all(Path(uri).is_file() for uri in meta["shards"])
    for name in ("conservation", "no_near_duplicates_kept", "caption_coverage"):
        assert _check(result, name).passed, name


def test_late_earlier_drop_makes_the_later_one_stale_and_the_sensor_reruns_it(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    land_drop(settings, "2024-01", _drop({"astronaut.jpg": (FIXTURES / "astronaut.jpg").read_bytes()}))
    land_drop(
        settings, "2024-02", _drop({"copy.jpg": _jpeg("astronaut.jpg", 0.8, 60), "cat.jpg": _jpeg("chelsea.jpg")})
    )
    lake = LakeResource(root=settings.lake)
    defs_resources = {"lake": lake}

    first = materialize_drop(settings, instance, "2024-02", ASSETS)
    assert metadata_of(first, "deduped_images")["kept"] == 2
    with dg.build_sensor_context(instance=instance, resources=defs_resources) as ctx:
        assert not stale_image_drops(ctx).run_requests

    late = materialize_drop(settings, instance, "2024-01", ASSETS)
    assert metadata_of(late, "deduped_images")["stale_drops"] == ["2024-02"]
    assert not _check(
        run_checks(settings, instance, "2024-02", "deduped_images", ["no_near_duplicates_kept"]),
        "no_near_duplicates_kept",
    ).passed

    with dg.build_sensor_context(instance=instance, resources=defs_resources) as ctx:
        requests = stale_image_drops(ctx).run_requests
    assert [r.partition_key for r in requests] == ["2024-02"] and requests[0].run_key.startswith("2024-02:")

    rerun = materialize_drop(settings, instance, "2024-02", ["deduped_images"])
    meta = metadata_of(rerun, "deduped_images")
    assert (meta["kept"], meta["dropped_near_duplicate"], meta["stale_drops"]) == (1, 1, [])
    assert _check(rerun, "no_near_duplicates_kept").passed
    with dg.build_sensor_context(instance=instance, resources=defs_resources) as ctx:
        assert not stale_image_drops(ctx).run_requests
    assert phash_index.stale_drops(Storage(settings.lake)) == []


def _planted_images() -> list[dict]:
    planted = json.loads((REPO / "samples" / "reference" / "planted.json").read_text())
    return [c for c in planted["cases"] if "image" in c["kind"] or c.get("image_urls")]


def test_sample_drops_collapse_planted_duplicates_and_caption_from_alt_text(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    outcome: dict[str, tuple[str, str]] = {}  # url -> (reason or "kept", detail or dedup_cluster)
    kept_rows: dict[str, dict] = {}
    for drop in ("sample-a", "sample-b"):
        land_drop(settings, drop, src=SAMPLE_DROPS / drop)
        result = materialize_drop(settings, instance, drop, ASSETS)
        for name in ("conservation", "no_near_duplicates_kept"):
            assert _check(result, name).passed, (drop, name)
        meta = metadata_of(result, "deduped_images")
        index = {
            r["record_id"]: r["target_uri"]
            for r in read_stage_table(Storage(settings.lake), "raw_crawl", drop).to_pylist()
        }
        for row in pq.read_table(meta["path"]).to_pylist():
            kept_rows[row["url"]] = row
            outcome[row["url"]] = ("kept", row["dedup_cluster"])
        for row in pq.read_table(meta["rejects_path"]).to_pylist():
            outcome[index[row["record_id"]]] = (row["reason"], row["detail"])

    assert not list(Path(settings.lake).glob("deduped_images/staging/_post_commit/*"))  # the runs removed theirs
    cases = _planted_images()
    assert len(cases) >= 8
    for case in cases:
        url = case.get("url")
        if case["kind"] in ("exact_duplicate_image", "near_duplicate_image"):
            owner = kept_rows[case["duplicate_of"]]
            reason, detail = outcome[url]
            expected = (
                {"exact_duplicate"} if case["kind"].startswith("exact") else {"near_duplicate", "pixel_duplicate"}
            )
            assert reason in expected and owner["record_id"] in detail, (url, reason, detail)
            if case.get("duplicate_of_drop"):
                assert f"in drop {case['duplicate_of_drop']}" in detail
        elif case["kind"] == "noai":
            assert all(outcome[u][0] == "opt_out" for u in case["image_urls"])
        elif case.get("variant") == "truncated_jpeg":
            assert outcome[url][0] == "truncated_image"
        elif case.get("variant") in ("cmyk_jpeg", "palette_png_transparency"):
            assert outcome[url][0] == "kept"
        elif case.get("variant") == "tiny_1x1":
            assert outcome[url][0] == "too_small"
    photos = [r for r in kept_rows.values() if r["width"] >= 256]
    assert photos and all(r["caption_source"] == "alt" and r["caption"] for r in photos)
    assert kept_rows["http://www.example.com/img/retina.jpg"]["caption"].startswith("Fundus photograph")
