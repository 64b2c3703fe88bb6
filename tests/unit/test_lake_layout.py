"""The lake layout: the kept rows of every partition are one clean glob that HF datasets, duckdb and pyarrow read.

Three partitions are written by `StageWriter` (the writer of every stage), each with kept rows and rejects, plus a
side file of another schema (as a dedup index is) and a leftover temporary part of a killed writer.
"""

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from mmrecipe.stage_output import (
    PROVENANCE_FIELDS,
    SIDE,
    StageWriter,
    committed_parts,
    stage_partitions,
    stage_prefix,
    stage_uri,
)
from mmrecipe.storage import Storage

SCHEMA = pa.schema([*PROVENANCE_FIELDS, pa.field("text", pa.string())])
KEPT = {"2026-01-a": 4, "2026-02-b": 7, "2026-03-c": 1}
REJECTED = {"2026-01-a": 3, "2026-02-b": 0, "2026-03-c": 5}


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Storage:
    monkeypatch.setenv("MMRECIPE_TMP", str(tmp_path / "tmp"))
    storage = Storage(str(tmp_path / "lake"))
    for drop, kept in KEPT.items():
        with StageWriter(storage, "extracted_text", drop, SCHEMA) as out:
            for i in range(kept + REJECTED[drop]):
                prov = {"record_id": f"{drop}-{i}", "drop": drop, "warc_path": "a.warc.gz", "warc_offset": i}
                if i < kept:
                    out.keep({**prov, "text": f"page {i}\nof {drop}"})
                else:
                    out.reject(prov, "undecodable", "bad bytes")
            out.close()
        side = pa.table({"band": [1, 2], "key": ["x", "y"]})
        storage.write_table(storage.uri(stage_prefix("extracted_text", drop, SIDE), "dedup_index.parquet"), side)
    data_dir = Path(storage.uri("extracted_text", "data", "2026-01-a"))
    (data_dir / ".tmp-part-00001.parquet-killed").write_bytes(b"PAR1 half a file")
    return storage


def test_the_layout_separates_kept_rows_rejects_and_side_files(lake: Storage) -> None:
    root = Path(lake.root)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert [f for f in files if f.endswith(".parquet")] == sorted(
        [f"extracted_text/{tree}/{drop}/{name}" for drop in KEPT for tree, name in
         (("data", "part-00000.parquet"), ("rejects", "part-00000.parquet"), ("side", "dedup_index.parquet"))]
    )  # fmt: skip
    assert stage_partitions(lake, "extracted_text") == sorted(KEPT)
    assert [f for f in files if f.endswith(".json")] == [f"extracted_text/commits/{drop}.json" for drop in KEPT]
    data, rejects = (committed_parts(lake, "extracted_text", "2026-01-a", tree) for tree in ("data", "rejects"))
    assert data == [lake.uri("extracted_text/data/2026-01-a/part-00000.parquet")]
    assert rejects == [lake.uri("extracted_text/rejects/2026-01-a/part-00000.parquet")]
    assert stage_uri(lake, "extracted_text", "2026-01-a").endswith("/extracted_text/data/2026-01-a")


def test_hf_datasets_reads_the_kept_rows_of_every_partition(lake: Storage, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import datasets

    loaded = datasets.load_dataset(
        "parquet", data_dir=lake.uri("extracted_text", "data"), split="train", cache_dir=str(tmp_path / "hf-cache")
    )
    assert loaded.num_rows == sum(KEPT.values()) == 12
    assert sorted(loaded.column_names) == sorted(SCHEMA.names)
    assert sorted(set(loaded["drop"])) == sorted(KEPT)


def test_duckdb_reads_the_kept_rows_through_one_glob(lake: Storage) -> None:
    glob = lake.uri("extracted_text", "data", "**", "*.parquet")
    rows = duckdb.sql(f"select drop, count(*) as n from read_parquet('{glob}') group by drop order by drop").fetchall()
    assert rows == sorted(KEPT.items())
    rejected = duckdb.sql(
        f"select count(*) from read_parquet('{lake.uri('extracted_text', 'rejects', '*', '*.parquet')}')"
    )
    assert rejected.fetchall() == [(sum(REJECTED.values()),)]


def test_pyarrow_dataset_reads_the_kept_rows_of_the_data_tree(lake: Storage) -> None:
    table = ds.dataset(lake.uri("extracted_text", "data"), format="parquet").to_table()
    assert table.num_rows == sum(KEPT.values())
    assert table.schema.equals(SCHEMA, check_metadata=False)
