"""`explain`: a mixture document's lineage down to the WARC record's bytes, URL, headers and offset."""

from pathlib import Path

import pyarrow.compute as pc
import pytest
from test_mixture_helpers import build_lake, eval_text, recipe_text

from mmrecipe.lineage import LineageError, explain, format_lineage
from mmrecipe.mixture.build import build_mixture
from mmrecipe.mixture.manifest import read_manifest
from mmrecipe.recipe import parse_recipe
from mmrecipe.stage_output import committed_parts
from mmrecipe.storage import Storage
from tests.committed_edits import recommit


@pytest.fixture
def lake(tmp_path: Path) -> Storage:
    lake, _ = build_lake(tmp_path, ["d1", "d2"])
    build_mixture(lake, parse_recipe(recipe_text(total=12000), "/r/mix.yaml"), ["d1", "d2"], {"held_out": eval_text()})
    return lake


@pytest.mark.parametrize("source", ["web_en", "captions", "speech"])
def test_explain_reaches_the_warc_record(lake: Storage, source: str) -> None:
    manifest = read_manifest(lake, "mix")
    row = manifest.filter(pc.equal(manifest["source"], source)).to_pylist()[0]
    lin = explain(lake, row["doc_id"])
    assert lin.recipe["recipe"] == "mix" and lin.manifest["doc_id"] == row["doc_id"]
    assert lin.stage_row["record_id"] == lin.raw_record["record_id"] == row["record_id"]
    assert lin.raw_record["warc_offset"] == row["warc_offset"] and lin.raw_record["record_type"] == "response"
    assert lin.warc_headers["WARC-Type"] == "response"
    assert lin.warc_headers["WARC-Target-URI"] == row["url"] == lin.stage_row["url"]
    assert lin.http_status == 200 and "content-type" in lin.http_headers
    assert lin.payload_sha256_matches and lin.payload_length == lin.raw_record["payload_length"]
    text = format_lineage(lin)
    assert f"offset {row['warc_offset']}" in text and row["url"] in text and "sha256 matches" in text


def test_explain_accepts_a_bare_record_id(lake: Storage) -> None:
    row = read_manifest(lake, "mix").to_pylist()[0]
    assert explain(lake, row["record_id"], with_payload=False).doc_id == row["doc_id"]


@pytest.mark.parametrize(
    ("doc_id", "message"),
    [
        ("mix:web_en:000000000000000000000000", "is not in the mixture of recipe 'mix'"),
        ("ffffffffffffffffffffffff", "is in no mixture manifest"),
        ("nosuchrecipe:web_en:abc", "materialize mixture[nosuchrecipe]"),
        ("a:b", "RECIPE:SOURCE:RECORD_ID"),
    ],
)
def test_explain_unknown_documents_say_why(lake: Storage, doc_id: str, message: str) -> None:
    with pytest.raises(LineageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        explain(lake, doc_id)


def test_explain_detects_a_changed_stage_row(lake: Storage) -> None:
    row = read_manifest(lake, "mix").filter(pc.equal(read_manifest(lake, "mix")["source"], "web_en")).to_pylist()[0]
    uri = committed_parts(lake, "extracted_text", row["drop"])[0]
    table = lake.read_table(uri)
    texts = [
        t + " (edited)" if r == row["record_id"] else t
        for r, t in zip(table["record_id"].to_pylist(), table["text"].to_pylist(), strict=True)
    ]
    lake.write_table(uri, table.set_column(table.schema.get_field_index("text"), "text", [texts]))
    recommit(lake, uri)
    with pytest.raises(LineageError, match="changed since the mixture was built"):
        explain(lake, row["doc_id"])
