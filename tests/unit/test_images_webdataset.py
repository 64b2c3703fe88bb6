"""WebDataset shards: member layout, shard boundaries, determinism and replacement of stale shards."""

import json
from pathlib import Path

import pytest

from mmrecipe.images.webdataset import ShardWriter, read_shard
from mmrecipe.storage import Storage

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "images"


def _write(lake: Storage, n: int, per_shard: int) -> list[str]:
    jpg = (FIXTURES / "hopper.jpg").read_bytes()
    writer = ShardWriter(lake, lake.uri("deduped_images", "d1", "shards"), per_shard)
    for i in range(n):
        writer.add(f"rec{i:03d}", jpg, f"caption {i} – ünïcode", {"record_id": f"rec{i:03d}", "width": 128})
    return writer.close()


def test_shards_hold_jpg_txt_json_per_sample_and_split_at_max_samples(tmp_path: Path) -> None:
    lake = Storage(str(tmp_path / "lake"))
    uris = _write(lake, 5, per_shard=2)
    assert [u.rsplit("/", 1)[1] for u in uris] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    samples = [read_shard(lake.read_bytes(u)) for u in uris]
    assert [sorted(s) for s in samples] == [["rec000", "rec001"], ["rec002", "rec003"], ["rec004"]]
    first = samples[0]["rec000"]
    assert set(first) == {"jpg", "txt", "json"}
    assert first["jpg"] == (FIXTURES / "hopper.jpg").read_bytes()
    assert first["txt"].decode() == "caption 0 – ünïcode"
    assert json.loads(first["json"]) == {"record_id": "rec000", "width": 128}


def test_shards_are_byte_identical_across_runs_and_stale_shards_are_removed(tmp_path: Path) -> None:
    lake = Storage(str(tmp_path / "lake"))
    first = {u: lake.read_bytes(u) for u in _write(lake, 5, per_shard=2)}
    second = {u: lake.read_bytes(u) for u in _write(lake, 5, per_shard=2)}
    assert first == second
    fewer = _write(lake, 1, per_shard=2)
    assert lake.list_files(lake.uri("deduped_images", "d1", "shards")) == fewer and len(fewer) == 1


def test_keys_with_dots_are_refused(tmp_path: Path) -> None:
    writer = ShardWriter(Storage(str(tmp_path)), str(tmp_path / "shards"))
    with pytest.raises(ValueError, match="must not contain"):
        writer.add("a.b", b"", "", {})
    writer.abort()
