"""WebDataset shards of image–caption pairs: tar files of `<key>.jpg`, `<key>.txt`, `<key>.json` (+ e.g. `.mp4`).

This is the layout VLM trainers read (webdataset, img2dataset): the members of one sample share
their key and sit next to each other. Tar headers are fixed (mtime 0, uid/gid 0, mode 0644, no user
names), so the same samples give byte-identical shards. Shards are built in a local temporary
folder and published one by one with atomic copies; shards left from an earlier, longer run of the
same partition are deleted after the new ones are in place.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmrecipe.storage import Storage, retried

SHARD_NAME = "shard-{:06d}.tar"


@dataclass(frozen=True)
class WebDatasetJob:
    """The task that writes a drop's WebDataset shards from its published kept rows (never in the driver)."""

    storage: Storage
    drop: str
    config: Any  # the stage's config (its `shard_samples`, `shard_uncaptioned`)


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


class ShardWriter:
    """Streams samples into numbered tar shards of at most `max_samples` samples each."""

    def __init__(self, storage: Storage, prefix_uri: str, max_samples: int = 1000) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self.storage, self.prefix_uri, self.max_samples = storage, prefix_uri, max_samples
        self._dir = tempfile.TemporaryDirectory(prefix="mmrecipe-shards-", dir=storage.scratch_dir())
        self._tar: tarfile.TarFile | None = None
        self._paths: list[str] = []
        self._in_shard = 0
        self.samples = 0

    def add(
        self, key: str, jpg: bytes, caption: str, meta: Mapping[str, Any], extra: Mapping[str, bytes] | None = None
    ) -> None:
        """Append one sample (key must not contain dots: webdataset splits member names at the first dot).

        `extra` adds members by extension (e.g. `{"mp4": clip}`), written before the JPEG."""
        if "." in key or "/" in key:
            raise ValueError(f"webdataset key {key!r} must not contain '.' or '/'")
        if self._tar is None or self._in_shard >= self.max_samples:
            self._next_shard()
        assert self._tar is not None
        body = json.dumps(dict(meta), sort_keys=True, ensure_ascii=False).encode()
        members = [*(extra or {}).items(), ("jpg", jpg), ("txt", caption.encode()), ("json", body)]
        for name, data in ((f"{key}.{ext}", data) for ext, data in members):
            self._tar.addfile(*_member(name, data))
        self._in_shard += 1
        self.samples += 1

    def _next_shard(self) -> None:
        if self._tar is not None:
            self._tar.close()
        path = os.path.join(self._dir.name, SHARD_NAME.format(len(self._paths)))
        self._paths.append(path)
        self._tar = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115 (closed in close/abort)
        self._in_shard = 0

    def close(self) -> list[str]:
        """Publish every shard and remove stale ones from an earlier run; returns the shard URIs."""
        if self._tar is not None:
            self._tar.close()
        uris = []
        try:
            for path in self._paths:
                uri = f"{self.prefix_uri.rstrip('/')}/{os.path.basename(path)}"
                retried(lambda p=path, u=uri: self.storage.copy_file_in(p, u))
                uris.append(uri)
            for old in self.storage.list_files(self.prefix_uri):
                if old not in uris:
                    self.storage.delete(old)
        finally:
            self._dir.cleanup()
        return uris

    def abort(self) -> None:
        """Discard the shards built so far; nothing is published."""
        if self._tar is not None:
            self._tar.close()
        self._dir.cleanup()


def read_shard(data: bytes) -> dict[str, dict[str, bytes]]:
    """The samples of a shard's bytes: key -> {extension: member bytes}."""
    samples: dict[str, dict[str, bytes]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            key, _, ext = member.name.partition(".")
            f = tar.extractfile(member)
            samples.setdefault(key, {})[ext] = f.read() if f else b""
    return samples
