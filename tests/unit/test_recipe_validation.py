"""Recipe YAML validation: every error names the file, the field and the reason; shipped recipes are valid."""

from pathlib import Path

import pytest

from mmrecipe.recipe import RecipeError, default_eval_sets_dir, load_recipe, parse_recipe
from mmrecipe.settings import REPO_ROOT, recipe_keys

VALID = """\
tokenizer: gpt2
seed: 1
total_tokens: 1000
eval_sets: [en_docs]
sources:
  - {name: web, stage: extracted_text, weight: 3, filters: {languages: [en], min_quality_percentile: 70}}
  - {name: speech, stage: transcribed_audio, weight: 1, max_epochs: 4}
"""


def with_line(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new)


def test_valid_recipe_parses_with_defaults_and_normalised_shares() -> None:
    r = parse_recipe(VALID, "/r/mix.yaml")
    assert r.name == "mix" and r.seed == 1 and r.total_tokens == 1000
    assert r.target_shares() == {"web": 0.75, "speech": 0.25}
    assert r.sources[0].max_epochs == 1.0 and r.sources[1].max_epochs == 4.0
    assert r.sources[0].filters == {"languages": ["en"], "min_quality_percentile": 70.0}
    assert r.decontamination.ngram == 13 and r.when_short == "shrink_budget"
    assert r.stages() == ["extracted_text", "transcribed_audio"]
    assert (
        r.ablations is False and parse_recipe(with_line("seed: 1", "seed: 1\nablations: true"), "/r/mix.yaml").ablations
    )


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("seed: [", "(yaml)", "not valid YAML"),
        ("- a\n- b\n", "(top level)", "must be a mapping"),
        (with_line("seed: 1\n", ""), "seed", "is required"),
        (with_line("seed: 1", "seed: -3"), "seed", "at least 0"),
        (with_line("total_tokens: 1000", "total_tokens: lots"), "total_tokens", "must be an integer"),
        (with_line("seed: 1", "seed: 1\nbudget: 5"), "budget", "unknown field"),
        (with_line("seed: 1", "seed: 1\nname: other"), "name", "file is mix.yaml"),
        (with_line("seed: 1", "seed: 1\nwhen_short: panic"), "when_short", "shrink_budget"),
        (with_line("seed: 1", "seed: 1\nablations: yes please"), "ablations", "must be true or false"),
        (with_line("seed: 1", "seed: 1\nshare_tolerance: 2"), "share_tolerance", "between 0.0 and 1.0"),
        (with_line("eval_sets: [en_docs]", "eval_sets: []"), "eval_sets", "non-empty list"),
        (with_line("eval_sets: [en_docs]", "eval_sets: [en_docs, en_docs]"), "eval_sets", "twice"),
        (with_line("eval_sets: [en_docs]", "eval_sets: [../x]"), "eval_sets", "plain file name"),
        (with_line("seed: 1", "seed: 1\ndecontamination: {ngram: 2}"), "decontamination.ngram", "at least 3"),
        (with_line("weight: 3", "weight: 0"), "sources[0].weight", "positive number"),
        (with_line("weight: 3", "weight: true"), "sources[0].weight", "positive number"),
        (with_line("stage: extracted_text", "stage: pages"), "sources[0].stage", "use one of"),
        (with_line("name: speech", "name: web"), "sources[1].name", "used by another source"),
        (with_line("name: web", "name: Web-Text"), "sources[0].name", "lower-case"),
        (with_line("max_epochs: 4", "max_epochs: 0.5"), "sources[1].max_epochs", "between 1.0 and 1000.0"),
        (with_line("languages: [en]", "languages: [English]"), "sources[0].filters.languages", "ISO 639-1"),
        (
            with_line("min_quality_percentile: 70", "min_quality_percentile: 170"),
            "sources[0].filters.min_quality_percentile",
            "between 0.0 and 100.0",
        ),
        (
            with_line("languages: [en]", "languages: [en], min_caption_chars: 3"),
            "sources[0].filters.min_caption_chars",
            "not a filter of extracted_text",
        ),
        (
            with_line("languages: [en]", "languages: [en], exclude_languages: [de]"),
            "sources[0].filters",
            "either languages or exclude_languages",
        ),
        (with_line("  - {name: web", "  - 7\n  - {name: web"), "sources[0]", "must be a mapping"),
    ],
)
def test_invalid_recipe_error_names_file_field_and_reason(text: str, field: str, reason: str) -> None:
    with pytest.raises(RecipeError) as err:
        parse_recipe(text, "/recipes/mix.yaml")
    assert err.value.path == "/recipes/mix.yaml"
    assert err.value.field == field
    assert reason in err.value.reason
    assert str(err.value).startswith(f"/recipes/mix.yaml: field '{field}': ")


def test_missing_recipe_file_says_where_recipes_live(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"no such recipe file; recipes are .*/<name>\.yaml"):
        load_recipe(str(tmp_path), "nope")


def test_shipped_recipes_are_valid_and_differ() -> None:
    names = recipe_keys(str(REPO_ROOT / "recipes"))
    assert len(names) >= 2 and "default" in names
    recipes = [load_recipe(str(REPO_ROOT / "recipes"), n) for n in names]
    assert len({r.sha256 for r in recipes}) == len(recipes)
    assert len({tuple(sorted(r.target_shares().items())) for r in recipes}) == len(recipes)
    for r in recipes:
        assert r.tokenizer == "gpt2" and r.eval_sets
        assert all((default_eval_sets_dir() / f"{e}.txt").is_file() for e in r.eval_sets), r.name
