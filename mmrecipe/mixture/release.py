"""Releases: a built mixture copied to `<lake>/releases/<recipe>/<version>/`, published by a marker file.

A release folder counts only once its `_RELEASE.json` exists; that marker (listing every file with its
sha256) is written after all files are copied and verified, and `releases/<recipe>/LATEST` is updated
after it. A killed promotion therefore leaves no visible release (local disk and S3 alike).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from mmrecipe.mixture.build import read_summary
from mmrecipe.mixture.manifest import SUMMARY_FILE, mixture_uri
from mmrecipe.storage import Storage

RELEASES = "releases"
MARKER = "_RELEASE.json"
EVIDENCE_FILE = "checks.json"  # the check executions the release relied on, drop by drop


@dataclass(frozen=True)
class Release:
    """A published release: recipe, version, where it is, and how many files/bytes it holds."""

    recipe: str
    version: str
    uri: str
    files: int
    bytes: int
    already_released: bool


def release_uri(storage: Storage, recipe: str, version: str, *parts: str) -> str:
    """A path inside one release folder."""
    return storage.uri(RELEASES, recipe, version, *parts)


def read_release(storage: Storage, recipe: str, version: str) -> dict[str, Any] | None:
    """The marker of a published release, or None if that release does not exist (or is incomplete)."""
    uri = release_uri(storage, recipe, version, MARKER)
    return json.loads(storage.read_bytes(uri)) if storage.exists(uri) else None


def latest_release(storage: Storage, recipe: str) -> str | None:
    """The version named by `releases/<recipe>/LATEST`, or None."""
    uri = storage.uri(RELEASES, recipe, "LATEST")
    return storage.read_bytes(uri).decode().strip() if storage.exists(uri) else None


def promote(
    storage: Storage, recipe: str, extra: dict[str, Any] | None = None, evidence: list[dict[str, Any]] | None = None
) -> Release:
    """Copy the recipe's current mixture into its release folder (idempotent per mixture version).

    `evidence` (the check executions the release relied on) is written as `checks.json` beside the manifest.
    """
    summary = read_summary(storage, recipe)
    version = f"v-{summary['version']}"
    files: dict[str, str] = dict(summary["files"])
    existing = read_release(storage, recipe, version)
    total = 0
    if existing is None:
        for rel, sha in sorted(files.items()):
            data = storage.read_bytes(mixture_uri(storage, recipe, rel))
            if hashlib.sha256(data).hexdigest() != sha:
                raise ValueError(
                    f"mixture[{recipe}] file {rel} differs from its mixture.json sha256 (changed after the build?): "
                    "rebuild the mixture, then release"
                )
            storage.write_bytes(release_uri(storage, recipe, version, rel), data)
            total += len(data)
        summary_bytes = storage.read_bytes(mixture_uri(storage, recipe, SUMMARY_FILE))
        storage.write_bytes(release_uri(storage, recipe, version, SUMMARY_FILE), summary_bytes)
        added = {SUMMARY_FILE: summary_bytes}
        if evidence is not None:
            added[EVIDENCE_FILE] = json.dumps(evidence, indent=1, sort_keys=True).encode() + b"\n"
            storage.write_bytes(release_uri(storage, recipe, version, EVIDENCE_FILE), added[EVIDENCE_FILE])
        marker = {
            "recipe": recipe,
            "version": version,
            "mixture_version": summary["version"],
            "recipe_sha256": summary["recipe_sha256"],
            "files": files | {name: hashlib.sha256(data).hexdigest() for name, data in added.items()},
            "bytes": total + sum(len(data) for data in added.values()),
            **(extra or {}),
        }
        storage.write_bytes(
            release_uri(storage, recipe, version, MARKER), json.dumps(marker, indent=1, sort_keys=True).encode()
        )
        existing = marker
    storage.write_bytes(storage.uri(RELEASES, recipe, "LATEST"), f"{version}\n".encode())
    return Release(
        recipe,
        version,
        release_uri(storage, recipe, version),
        len(existing["files"]),
        int(existing["bytes"]),
        already_released=total == 0,
    )
