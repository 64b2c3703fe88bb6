"""The datatrove environment that the text benchmark and the reference test compare with, and their real pages.

datatrove 0.10.1 and spaCy run in their own venv, `benchmarks/.venv-datatrove` (ignored by git, never imported
by mmrecipe), created from the pinned packages below by `python benchmarks/datatrove_env.py` (CI runs it from
.ci/install-system.sh) or on first use by the benchmark. The same command keeps the trafilatura sdist, whose
`tests/resources/` holds real web pages, under `benchmarks/.cache/`.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DT_VENV = REPO / "benchmarks" / ".venv-datatrove"
DT_PYTHON = DT_VENV / "bin" / "python"
DT_PACKAGES = ["datatrove[io,processing]==0.10.1", "spacy==3.8.18", "lxml_html_clean==0.4.6"]
DT_READY = DT_VENV / ".installed"  # written once every package is in
CACHE = REPO / "benchmarks" / ".cache"
TRAFILATURA_SDIST = "trafilatura==2.3.1"
SAMPLE_DROPS = REPO / "samples" / "drops"


def ensure_datatrove_venv() -> Path:
    """The datatrove venv's python, creating the venv (no torch is pulled in) unless it is complete."""
    if not DT_READY.exists():
        subprocess.run([sys.executable, "-m", "venv", str(DT_VENV)], check=True)
        (DT_VENV / ".gitignore").write_text("*\n")
        subprocess.run([str(DT_PYTHON), "-m", "pip", "install", "-q", *DT_PACKAGES], check=True)
        DT_READY.write_text("\n".join(DT_PACKAGES) + "\n")
    return DT_PYTHON


def ensure_trafilatura_pages() -> Path:
    """The folder of the trafilatura sdist's real test pages (`tests/resources/*.html`), downloaded once."""
    folder = CACHE / "trafilatura-resources"
    if not folder.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", str(CACHE)]
        subprocess.run([*pip, TRAFILATURA_SDIST], check=True)
        sdist = next(CACHE.glob("trafilatura-*.tar.gz"))
        partial = folder.with_suffix(".partial")
        partial.mkdir(exist_ok=True)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                if member.isfile() and "/tests/resources/" in member.name and member.name.endswith(".html"):
                    (partial / Path(member.name).name).write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
        partial.rename(folder)
    return folder


def sample_pages() -> list[tuple[str, bytes, bytes]]:
    """(url, HTTP header block, body) of every HTTP-200 HTML response of the sample drops."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    pages = []
    for warc in sorted(SAMPLE_DROPS.glob("*/*.warc.gz")):
        with warc.open("rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                ctype = rec.http_headers.get("Content-Type", "")
                if rec.http_headers.status_code == 200 and "html" in ctype:
                    url = rec.headers.get("WARC-Target-URI").strip("<>")
                    pages.append((url, f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\n".encode(), rec.reader.read()))
    return pages


if __name__ == "__main__":
    print(ensure_datatrove_venv())
    print(ensure_trafilatura_pages())
