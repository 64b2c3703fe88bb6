"""Drop names and manifests: what is accepted, what is refused and why."""

import json
from pathlib import Path

import pytest

from mmrecipe.drops import DropError, manifest_for_folder, parse_manifest, validate_drop_name, verify_drop
from mmrecipe.storage import Storage


@pytest.mark.parametrize("name", ["crawl-2026-11-01", "sample-a", "CC_MAIN.2026.48", "a"])
def test_valid_drop_names(name: str) -> None:
    assert validate_drop_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "../etc", "a/b", "a..b", ".hidden", "-flag", "with space", "drop\u00e9", "x" * 129, "a\\b"]
)
def test_invalid_drop_names_say_what_to_do(name: str) -> None:
    with pytest.raises(DropError, match=r"invalid drop name.*Rename the folder"):
        validate_drop_name(name)


@pytest.mark.parametrize(
    ("path", "message"),
    [("../outside.warc.gz", "escapes"), ("/abs.warc", "escapes"), ("a//b.warc", "escapes"), ("a\\b.warc", "escapes")],
)
def test_manifest_paths_cannot_escape_the_drop(path: str, message: str) -> None:
    text = json.dumps({"drop": "d", "files": [{"path": path, "size": 1, "sha256": "0" * 64}]})
    with pytest.raises(DropError, match=message):
        parse_manifest(text, "landing/d/_MANIFEST.json")


def _drop(tmp_path: Path, files: dict[str, bytes]) -> Storage:
    folder = tmp_path / "d"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "_MANIFEST.json").write_text(manifest_for_folder(str(folder), "d").to_json())
    return Storage(str(tmp_path))


def test_verify_drop_accepts_a_matching_manifest(tmp_path: Path) -> None:
    storage = _drop(tmp_path, {"a.warc.gz": b"abc", "notes.txt": b"x"})
    manifest = verify_drop(storage, "d")
    assert manifest.warc_files == ["a.warc.gz"]
    assert [f.size for f in manifest.files] == [3, 1]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: (p / "a.warc.gz").unlink(), "missing"),
        (lambda p: (p / "a.warc.gz").write_bytes(b"abcd"), "4 bytes, manifest says 3"),
        (lambda p: (p / "a.warc.gz").write_bytes(b"xyz"), "sha256 does not match"),
        (lambda p: (p / "_MANIFEST.json").unlink(), "no _MANIFEST.json yet"),
        (lambda p: (p / "_MANIFEST.json").write_text("{not json"), "malformed manifest"),
        (lambda p: (p / "_MANIFEST.json").write_text('{"drop": "other", "files": []}'), "names drop 'other'"),
        (lambda p: (p / "_MANIFEST.json").write_text('{"drop": "d", "files": []}'), "lists no"),
    ],
)
def test_verify_drop_refuses_mismatches(tmp_path: Path, mutate, message: str) -> None:
    storage = _drop(tmp_path, {"a.warc.gz": b"abc"})
    mutate(tmp_path / "d")
    with pytest.raises(DropError, match=message):
        verify_drop(storage, "d")
