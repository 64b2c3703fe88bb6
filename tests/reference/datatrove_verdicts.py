"""datatrove 0.10.1's verdicts on texts, run by the python of the datatrove venv (never imported by mmrecipe).

Reads a JSON list of texts on stdin; writes, for each text, the verdict of each of FineWeb's four filters run
on it alone and of the four in FineWeb's order (`[reason or null, text after the filter]`), and its English
words (`split_into_words`: spaCy's blank English tokens, stripped).
"""

import json
import sys

from datatrove.data import Document
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.utils.text import split_into_words

FILTERS = {
    "gopher_repetition": GopherRepetitionFilter(),
    "gopher_quality": GopherQualityFilter(),
    "c4": C4QualityFilter(filter_no_terminal_punct=False),
    "fineweb": FineWebQualityFilter(),
}


def verdict(step: object, text: str) -> list:
    doc = Document(text=text, id="0")
    result = step.filter(doc)
    reason = None if result is True else (result[1] if isinstance(result, tuple) else "dropped")
    return [reason, doc.text]


def main() -> None:
    out = []
    for text in json.load(sys.stdin):
        row = {name: verdict(step, text) for name, step in FILTERS.items()}
        current, final = text, [None, text]
        for name, step in FILTERS.items():
            reason, current = verdict(step, current)
            if reason:
                final = [f"{name}:{reason}", text]
                break
            final = [None, current]
        row["end_to_end"] = final
        row["words"] = split_into_words(text)
        out.append(row)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
