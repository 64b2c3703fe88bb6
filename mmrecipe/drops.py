"""Source drops: validated drop names and the `_MANIFEST.json` that marks a drop complete.

A drop is a folder of WARC files under the landing root. It is complete only when its
manifest lists every file with size and sha256 and the files match.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass

from mmrecipe.storage import Storage

MANIFEST = "_MANIFEST.json"
WARC_SUFFIXES = (".warc.gz", ".warc")
_DROP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class DropError(ValueError):
    """A drop that cannot be accepted, with what was wrong and what to do."""


def validate_drop_name(name: str) -> str:
    """`name` if it is a safe drop name; raises DropError saying why otherwise."""
    if not _DROP_NAME.fullmatch(name or "") or ".." in name:
        raise DropError(
            f"invalid drop name {name!r}: use 1-128 characters from [A-Za-z0-9._-], starting with a "
            "letter or digit, with no '..' or '/'. Rename the folder and land it again."
        )
    return name


def validate_manifest_path(path: str) -> str:
    """A manifest file path if it stays inside its drop folder; raises DropError otherwise."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        raise DropError(f"manifest path {path!r} escapes the drop folder or is malformed")
    return path


@dataclass(frozen=True)
class ManifestEntry:
    """One file a drop manifest promises: relative path, size and sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """A drop's manifest: its name and the files it contains."""

    drop: str
    files: tuple[ManifestEntry, ...]

    @property
    def warc_files(self) -> list[str]:
        return [f.path for f in self.files if f.path.endswith(WARC_SUFFIXES)]

    def to_json(self) -> str:
        body = {"drop": self.drop, "files": [vars(f) for f in self.files]}
        return json.dumps(body, indent=1, sort_keys=False) + "\n"

    @property
    def digest(self) -> str:
        """A short content hash of the manifest, stable across re-uploads of the same drop."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def parse_manifest(text: str, where: str) -> Manifest:
    """The manifest in `text`; raises DropError naming `where` if it is malformed."""
    try:
        body = json.loads(text)
        files = tuple(
            ManifestEntry(validate_manifest_path(str(f["path"])), int(f["size"]), str(f["sha256"]).lower())
            for f in body["files"]
        )
        return Manifest(drop=str(body.get("drop", "")), files=files)
    except DropError as e:
        raise DropError(f"{where}: {e}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DropError(
            f"{where}: malformed manifest ({e}). Expected "
            '{"drop": NAME, "files": [{"path": ..., "size": ..., "sha256": ...}]}'
        ) from None


def sha256_of(storage: Storage, uri: str, chunk: int = 8 << 20) -> str:
    """Hex sha256 of the file at `uri`, streamed."""
    h = hashlib.sha256()
    with storage.open_input(uri) as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def folder_files(folder: str) -> tuple[list[str], list[str]]:
    """The relative paths of a local folder's WARC files and of its other files (the manifest excluded), sorted."""
    warcs, others = [], []
    for root, _, names in os.walk(folder):
        for name in names:
            rel = os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/")
            if rel != MANIFEST:
                (warcs if rel.endswith(WARC_SUFFIXES) else others).append(rel)
    return sorted(warcs), sorted(others)


def manifest_for_folder(folder: str, drop: str, paths: list[str] | None = None) -> Manifest:
    """A manifest describing `paths` of a local folder (default: every file except the manifest itself)."""
    if paths is None:
        warcs, others = folder_files(folder)
        paths = sorted(warcs + others)
    entries = []
    for rel in paths:
        full = os.path.join(folder, rel)
        h = hashlib.sha256()
        with open(full, "rb") as f:
            while block := f.read(8 << 20):
                h.update(block)
        entries.append(ManifestEntry(rel, os.path.getsize(full), h.hexdigest()))
    return Manifest(drop=drop, files=tuple(entries))


def verify_drop(storage: Storage, drop: str, check_hashes: bool = True) -> Manifest:
    """The drop's manifest after checking every listed file; raises DropError on any mismatch.

    `check_hashes=False` checks presence and sizes only (no file is read), which is what a sensor
    tick can afford on multi-GB drops; raw_crawl then verifies every sha256 before indexing.
    """
    validate_drop_name(drop)
    where = storage.uri(drop, MANIFEST)
    if not storage.exists(where):
        raise DropError(f"drop {drop!r} has no {MANIFEST} yet (incomplete upload?)")
    manifest = parse_manifest(storage.read_bytes(where).decode("utf-8", "replace"), where)
    if manifest.drop and manifest.drop != drop:
        raise DropError(f"{where}: names drop {manifest.drop!r} but lives in folder {drop!r}")
    if not manifest.warc_files:
        raise DropError(f"{where}: lists no *.warc or *.warc.gz file")
    for entry in manifest.files:
        uri = storage.uri(drop, entry.path)
        if not storage.exists(uri):
            raise DropError(f"drop {drop!r}: manifest lists {entry.path} but it is missing (upload incomplete?)")
        size = storage.size(uri)
        if size != entry.size:
            raise DropError(f"drop {drop!r}: {entry.path} is {size} bytes, manifest says {entry.size}")
        if check_hashes and sha256_of(storage, uri) != entry.sha256:
            raise DropError(f"drop {drop!r}: {entry.path} sha256 does not match the manifest")
    return manifest
