"""A mixture recipe: which stage rows to draw from, with what weights, budget, caps, tokenizer, seed and eval sets.

Recipes are `recipes/<name>.yaml`, one `recipes` partition each. `load_recipe` validates a file and
raises `RecipeError` naming the file, the field and the reason, so a researcher can fix it directly.

    name: default                       # optional; must equal the file name without .yaml
    description: English-heavy web text plus captions and transcripts
    tokenizer: gpt2                     # the GPT-2 BPE (loaded offline) or a path to a tokenizer.json
    seed: 1234
    total_tokens: 200000                # token budget of the whole mixture
    share_tolerance: 0.02               # |achieved - target| token share allowed per source
    when_short: shrink_budget           # or `redistribute` (see mmrecipe.mixture.sampling)
    eval_sets: [held_out_en]            # <eval sets dir>/<name>.txt, never part of any drop
    decontamination: {ngram: 13, max_overlap: 0.01}  # share of an eval set's n-grams found in the mixture
    ablations: false                    # opt in to the `ablations` asset (leave-one-source-out proxy evals)
    sources:
      - name: web_en
        stage: extracted_text
        weight: 0.7
        max_epochs: 2                   # upsampling cap
        filters: {languages: [en], min_quality_percentile: 70}
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmrecipe.package_data import bundled

STAGES = ("extracted_text", "deduped_images", "transcribed_audio", "video_clips")
# The text column each stage contributes to the token stream.
TEXT_COLUMN = {
    "extracted_text": "text",
    "deduped_images": "caption",
    "transcribed_audio": "transcript",
    "video_clips": "caption",
}
# The column naming one document of a stage: its WARC record, or for video one clip of a record.
DOC_KEY = {
    "extracted_text": "record_id",
    "deduped_images": "record_id",
    "transcribed_audio": "record_id",
    "video_clips": "clip_id",
}
WHEN_SHORT = ("shrink_budget", "redistribute")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

# Filters each stage accepts: name -> (kind, description). Kinds: "langs", "number", "percentile", "strings".
FILTERS: dict[str, dict[str, str]] = {
    "extracted_text": {
        "languages": "langs",
        "exclude_languages": "langs",
        "min_language_score": "number",
        "min_quality": "number",
        "min_quality_percentile": "percentile",
        "max_toxicity": "number",
        "min_chars": "number",
    },
    "deduped_images": {
        "min_caption_chars": "number",
        "caption_sources": "strings",
        "min_width": "number",
        "min_height": "number",
    },
    "transcribed_audio": {
        "languages": "langs",
        "exclude_languages": "langs",
        "min_duration_s": "number",
        "max_duration_s": "number",
        "min_chars": "number",
    },
    "video_clips": {
        "min_caption_chars": "number",
        "caption_sources": "strings",
        "min_duration_s": "number",
        "max_duration_s": "number",
    },
}
TOP_LEVEL = {
    "name",
    "description",
    "tokenizer",
    "seed",
    "total_tokens",
    "share_tolerance",
    "when_short",
    "eval_sets",
    "decontamination",
    "sources",
    "ablations",
}
SOURCE_KEYS = {"name", "stage", "weight", "max_epochs", "filters"}


class RecipeError(ValueError):
    """A recipe that cannot be used: which file, which field, and why."""

    def __init__(self, path: str, field_name: str, reason: str) -> None:
        self.path, self.field, self.reason = path, field_name, reason
        super().__init__(f"{path}: field '{field_name}': {reason}")


@dataclass(frozen=True)
class Source:
    """One source of a mixture: rows of a stage that pass its filters, with a weight and an epoch cap."""

    name: str
    stage: str
    weight: float
    max_epochs: float
    filters: dict[str, Any] = field(default_factory=dict)

    @property
    def text_column(self) -> str:
        return TEXT_COLUMN[self.stage]

    @property
    def key_column(self) -> str:
        return DOC_KEY[self.stage]


@dataclass(frozen=True)
class Decontamination:
    """How the mixture is checked against its eval sets: n-gram size and the largest allowed overlap."""

    ngram: int = 13
    max_overlap: float = 0.01


@dataclass(frozen=True)
class Recipe:
    """A validated recipe, plus the exact bytes it was read from (for the data card and reproducibility)."""

    name: str
    description: str
    tokenizer: str
    seed: int
    total_tokens: int
    share_tolerance: float
    when_short: str
    eval_sets: tuple[str, ...]
    decontamination: Decontamination
    sources: tuple[Source, ...]
    path: str = ""
    text: str = ""
    ablations: bool = False

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def target_shares(self) -> dict[str, float]:
        """Each source's target share of the mixture's tokens (weights normalised to sum to 1)."""
        total = sum(s.weight for s in self.sources)
        return {s.name: s.weight / total for s in self.sources}

    def stages(self) -> list[str]:
        """The stages this recipe draws from, in a stable order."""
        return [s for s in STAGES if any(src.stage == s for src in self.sources)]


def default_eval_sets_dir() -> Path:
    """Where eval sets named by recipes live by default: the installed package's data/evalsets."""
    return bundled("evalsets")


def recipe_path(recipes_dir: str, name: str) -> Path:
    """The YAML file of recipe `name`."""
    return Path(recipes_dir) / f"{name}.yaml"


def load_recipe(recipes_dir: str, name: str) -> Recipe:
    """The validated recipe `name` from `recipes_dir`; raises RecipeError if it is missing or invalid."""
    path = recipe_path(recipes_dir, name)
    if not path.is_file():
        raise RecipeError(str(path), "(file)", f"no such recipe file; recipes are {recipes_dir}/<name>.yaml")
    return parse_recipe(path.read_text(encoding="utf-8"), str(path), expected_name=name)


def parse_recipe(text: str, path: str, expected_name: str | None = None) -> Recipe:
    """The recipe in YAML `text` read from `path`; raises RecipeError on the first problem found."""
    try:
        body = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(path, "(yaml)", f"not valid YAML{where}: {problem}") from None
    if not isinstance(body, dict):
        raise RecipeError(path, "(top level)", "must be a mapping of recipe fields")
    v = _Validator(path)
    v.unknown(body, TOP_LEVEL, "")
    stem = expected_name or Path(path).stem
    name = body.get("name", stem)
    if name != stem:
        raise RecipeError(path, "name", f"is {name!r} but the file is {stem}.yaml: make them equal")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise RecipeError(path, "name", "must be lower-case letters, digits and _ (starting with a letter)")
    sources = v.sources(body.get("sources"))
    decon = body.get("decontamination") or {}
    if not isinstance(decon, dict):
        raise RecipeError(path, "decontamination", "must be a mapping with ngram and max_overlap")
    v.unknown(decon, {"ngram", "max_overlap"}, "decontamination.")
    eval_sets = body.get("eval_sets")
    if not isinstance(eval_sets, list) or not eval_sets or not all(isinstance(e, str) and e for e in eval_sets):
        raise RecipeError(path, "eval_sets", "must be a non-empty list of eval set names (files <name>.txt)")
    if len(set(eval_sets)) != len(eval_sets):
        raise RecipeError(path, "eval_sets", "lists an eval set twice")
    for e in eval_sets:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", e):
            raise RecipeError(path, "eval_sets", f"{e!r} is not a plain file name without .txt")
    when_short = body.get("when_short", "shrink_budget")
    if when_short not in WHEN_SHORT:
        raise RecipeError(path, "when_short", f"is {when_short!r}; use one of {list(WHEN_SHORT)}")
    ablations = body.get("ablations", False)
    if not isinstance(ablations, bool):
        raise RecipeError(path, "ablations", f"must be true or false, got {ablations!r}")
    tokenizer = body.get("tokenizer", "gpt2")
    if not isinstance(tokenizer, str) or not tokenizer:
        raise RecipeError(path, "tokenizer", "must be 'gpt2' or a path to a tokenizer.json")
    return Recipe(
        name=name,
        description=str(body.get("description", "")),
        tokenizer=tokenizer,
        seed=v.integer(body, "seed", minimum=0, required=True),
        total_tokens=v.integer(body, "total_tokens", minimum=1, required=True),
        share_tolerance=v.number(body, "share_tolerance", 0.02, low=0.0, high=1.0),
        when_short=when_short,
        eval_sets=tuple(eval_sets),
        decontamination=Decontamination(
            ngram=v.integer(decon, "ngram", minimum=3, default=13, prefix="decontamination."),
            max_overlap=v.number(decon, "max_overlap", 0.01, low=0.0, high=1.0, prefix="decontamination."),
        ),
        sources=sources,
        path=path,
        text=text,
        ablations=ablations,
    )


class _Validator:
    """Field-level checks that raise RecipeError naming the file and the field."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, field_name: str, reason: str) -> RecipeError:
        return RecipeError(self.path, field_name, reason)

    def unknown(self, body: dict[str, Any], allowed: set[str], prefix: str) -> None:
        for key in body:
            if key not in allowed:
                raise self.fail(f"{prefix}{key}", f"unknown field; allowed: {sorted(allowed)}")

    def number(
        self, body: dict[str, Any], key: str, default: float | None, low: float, high: float, prefix: str = ""
    ) -> float:
        value = body.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(prefix + key, f"must be a number, got {value!r}")
        if not low <= value <= high:
            raise self.fail(prefix + key, f"must be between {low} and {high}, got {value}")
        return float(value)

    def integer(
        self,
        body: dict[str, Any],
        key: str,
        minimum: int,
        default: int | None = None,
        required: bool = False,
        prefix: str = "",
    ) -> int:
        if key not in body and required:
            raise self.fail(prefix + key, "is required")
        value = body.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(prefix + key, f"must be an integer, got {value!r}")
        if value < minimum:
            raise self.fail(prefix + key, f"must be at least {minimum}, got {value}")
        return value

    def sources(self, raw: Any) -> tuple[Source, ...]:
        if not isinstance(raw, list) or not raw:
            raise self.fail("sources", "must be a non-empty list of sources (name, stage, weight, ...)")
        out: list[Source] = []
        for i, body in enumerate(raw):
            where = f"sources[{i}]"
            if not isinstance(body, dict):
                raise self.fail(where, "must be a mapping with name, stage, weight")
            self.unknown(body, SOURCE_KEYS, f"{where}.")
            name = body.get("name")
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise self.fail(f"{where}.name", f"must be lower-case letters, digits and _, got {name!r}")
            if any(s.name == name for s in out):
                raise self.fail(f"{where}.name", f"{name!r} is used by another source")
            stage = body.get("stage")
            if stage not in STAGES:
                raise self.fail(f"{where}.stage", f"is {stage!r}; use one of {list(STAGES)}")
            weight = body.get("weight")
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not (weight > 0):
                raise self.fail(f"{where}.weight", f"must be a positive number, got {weight!r}")
            max_epochs = self.number(body, "max_epochs", 1.0, low=1.0, high=1000.0, prefix=f"{where}.")
            filters = body.get("filters") or {}
            if not isinstance(filters, dict):
                raise self.fail(f"{where}.filters", "must be a mapping of filter name to value")
            out.append(Source(name, stage, float(weight), max_epochs, self.filters(filters, stage, where)))
        return tuple(out)

    def filters(self, filters: dict[str, Any], stage: str, where: str) -> dict[str, Any]:
        allowed = FILTERS[stage]
        clean: dict[str, Any] = {}
        for key, value in filters.items():
            field_name = f"{where}.filters.{key}"
            kind = allowed.get(key)
            if kind is None:
                raise self.fail(field_name, f"is not a filter of {stage}; allowed: {sorted(allowed)}")
            if kind in ("langs", "strings"):
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not value or not all(isinstance(x, str) and x for x in value):
                    raise self.fail(field_name, f"must be a non-empty list of strings, got {value!r}")
                if kind == "langs" and not all(re.fullmatch(r"[a-z]{2,3}", x) for x in value):
                    raise self.fail(field_name, f"must be ISO 639-1 codes like 'en', got {value!r}")
                clean[key] = sorted(set(value))
            elif kind == "percentile":
                clean[key] = self.number(filters, key, None, low=0.0, high=100.0, prefix=f"{where}.filters.")
            else:
                clean[key] = self.number(filters, key, None, low=-1e12, high=1e12, prefix=f"{where}.filters.")
        if "languages" in clean and "exclude_languages" in clean:
            raise self.fail(f"{where}.filters", "use either languages or exclude_languages, not both")
        return clean
