"""Dedup for any text modality: vectorised MinHash signatures, exact keys and a persistent LSH band index.

`minhash.py` turns texts into 112-permutation MinHash signatures and 14 band hashes (FineWeb's
word-5-gram, 14 x 8 setting); `band_index.py` keeps each partition's exact keys and band hashes in
the lake, bucketed by value (`bucket_file.py`, shared with the image pHash index), and decides,
order-independently and bucket by bucket, which documents are the first copy of their cluster.

Use from a stage (text pages, audio transcripts, ...), with `asset` the stage that owns the index:

    entries = IndexEntries.from_texts(record_ids, texts)        # record order, one batch or many + concat
    index = BandIndex(lake, asset, buckets=settings.dedup_buckets)  # map_tasks=: the engine's map, if any
    index.write(drop, entries)                                  # the drop's own entries, nothing else
    index.write_parts(drop, records, keys, rows)                # the same from shards' side parts (a sharded stage)
    decided = index.decide_parts(drop, spans, folder)           # per span [lo, hi) of entries: one decisions part
    decisions = index.decide(drop)                              # the same in memory (small drops, tests)
    schema = schema.with_metadata(decided.sources_metadata())   # record what the decisions were made from
    BandIndex(lake, asset).stale_outputs(consumer_asset)        # drops to re-decide after an earlier drop changed
"""

from mmrecipe.dedup.band_index import BandIndex, DedupDecisions, IndexEntries
from mmrecipe.dedup.minhash import MinHashConfig, band_hashes, exact_key, exact_keys, minhash_signatures

__all__ = [
    "BandIndex",
    "DedupDecisions",
    "IndexEntries",
    "MinHashConfig",
    "band_hashes",
    "exact_key",
    "exact_keys",
    "minhash_signatures",
]
