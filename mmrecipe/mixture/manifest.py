"""The mixture manifest: one row per selected document, with its source, epochs and full provenance.

`doc_id` is `<recipe>:<source>:<key>`, the key being the stage row's `DOC_KEY` (its record id; a clip id for
video); it names a document of one recipe's mixture and is what `mmrecipe explain` takes. `record_id`, `drop`,
`warc_path` and `warc_offset` lead back through the stage row to the raw_crawl record and the WARC bytes.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from mmrecipe.stage_output import PROVENANCE_FIELDS
from mmrecipe.storage import Storage

MIXTURE_ASSET = "mixture"
MANIFEST_FILE = "manifest.parquet"
SUMMARY_FILE = "mixture.json"
DATA_CARD_FILE = "data_card.md"
RECIPE_FILE = "recipe.yaml"
TOKENS_DIR = "tokens"
WEBDATASET_DIR = "webdataset"
EVALSETS_DIR = "evalsets"

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("recipe", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        *PROVENANCE_FIELDS,
        pa.field("url", pa.string()),
        pa.field("epochs", pa.int32(), nullable=False),
        pa.field("tokens", pa.int64(), nullable=False),
        pa.field("utf8_bytes", pa.int64(), nullable=False),
        pa.field("text_sha256", pa.string(), nullable=False),
        pa.field("token_cache", pa.string(), nullable=False),
    ]
)


def doc_id_for(recipe: str, source: str, record_id: str) -> str:
    """The id of a document in a recipe's mixture."""
    return f"{recipe}:{source}:{record_id}"


def parse_doc_id(doc_id: str) -> tuple[str, str, str]:
    """(recipe, source, record_id) of a doc id; raises ValueError naming the expected form."""
    parts = doc_id.split(":")
    if len(parts) != 3 or not all(parts):
        raise ValueError(
            f"doc id {doc_id!r} is not of the form RECIPE:SOURCE:RECORD_ID (or :CLIP_ID; see manifest.parquet)"
        )
    return parts[0], parts[1], parts[2]


def doc_key(doc_id: str) -> str:
    """The stage row a doc id names: its `DOC_KEY` value (a record id, or a clip id for video)."""
    return doc_id.rsplit(":", 1)[-1]


def mixture_uri(storage: Storage, recipe: str, *parts: str) -> str:
    """A path inside a recipe's mixture folder: `<lake>/mixture/<recipe>/...`."""
    return storage.uri(MIXTURE_ASSET, recipe, *parts)


def read_manifest(storage: Storage, recipe: str, columns: list[str] | None = None) -> pa.Table:
    """A recipe's mixture manifest; raises FileNotFoundError saying what to materialize."""
    uri = mixture_uri(storage, recipe, MANIFEST_FILE)
    if not storage.exists(uri):
        raise FileNotFoundError(f"no mixture manifest for recipe {recipe!r} at {uri}: materialize mixture[{recipe}]")
    return storage.read_table(uri, columns=columns)


def manifest_row(storage: Storage, doc_id: str) -> dict[str, object]:
    """The manifest row of one document; raises KeyError if the recipe's mixture has no such document."""
    recipe, _, _ = parse_doc_id(doc_id)
    table = read_manifest(storage, recipe)
    hit = table.filter(pc.equal(table["doc_id"], doc_id))
    if hit.num_rows == 0:
        raise KeyError(f"{doc_id} is not in the mixture of recipe {recipe!r} (manifest has {table.num_rows} documents)")
    return hit.slice(0, 1).to_pylist()[0]
