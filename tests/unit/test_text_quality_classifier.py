"""The DCLM-style fastText quality classifier: deterministic training, separation, versioned storage."""

import hashlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mmrecipe.storage import Storage
from mmrecipe.text.classifier_data import default_reference_texts, read_text_documents, read_url_list
from mmrecipe.text.quality_classifier import (
    ClassifierInfo,
    QualityScorer,
    TrainingParams,
    load_scorer,
    model_version,
    preprocess,
    publish,
    score_quantiles,
    train_and_publish,
    train_classifier,
)
from mmrecipe.text.toxicity import toxicity_scores

# Positives: the long documents of the reference texts installed as the default positives (Python Language
# Reference prose). Negatives: keyword/symbol lists made from them, the kind of page a classifier should score low.
REFERENCE = read_text_documents(default_reference_texts())
PROSE = [t for t in REFERENCE if len(t.split()) > 300][:30]
LISTS = [" ".join(t.split()[:40]) + "\n" + "\n".join(sorted(set(t.split()))[:120]) for t in PROSE[:30]]
SMALL = TrainingParams(dim=16, bucket=20_000)


@pytest.fixture(scope="module")
def model() -> bytes:
    return train_classifier(PROSE[:20], LISTS[:20], SMALL)


def test_training_is_deterministic(model: bytes) -> None:
    assert train_classifier(PROSE[:20], LISTS[:20], SMALL) == model
    assert model_version(model) == model_version(bytes(model)) and len(model_version(model)) == 16


def test_held_out_documents_are_separated(model: bytes) -> None:
    scorer = QualityScorer(model, ClassifierInfo(model_version(model), {}, 20, 20, "test", 0))
    prose, lists = scorer.score(PROSE[20:]), scorer.score(LISTS[20:])
    assert prose.min() > lists.max()
    assert ((prose >= 0) & (prose <= 1)).all() and ((lists >= 0) & (lists <= 1)).all()


def test_percentile_thresholds_come_from_the_calibration_quantiles() -> None:
    info = ClassifierInfo("v", {}, 1, 1, "test", 0, quantiles=score_quantiles(np.linspace(0, 1, 1001).tolist()))
    assert info.score_at_percentile(10) == pytest.approx(0.1)
    assert info.score_at_percentile(0) == 0.0 and info.score_at_percentile(100) == 1.0
    shifted = ClassifierInfo("v", {}, 1, 1, "test", 0, quantiles=[0.5] * 101)
    assert shifted.score_at_percentile(0) == 0.0 and shifted.score_at_percentile(1) == 0.5  # 0 drops nothing
    with pytest.raises(ValueError, match="within"):
        info.score_at_percentile(101)
    with pytest.raises(ValueError, match="no documents were scored"):
        score_quantiles([])


def test_publish_and_load_a_version(tmp_path: Path, model: bytes) -> None:
    storage = Storage(str(tmp_path / "lake"))
    with pytest.raises(FileNotFoundError, match="materialize the `quality_classifier` asset first"):
        load_scorer(storage)
    info = ClassifierInfo(model_version(model), {"dim": 16}, 20, 20, "test", 0, quantiles=[0.0] * 101)
    uri = publish(storage, model, info)
    assert uri.endswith(f"quality_classifier/{info.version}/model.bin")
    scorer = load_scorer(storage)
    assert scorer.version == info.version and scorer.info.n_positive == 20
    assert np.array_equal(scorer.score(PROSE[25:]), QualityScorer(model, info).score(PROSE[25:]))


def test_train_and_publish_calibrates_on_held_out_pages_and_versions_the_quantiles(tmp_path: Path) -> None:
    storage = Storage(str(tmp_path / "lake"))
    calibration = PROSE[20:] + LISTS[20:]
    info, uri = train_and_publish(storage, PROSE[:20], LISTS[:20], calibration, SMALL, "test", ["d2", "d1"])
    model = train_classifier(PROSE[:20], LISTS[:20], SMALL)
    scores = QualityScorer(model, info).score(calibration).tolist()
    assert info.quantiles == score_quantiles(scores) and info.version == model_version(model, info.quantiles)
    assert (info.n_positive, info.n_negative, info.drops) == (20, 20, ["d1", "d2"])
    assert uri.endswith(f"{info.version}/model.bin") and load_scorer(storage).version == info.version


def test_training_without_examples_fails_clearly() -> None:
    with pytest.raises(ValueError, match="no positive"):
        train_classifier([], LISTS, SMALL)
    with pytest.raises(ValueError, match="no negative"):
        train_classifier(PROSE, [], SMALL)


def test_a_prediction_only_fasttext_module_fails_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    predict_only = types.ModuleType("fasttext")  # what fasttext-predict installs: load_model, no training
    predict_only.load_model = lambda path: None
    monkeypatch.setitem(sys.modules, "fasttext", predict_only)
    with pytest.raises(RuntimeError, match=r"cannot train.*fasttext-predict.*--no-deps fasttext-community==0\.11\.9"):
        train_classifier(["a good page"], ["a crawl page"], TrainingParams())


def test_reference_files(tmp_path: Path) -> None:
    urls = tmp_path / "hq.txt"
    urls.write_text("# reference pages\n<http://a.example/x.html>\n\nhttp://b.example/y.html  # comment\n")
    assert read_url_list(urls) == ["http://a.example/x.html", "http://b.example/y.html"]
    docs = tmp_path / "docs.txt"
    docs.write_text("First document.\nStill first.\n\n\nSecond document.\n")
    assert read_text_documents(docs) == ["First document.\nStill first.", "Second document."]
    with pytest.raises(FileNotFoundError, match=r"reference text file '.*absent\.txt' does not exist: point"):
        read_text_documents(tmp_path / "absent.txt")
    assert preprocess("Hello, World!\nAgain") == "hello, world! again"


def test_toxicity_scores_offensive_language_high() -> None:
    scores = toxicity_scores(["You are a fucking idiot and a piece of shit.", PROSE[0], ""])
    assert scores[0] > 0.9 and scores[1] < 0.2 and scores[2] == 0.0


def test_the_default_reference_texts_are_the_documented_package_data() -> None:
    path = Path(default_reference_texts())
    assert path.parent.parent.name == "data" and path.parent.parent.parent.name == "mmrecipe"
    provenance = (path.parent.parent / "PROVENANCE.md").read_text()
    assert hashlib.sha256(path.read_bytes()).hexdigest() in provenance  # the file PROVENANCE.md describes
    assert len(REFERENCE) == 63 and min(len(d.split()) for d in REFERENCE) >= 100
    assert REFERENCE[0].startswith('The "assert" statement') and len(PROSE) == 30
