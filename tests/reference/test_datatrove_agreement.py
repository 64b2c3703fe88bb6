"""The FineWeb rule set against datatrove 0.10.1 itself, on real extracted pages (runs in CI).

datatrove and spaCy run in their own venv (`python benchmarks/datatrove_env.py` makes it; CI does so in
.ci/install-system.sh), in one subprocess that gets every text as JSON. Pages: the sample drops' HTML pages,
each extracted by resiliparse and by trafilatura, the trafilatura sdist's test pages, and CPython's pydoc topics.
"""

import json
import os
import subprocess
from pathlib import Path
from pydoc_data.topics import topics

import pytest

from benchmarks.datatrove_env import DT_PYTHON, DT_READY, ensure_trafilatura_pages, sample_pages
from mmrecipe.text.extraction import RESILIPARSE, TRAFILATURA, extract_text
from mmrecipe.text.fineweb_rules import FAMILIES, apply_fineweb_rules, family_verdicts
from mmrecipe.text.quality_rules import thresholds_for
from mmrecipe.text.words import words

# The slow lane: a second interpreter (datatrove + spaCy) scores 225 real texts, ~31 CPU-s. It checks our rules
# against the reference implementation; the rules' own unit tests (tests/unit/test_text_fineweb_rules.py) stay fast.
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("datatrove_verdicts.py")
MIN_AGREEMENT = 0.995
# datatrove's reason per family → ours
REASONS = {
    "gopher_repetition": {
        "empty": "gopher_empty",
        **{
            f"{k}": f"gopher_{k}"
            for k in ("dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac")
        },
        **{f"top_{n}_gram": f"gopher_top_{n}gram" for n in (2, 3, 4)},
        **{f"duplicated_{n}_n_grams": f"gopher_dup_{n}gram" for n in range(5, 11)},
    },
    "gopher_quality": {
        "gopher_short_doc": "gopher_short_doc",
        "gopher_long_doc": "gopher_long_doc",
        "gopher_below_avg_threshold": "gopher_avg_word_length_low",
        "gopher_above_avg_threshold": "gopher_avg_word_length_high",
        "gopher_too_many_hashes": "gopher_hash_ratio",
        "gopher_too_many_ellipsis": "gopher_ellipsis_ratio",
        "gopher_too_many_bullets": "gopher_bullet_lines",
        "gopher_too_many_end_ellipsis": "gopher_ellipsis_lines",
        "gopher_below_alpha_threshold": "gopher_alpha_words",
        "gopher_enough_stop_words": "gopher_stop_words",
    },
    "c4": {
        "lorem_ipsum": "c4_lorem_ipsum",
        "curly_bracket": "c4_curly_bracket",
        "too_few_sentences": "c4_too_few_sentences",
    },
    "fineweb": {
        "empty": "fineweb_empty",
        "line_punct_ratio": "fineweb_line_punct",
        "short_line_ratio": "fineweb_short_lines",
        "char_dup_ratio": "fineweb_char_dup",
        "list_ratio": "fineweb_list_ratio",
    },
}


def real_texts() -> list[str]:
    """Extracted texts of real pages (non-empty), in a fixed order."""
    htmls = [body for _, _, body in sample_pages()]
    htmls += [p.read_bytes() for p in sorted(ensure_trafilatura_pages().glob("*.html"))]
    texts = [
        extract_text(html.decode("utf-8", "replace"), extractor)
        for html in htmls
        for extractor in (RESILIPARSE, TRAFILATURA)
    ]
    texts += [topics[name] for name in sorted(topics)]
    return [t for t in texts if t.strip()]


@pytest.fixture(scope="module")
def compared() -> list[tuple[str, dict, dict]]:
    """(text, datatrove's verdicts, ours) for every real text."""
    if not DT_READY.exists():
        message = "no datatrove venv: run `python benchmarks/datatrove_env.py`"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    texts = real_texts()
    out = subprocess.run(
        [str(DT_PYTHON), str(SCRIPT)], input=json.dumps(texts), capture_output=True, text=True, check=True
    )
    theirs = json.loads(out.stdout)
    en = thresholds_for("en")
    ours = []
    for text in texts:
        verdicts = {name: list(v) for name, v in family_verdicts(text, en).items()}
        result = apply_fineweb_rules(text, en)
        verdicts["end_to_end"] = [result.reason, result.text if result.reason is None else text]
        ours.append(verdicts)
    return list(zip(texts, theirs, ours, strict=True))


def test_words_are_spacys(compared: list[tuple[str, dict, dict]]) -> None:
    assert len(compared) >= 200
    total = sum(len(theirs["words"]) for _, theirs, _ in compared)
    differing = [text[:80] for text, theirs, _ in compared if words(text) != theirs["words"]]
    assert total > 250_000 and differing == []


@pytest.mark.parametrize("family", [*FAMILIES, "end_to_end"])
def test_verdicts_agree_with_datatrove(compared: list[tuple[str, dict, dict]], family: str) -> None:
    """Same reason (or both keep) on at least 99.5% of the texts; the same kept text wherever both keep."""

    def reason(theirs: str | None) -> str | None:
        if theirs is None or family != "end_to_end":
            return theirs and REASONS[family][theirs]
        step, why = theirs.split(":", 1)
        return REASONS[step][why]

    same = [reason(theirs[family][0]) == ours[family][0] for _, theirs, ours in compared]
    both_keep = [(t, o) for _, t, o in compared if t[family][0] is None and o[family][0] is None]
    assert sum(same) / len(same) >= MIN_AGREEMENT, [
        (c[1][family][0], c[2][family][0]) for c, s in zip(compared, same, strict=True) if not s
    ]
    assert both_keep and all(t[family][1] == o[family][1] for t, o in both_keep)
    assert {o[family][0] for _, _, o in compared} - {None}  # each family drops some of these pages
