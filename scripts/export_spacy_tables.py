"""Write `mmrecipe/text/spacy_en_tables.py`: the rule tables of spaCy's blank English tokenizer and sentencizer,
and datatrove's punctuation sets, which its Gopher and FineWeb filters test words and lines against.

`mmrecipe.text.words` re-implements spaCy's tokenizer algorithm over these tables, so the text stage gives the
same words as datatrove (which runs `spacy.blank("en")`) without importing spaCy. Run it with the python of
the datatrove venv, which has the pinned spaCy and datatrove (`python benchmarks/datatrove_env.py` creates it):

    benchmarks/.venv-datatrove/bin/python scripts/export_spacy_tables.py
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import spacy
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION
from spacy.attrs import ORTH
from spacy.pipeline import Sentencizer

OUT = Path(__file__).resolve().parent.parent / "mmrecipe" / "text" / "spacy_en_tables.py"


def pattern(fn: object) -> str:
    """The source of a compiled `re` pattern behind a bound search/match/finditer method."""
    compiled = fn.__self__  # type: ignore[attr-defined]
    if not isinstance(compiled, re.Pattern) or compiled.flags != re.UNICODE:
        raise SystemExit(f"unexpected tokenizer regex {compiled!r}: update words.py for it")
    return compiled.pattern


def main() -> None:
    tokenizer = spacy.blank("en").tokenizer
    if tokenizer.token_match is not None or not tokenizer.faster_heuristics:
        raise SystemExit("spaCy's English tokenizer changed (token_match / faster_heuristics): update words.py")
    rules = {text: tuple(t[ORTH] for t in tokens) for text, tokens in sorted(tokenizer.rules.items())}
    lines = [
        f'"""Tables of spaCy {spacy.__version__}\'s blank English tokenizer and sentencizer (MIT) and of datatrove.',
        "",
        "Written by scripts/export_spacy_tables.py from spaCy's and datatrove's own tables; do not edit by hand.",
        '"""',
        "",
        f"SPACY_VERSION = {spacy.__version__!r}",
        f"PREFIX = {pattern(tokenizer.prefix_search)!r}",
        f"SUFFIX = {pattern(tokenizer.suffix_search)!r}",
        f"INFIX = {pattern(tokenizer.infix_finditer)!r}",
        f"URL_MATCH = {pattern(tokenizer.url_match)!r}",
        f"SENTENCE_PUNCT = {''.join(sorted(Sentencizer.default_punct_chars))!r}",
        "# datatrove's sets (Apache-2.0): its Gopher filter's punctuation, its FineWeb filter's line endings",
        f"DATATROVE_VERSION = {version('datatrove')!r}",
        f"DATATROVE_PUNCTUATION = {''.join(sorted(PUNCTUATION_SET))!r}",
        f"DATATROVE_TERMINAL_PUNCTUATION = {''.join(sorted(TERMINAL_PUNCTUATION))!r}",
        "SPECIAL_CASES: dict[str, tuple[str, ...]] = {",
        *(f"    {text!r}: {orths!r}," for text, orths in rules.items()),
        "}",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print(f"wrote {OUT} ({len(rules)} special cases)")


if __name__ == "__main__":
    main()
