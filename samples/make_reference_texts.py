#!/usr/bin/env python3
"""Build the quality classifier's default reference texts, `mmrecipe/data/reference/python_reference.txt`.

The documents are the topics of the Python Language Reference that CPython installs with every
interpreter as `pydoc_data/topics.py` (what `help("if")` prints): real, edited reference prose under
the PSF License v2. Each topic of at least MIN_WORDS words becomes one document, in sorted topic
order, with its blank lines removed (the classifier's preprocessing joins lines anyway); documents
are separated by one blank line, the format `read_text_documents` reads.

Run with the project venv (the output depends only on the interpreter's pydoc_data)::

    .venv/bin/python samples/make_reference_texts.py
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path
from pydoc_data.topics import topics

OUT = Path(__file__).resolve().parents[1] / "mmrecipe" / "data" / "reference" / "python_reference.txt"
MIN_WORDS = 100


def documents() -> list[str]:
    """One document per long-enough topic: its non-blank lines, right-stripped."""
    docs = []
    for name in sorted(topics):
        lines = [line.rstrip() for line in topics[name].splitlines() if line.strip()]
        if len(" ".join(lines).split()) >= MIN_WORDS:
            docs.append("\n".join(lines))
    return docs


def main() -> None:
    docs = documents()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    data = OUT.read_bytes()
    print(f"{OUT}: {len(docs)} documents, {len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    print(f"source: pydoc_data/topics.py of CPython {platform.python_version()}")


if __name__ == "__main__":
    main()
