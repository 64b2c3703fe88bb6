"""Test edits of committed stage output: a part rewritten in place is re-entered in its partition's commit.

Readers refuse a committed part whose size or rows differ from its commit entry (`mmrecipe.stage_output`), so a
test that plants a bad row for a check to catch models a stage that *published* that content: it rewrites the
part, then re-enters it with `recommit`.
"""

import hashlib
import json

import pyarrow.parquet as pq

from mmrecipe.stage_output import commit_uri, read_commit
from mmrecipe.storage import Storage


def recommit(storage: Storage, part_uri: str) -> str:
    """Re-enter the committed part at `part_uri` (`<lake>/<asset>/<tree>/<partition>/<name>`) with its current
    rows, size and sha256 in its partition's commit; returns the commit file's URI."""
    asset, tree, partition, name = part_uri.rstrip("/").rsplit("/", 4)[1:]
    commit = read_commit(storage, asset, partition)
    data = storage.read_bytes(part_uri)
    with storage.open_input(part_uri) as f:
        rows = pq.ParquetFile(f).metadata.num_rows
    [entry] = [e for e in commit["parts"][tree] if e["name"] == name]
    entry |= {"rows": rows, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    uri = commit_uri(storage, asset, partition)
    storage.write_bytes(uri, json.dumps(commit, indent=1, sort_keys=True).encode())
    return uri
