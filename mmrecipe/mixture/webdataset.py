"""WebDataset shards of image–caption and video–text pairs: tar files of `<key>.jpg`, `.txt`, `.json` (and `.mp4`).

The tar members carry fixed owners, modes and mtime 0, so the same samples give byte-identical shards.
Keys contain no dots (WebDataset splits a member name at its first dot).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mmrecipe.storage import Storage


@dataclass(frozen=True)
class ImageSample:
    """One image–caption pair with the metadata stored beside it (`extra`: more members by extension, e.g. mp4)."""

    key: str
    jpeg: bytes
    caption: str
    meta: Mapping[str, Any]
    extra: Mapping[str, bytes] = field(default_factory=dict)


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_webdataset(
    storage: Storage,
    folder_prefix: str,
    samples: Iterable[ImageSample],
    shard_samples: int = 1000,
    name: str = "images",
) -> list[dict[str, Any]]:
    """Write samples into `<name>-NNNNNN.tar` shards under `folder_prefix`; returns [{file, samples, sha256}]."""
    shards: list[dict[str, Any]] = []
    batch: list[ImageSample] = []

    def flush() -> None:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for s in batch:
                if "." in s.key or "/" in s.key:
                    raise ValueError(f"WebDataset key {s.key!r} must not contain '.' or '/'")
                for ext, member in sorted(s.extra.items()):
                    _member(tar, f"{s.key}.{ext}", member)
                _member(tar, f"{s.key}.jpg", s.jpeg)
                _member(tar, f"{s.key}.txt", s.caption.encode("utf-8"))
                _member(tar, f"{s.key}.json", json.dumps(dict(s.meta), sort_keys=True).encode("utf-8"))
        data = buf.getvalue()
        file = f"{name}-{len(shards):06d}.tar"
        storage.write_bytes(storage.uri(folder_prefix, file), data)
        shards.append({"file": file, "samples": len(batch), "sha256": hashlib.sha256(data).hexdigest()})
        batch.clear()

    for sample in samples:
        batch.append(sample)
        if len(batch) >= shard_samples:
            flush()
    if batch:
        flush()
    return shards


def read_webdataset(data: bytes) -> list[dict[str, bytes]]:
    """The samples of one shard's bytes, grouped by key: [{"__key__", "jpg", "txt", "json", ...}]."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        for m in tar.getmembers():
            key, ext = m.name.split(".", 1)
            f = tar.extractfile(m)
            samples.setdefault(key, {"__key__": key.encode()})[ext] = f.read() if f else b""
    return list(samples.values())
