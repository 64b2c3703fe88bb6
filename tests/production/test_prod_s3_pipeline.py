"""The sample drop through the sensor and the drop stages with landing and lake on S3 (moto over HTTP).

Nothing but configuration differs from the embedded default: the same sensor, job and assets run
with `s3://` roots, and the outputs are read back from S3.
"""

import dataclasses
import hashlib

import dagster as dg
import pyarrow.compute as pc
import pytest

from data_assets.definitions import build_defs
from mmrecipe.crawl_index import read_records
from mmrecipe.settings import Settings
from mmrecipe.stage_output import is_committed, read_stage_table
from mmrecipe.storage import Storage
from mmrecipe.warc_index import RecordReader
from resources import build_resources
from sensors.source_drops import source_drops
from tests.conftest import SAMPLE_DROPS, land_drop, materialize_drop, metadata_of
from tests.production.prod_support import S3Server, upload_folder

pytestmark = pytest.mark.slow  # real servers and tools: Postgres, moto S3, helm

COLUMNS = ["record_id", "warc_offset", "warc_length", "record_type", "target_uri", "payload_sha256"]


def _on_s3(settings: Settings, s3: S3Server) -> Settings:
    return dataclasses.replace(
        settings,
        lake=f"s3://{s3.bucket}/lake",
        landing=f"s3://{s3.bucket}/landing",
        s3_endpoint_url=s3.endpoint_url,
    )


def _sensor_starts(settings: Settings, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    result = source_drops(dg.build_sensor_context(instance=instance, resources=build_resources(settings)))
    for req in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
    return list(result.run_requests)


def _lake_keys(s3: S3Server, prefix: str) -> list[str]:
    listing = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


def test_sample_drop_on_s3_is_sensed_indexed_and_read_back(
    settings: Settings, instance: dg.DagsterInstance, s3_server: S3Server
) -> None:
    s3_settings = _on_s3(settings, s3_server)
    landed = upload_folder(s3_server, SAMPLE_DROPS / "sample-a", "landing/sample-a")
    assert "landing/sample-a/_MANIFEST.json" in landed
    requests = _sensor_starts(s3_settings, instance)
    assert [r.partition_key for r in requests] == ["sample-a"]

    job = build_defs(s3_settings).resolve_job_def("drop_stages_job")
    result = job.execute_in_process(
        instance=instance, partition_key=requests[0].partition_key, asset_selection=[dg.AssetKey("raw_crawl")]
    )
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    meta = metadata_of(result, "raw_crawl")
    assert meta["path"] == f"s3://{s3_server.bucket}/lake/raw_crawl/data/sample-a"
    assert meta["rejects_path"] == f"s3://{s3_server.bucket}/lake/raw_crawl/rejects/sample-a"

    # only the commit and the two parts it names exist: no temporary names, no staging, no open uploads
    assert _lake_keys(s3_server, "lake/") == [
        "lake/raw_crawl/commits/sample-a.json",
        "lake/raw_crawl/data/sample-a/part-00000.parquet",
        "lake/raw_crawl/rejects/sample-a/part-00000.parquet",
    ]
    assert not s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket).get("Uploads")

    # read back from S3: the index matches its metadata, points into the S3 landing, and its offsets work
    lake = Storage(s3_settings.lake, endpoint_url=s3_server.endpoint_url)
    landing = Storage(s3_settings.landing, endpoint_url=s3_server.endpoint_url)
    index = lake.read_table(meta["path"])
    assert index.num_rows == meta["dagster/row_count"] == meta["kept"] > 0
    assert pc.all(pc.starts_with(index["warc_path"], f"s3://{s3_server.bucket}/landing/sample-a/")).as_py()
    html = read_records(lake, "sample-a", "html")
    assert html.num_rows > 0
    with RecordReader(landing) as reader:
        for row in html.slice(0, 5).to_pylist():
            record = reader.read(row["warc_path"], row["warc_offset"], row["warc_length"])
            assert hashlib.sha256(record.payload).hexdigest() == row["payload_sha256"]

    # the same drop indexed from a local landing into a local lake gives the same records
    land_drop(settings, "sample-a", src=SAMPLE_DROPS / "sample-a")
    local = metadata_of(materialize_drop(settings, instance, "sample-a"), "raw_crawl")
    local_index = Storage(settings.lake).read_table(local["path"], COLUMNS)
    assert local_index.sort_by("record_id").equals(index.select(COLUMNS).sort_by("record_id"))


@pytest.mark.slow
def test_every_drop_stage_runs_with_the_lake_on_s3(
    settings: Settings, instance: dg.DagsterInstance, s3_server: S3Server
) -> None:
    s3_settings = _on_s3(settings, s3_server)
    drops = sorted(p.name for p in SAMPLE_DROPS.iterdir() if p.is_dir())
    for drop in drops:
        upload_folder(s3_server, SAMPLE_DROPS / drop, f"landing/{drop}")
    requests = _sensor_starts(s3_settings, instance)
    assert sorted(r.partition_key for r in requests) == drops
    defs = build_defs(s3_settings)
    job = defs.resolve_job_def("drop_stages_job")
    for drop in drops:  # the quality classifier (a model asset) trains on every drop's crawl index
        assert job.execute_in_process(
            instance=instance, partition_key=drop, asset_selection=[dg.AssetKey("raw_crawl")]
        ).success
    models = defs.resolve_implicit_global_asset_job_def()
    assert models.execute_in_process(instance=instance, asset_selection=[dg.AssetKey("quality_classifier")]).success

    stages = sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys)
    result = job.execute_in_process(instance=instance, partition_key="sample-a", raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed == []
    lake = Storage(s3_settings.lake, endpoint_url=s3_server.endpoint_url)
    for stage in stages:
        meta = metadata_of(result, stage)
        assert meta["path"] == f"s3://{s3_server.bucket}/lake/{stage}/data/sample-a", stage
        assert is_committed(lake, stage, "sample-a"), stage
        assert lake.dataset(meta["path"]).count_rows() == meta["dagster/row_count"], stage
        assert read_stage_table(lake, stage, "sample-a").num_rows == meta["dagster/row_count"], stage
