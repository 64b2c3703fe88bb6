"""The clip index's matching in tasks: the earlier drops' kept clips a drop can match give the decisions of all."""

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mmrecipe.images.phash_bands import sha_keys
from mmrecipe.images.phash_index import Candidate, Decision, decide, duplicate_edges
from mmrecipe.storage import Storage
from mmrecipe.video import clip_index
from tests.unit.test_images_phash_index import _random_drop


def _run_drop(lake: Storage, drop: str, clips: list[tuple[str, int, str]], tasks: list[str]) -> list[Decision]:
    """Decide a drop's clips as the stage does (prior matched in tasks, only clips with an edge decided), checked
    against `decide` over every earlier kept clip (`load_prior`); write its index entries."""
    cands = [Candidate(c, f"{key}:0", h) for c, h, key in clips]
    phashes, keys = np.array([c.phash for c in cands], np.int64), sha_keys([c.sha256 for c in cands])

    def map_tasks(fn: Callable[[Any], Any], jobs: Iterable[clip_index.PriorJob]) -> list[Any]:
        """The engine's map, recording the earlier drops whose tasks ran."""
        jobs = list(jobs)
        tasks.extend(j.drop for j in jobs)
        return [fn(j) for j in jobs]

    prior, basis = clip_index.match_prior(lake, drop, phashes, keys, 10, 4, map_tasks)
    whole, whole_basis = clip_index.load_prior(lake, drop)
    assert basis == whole_basis and len(prior.record_id) <= len(whole.record_id)
    expected = decide(cands, whole, 10)
    edges = duplicate_edges(phashes, keys, prior, 10).tolist()
    assert edges == duplicate_edges(phashes, keys, whole, 10).tolist()
    by_edges = dict(zip(edges, decide([cands[i] for i in edges], prior, 10), strict=True))
    assert [by_edges.get(i, Decision(True, c.record_id)) for i, c in enumerate(cands)] == expected
    rows = [
        {"clip_id": c.record_id, "record_id": c.record_id, "drop": drop, "warc_path": "w", "warc_offset": i,
         "clip_key": c.sha256, "phash": c.phash, "kept": d.kept, "dedup_cluster": d.cluster, "reason": d.reason,
         "hamming": d.hamming}
        for i, (c, d) in enumerate(zip(cands, expected, strict=True))
    ]  # fmt: skip
    clip_index.write_entries(lake, drop, pa.Table.from_pylist(rows, schema=clip_index.ENTRY_SCHEMA), basis, 10)
    return expected


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matched_prior_gives_the_decisions_of_every_earlier_kept_clip(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    seeds = rng.integers(-(2**63), 2**63 - 1, size=6, dtype=np.int64)
    lake, tasks = Storage(str(tmp_path / "lake")), []
    decided = {f"d{i}": _run_drop(lake, f"d{i}", _random_drop(rng, f"d{i}", seeds), tasks) for i in range(4)}
    assert tasks == ["d0", "d0", "d1", "d0", "d1", "d2"]  # one task per earlier drop
    assert sum(d.owner_drop is not None for ds in decided.values() for d in ds) > 0  # duplicates across drops
    assert sum(d.kept for ds in decided.values() for d in ds) > 0
