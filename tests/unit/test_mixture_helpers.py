"""Builders for mixture tests: real WARC drops and the upstream stage tables a mixture reads.

The text is the Python reference manual's topics (`pydoc_data.topics`, shipped with CPython: real prose
nobody here wrote); the image is matplotlib's public-domain `grace_hopper.jpg`; transcripts are the
LibriVox reference transcripts. WARC files are written with `tests.warc_fixtures`, indexed with the real
`mmrecipe.crawl_index.index_drop`, and the stage rows point at those real records. The stage tables use
the stages' real output schemas and reason codes, so a change to either breaks these fixtures.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from pydoc_data.topics import topics

import pyarrow as pa
from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from mmrecipe.audio.transcribed_audio import SCHEMA as AUDIO_SCHEMA
from mmrecipe.crawl_index import index_drop
from mmrecipe.images.stage import IMAGE_SCHEMA
from mmrecipe.mixture.token_shards import EOT_TOKEN
from mmrecipe.opt_out import OPT_OUT_REASON
from mmrecipe.package_data import bundled
from mmrecipe.stage_output import StageWriter
from mmrecipe.storage import Storage
from mmrecipe.text.pii import PII_TYPES
from mmrecipe.text.pipeline import EXTRACTED_TEXT_SCHEMA
from tests.warc_fixtures import HttpResponse, warc_bytes

TOPICS = sorted(topics)
TRANSCRIPTS = [
    "and mister john dashwood had then leisure to consider how much there might be prudently in his power to do",
    "he was not an ill disposed young man",
    "unless to be rather cold hearted and rather selfish is to be ill disposed",
    "but he was in general well respected for he conducted himself with propriety in the discharge of his duties",
]
REJECTS_COLS = ["record_id", "drop", "warc_path", "warc_offset"]


def stage_row(schema: pa.Schema, prov: dict, **values: object) -> dict:
    """A row of a stage's real output schema: provenance plus `values`, every one a column of that schema.

    Columns the mixture does not read stay null, or take a neutral value where the schema forbids nulls.
    A renamed or removed column fails here rather than passing unnoticed.
    """
    unknown = sorted(set(values) - set(schema.names))
    assert not unknown, f"not columns of the stage schema: {unknown}"
    neutral = {pa.types.is_string: "", pa.types.is_integer: 0, pa.types.is_binary: b"", pa.types.is_floating: 0.0}
    required = {f.name: next(v for is_type, v in neutral.items() if is_type(f.type)) for f in schema if not f.nullable}
    return required | prov | values


def photo_jpeg(size: int = 64) -> bytes:
    """A small JPEG of matplotlib's public-domain Grace Hopper portrait."""
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        img = Image.open(f).convert("RGB")
    img.thumbnail((size, size))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=80)
    return out.getvalue()


def _cut(text: str, max_chars: int) -> str:
    """`text` cut at the last paragraph break before `max_chars` (web pages are rarely book-length)."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    return head[: head.rfind("\n\n")] if "\n\n" in head else head


def topic_texts(start: int, count: int, max_chars: int = 4000) -> list[tuple[str, str]]:
    """(topic name, text) of `count` Python reference-manual topics from `start`, each cut to `max_chars`."""
    return [(t, _cut(topics[t], max_chars)) for t in TOPICS[start : start + count]]


def build_drop(
    lake: Storage,
    landing: Storage,
    drop: str,
    pages: Sequence[tuple[str, str]],
    images: int = 2,
    audio: int = 2,
    german: int = 2,
) -> dict[str, list[str]]:
    """Land a real WARC for `drop`, index it as raw_crawl, and write the three stages' tables.

    The first page is dropped upstream as an opt-out (the text stage's own reason code), the second had
    2 emails and a phone number redacted, the last `german` pages are labelled `de`, and quality scores
    rise with the page index.
    Returns the kept record ids per stage.
    """
    jpeg = photo_jpeg()
    responses = [
        HttpResponse(f"http://{drop}.example.org/{name}.html", f"<p>{text}</p>".encode()) for name, text in pages
    ]
    responses += [HttpResponse(f"http://{drop}.example.org/img/{i}.jpg", jpeg, "image/jpeg") for i in range(images)]
    responses += [HttpResponse(f"http://{drop}.example.org/a/{i}.wav", b"RIFF....", "audio/wav") for i in range(audio)]
    warc_uri = landing.uri(drop, "crawl.warc.gz")
    landing.write_bytes(warc_uri, warc_bytes(responses))
    indexed = index_drop(landing, lake, drop, ["crawl.warc.gz"])
    assert not indexed.counts.rejected
    index_rows = lake.read_table(indexed.data_uri).to_pylist()
    by_uri = {r["target_uri"]: r for r in index_rows if r["record_type"] == "response"}
    prov = lambda uri: {k: by_uri[uri][k] for k in REJECTS_COLS}  # noqa: E731
    ids: dict[str, list[str]] = {"extracted_text": [], "deduped_images": [], "transcribed_audio": []}
    with StageWriter(lake, "extracted_text", drop, EXTRACTED_TEXT_SCHEMA) as out:
        for i, ((name, text), resp) in enumerate(zip(pages, responses, strict=False)):
            if i == 0:  # the first page of every drop opts out of AI training (<meta name=robots content=noai>)
                out.drop(by_uri[resp.uri], OPT_OUT_REASON, "robots directives: noai")
                continue
            lang = "de" if i >= len(pages) - german else "en"
            pii_counts = dict.fromkeys(PII_TYPES, 0) | ({"email": 2, "phone": 1} if i == 1 else {})
            row = stage_row(
                EXTRACTED_TEXT_SCHEMA,
                prov(resp.uri),
                url=resp.uri,
                text=text,
                language=lang,
                language_score=0.95,
                quality_score=round(i / max(1, len(pages) - 1), 4),
                toxicity_score=0.01,
                pii_counts=pii_counts,
                dedup_cluster=f"{drop}-{name}",
            )
            out.keep(row)
            ids["extracted_text"].append(row["record_id"])
        out.close()
    with StageWriter(lake, "deduped_images", drop, IMAGE_SCHEMA) as out:
        for i in range(images):
            uri = f"http://{drop}.example.org/img/{i}.jpg"
            row = stage_row(
                IMAGE_SCHEMA,
                prov(uri),
                url=uri,
                caption=f"Portrait of Grace Hopper, computer scientist and US Navy rear admiral ({drop} #{i})",
                caption_source="alt",
                page_url=responses[0].uri,
                normalized_jpeg=jpeg,
                width=64,
                height=64,
                dedup_cluster=f"{drop}-img-{i}",
            )
            out.keep(row)
            ids["deduped_images"].append(row["record_id"])
        out.close()
    with StageWriter(lake, "transcribed_audio", drop, AUDIO_SCHEMA) as out:
        for i in range(audio):
            uri = f"http://{drop}.example.org/a/{i}.wav"
            row = stage_row(
                AUDIO_SCHEMA,
                prov(uri),
                url=uri,
                transcript=TRANSCRIPTS[i % len(TRANSCRIPTS)],
                language="en",
                duration_s=4.0 + i,
                dedup_cluster=f"{drop}-aud-{i}",
            )
            out.keep(row)
            ids["transcribed_audio"].append(row["record_id"])
        out.close()
    return ids


def build_lake(root: Path, drops: Sequence[str] = ("d1", "d2"), pages_per_drop: int = 12) -> tuple[Storage, Storage]:
    """A lake and landing root under `root` with `drops` built by `build_drop` from distinct topics."""
    lake, landing = Storage(str(root / "lake")), Storage(str(root / "landing"))
    for k, drop in enumerate(drops):
        build_drop(lake, landing, drop, topic_texts(k * pages_per_drop, pages_per_drop))
    return lake, landing


RECIPE_YAML = """\
description: test recipe
tokenizer: {tokenizer}
seed: 7
total_tokens: {total}
share_tolerance: 0.05
eval_sets: [held_out]
decontamination: {{ngram: 13, max_overlap: 0.01}}
sources:
  - name: web_en
    stage: extracted_text
    weight: {w_web}
    max_epochs: 2
    filters: {{languages: [en], min_quality_percentile: 30}}
  - name: captions
    stage: deduped_images
    weight: {w_cap}
    max_epochs: 40
  - name: speech
    stage: transcribed_audio
    weight: {w_speech}
    max_epochs: 40
"""


def recipe_text(
    total: int = 20000, w_web: float = 0.8, w_cap: float = 0.1, w_speech: float = 0.1, tokenizer: str = "gpt2"
) -> str:
    """A three-source recipe's YAML."""
    return RECIPE_YAML.format(total=total, w_web=w_web, w_cap=w_cap, w_speech=w_speech, tokenizer=tokenizer)


def save_tiny_tokenizer(path: Path) -> Path:
    """A 512-token byte-level BPE trained on Python's topics, saved as the `tokenizer.json` at `path`.

    Training mechanics do not need GPT-2's 50k vocabulary, whose output layer dominates every step.
    """
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=[EOT_TOKEN], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator([topics[t] for t in sorted(topics)], trainer)
    bpe.save(str(path))
    return path


EVAL_FILE = bundled("evalsets", "en_docs.txt")


def eval_text(max_chars: int | None = None) -> str:
    """The committed held-out English eval set (Python library docs pages that no drop or topic contains)."""
    text = EVAL_FILE.read_text(encoding="utf-8")
    return _cut(text, max_chars) if max_chars else text
