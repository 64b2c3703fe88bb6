"""PII redaction: every type replaced and counted, near-misses left alone, and the independent audit agrees."""

from collections.abc import Callable
from pydoc_data.topics import topics

import pytest

from mmrecipe.text import pii
from mmrecipe.text.pii import PII_TYPES, PLACEHOLDERS, find_pii, iban_valid, luhn_valid, redact
from mmrecipe.text.pii_audit import audit, audit_documents

CONTEXT = "The exception is raised at the point where the error is detected. {} It may be handled later."

# (type, value as it appears in text); reserved/test values only
POSITIVES = [
    ("email", "jane.doe@example.org"),
    ("email", "ops+alerts@mail.example.co.uk"),
    ("phone", "+1 415-555-0132"),
    ("phone", "(415) 555-0199"),
    ("phone", "415.555.0100"),
    ("phone", "+44 20 7946 0958"),
    ("phone", "+4930123456"),
    ("ipv4", "192.0.2.44"),
    ("ipv4", "198.51.100.7"),
    ("ipv6", "2001:db8::8a2e:370:7334"),
    ("ipv6", "fe80::1"),
    ("payment_card", "4111 1111 1111 1111"),
    ("payment_card", "5500-0000-0000-0004"),
    ("payment_card", "378282246310005"),
    ("iban", "GB82 WEST 1234 5698 7654 32"),
    ("iban", "DE89370400440532013000"),
    ("us_ssn", "078-05-1120"),
]

NEAR_MISSES = [
    ("luhn-invalid card", "4111 1111 1111 1112"),
    ("luhn-valid but no card network", "1234 5678 9012 3452"),
    ("version string like an IPv4", "Python 3.11.2.1"),
    ("version keyword", "version 1.2.3.4"),
    ("v-prefixed version", "v10.0.0.1"),
    ("octet above 255", "256.1.1.1"),
    ("five dotted parts", "1.2.3.4.5"),
    ("IBAN with a bad checksum", "GB82 WEST 1234 5698 7654 33"),
    ("IBAN of the wrong length", "GB82 WEST 1234 5698 7654"),
    ("never-issued SSN area 000", "000-12-3456"),
    ("never-issued SSN area 9xx", "912-34-5678"),
    ("SSN group 00", "123-00-4567"),
    ("date", "2024-01-15"),
    ("ISBN", "978-3-16-148410-0"),
    ("time of day", "10:30:45"),
    ("C++ scope", "std::vector"),
    ("ratio", "16:9"),
    ("signed number", "+000000120"),
    ("short number", "555-0132"),
    ("at sign without a domain", "user@localhost"),
]


@pytest.mark.parametrize(("kind", "value"), POSITIVES, ids=[f"{k}:{v}" for k, v in POSITIVES])
def test_each_pii_type_is_redacted_and_counted(kind: str, value: str) -> None:
    text = CONTEXT.format(f"Contact: {value}.")
    redacted, counts = redact(text)
    assert value not in redacted
    assert PLACEHOLDERS[kind] in redacted
    assert counts == {t: int(t == kind) for t in PII_TYPES}
    assert [h.kind for h in audit(text)] == [kind]  # the audit sees it in the raw text...
    assert audit(redacted) == []  # ...and nothing after redaction


@pytest.mark.parametrize(("name", "value"), NEAR_MISSES, ids=[n for n, _ in NEAR_MISSES])
def test_near_misses_are_left_alone(name: str, value: str) -> None:
    text = CONTEXT.format(f"See {value} for details.")
    redacted, counts = redact(text)
    assert redacted == text and sum(counts.values()) == 0
    assert audit(text) == []


def test_mixed_text_redacts_every_value_once() -> None:
    values = " ".join(v for _, v in POSITIVES)
    misses = " ; ".join(v for _, v in NEAR_MISSES)
    redacted, counts = redact(CONTEXT.format(values + " Not PII: " + misses))
    assert counts == {t: sum(1 for k, _ in POSITIVES if k == t) for t in PII_TYPES}
    assert all(v in redacted for _, v in NEAR_MISSES)
    assert audit(redacted) == []


def test_overlapping_candidates_keep_the_longest() -> None:
    matches = find_pii("card 4111-1111-1111-1111 end")
    assert [(m.kind, m.end - m.start) for m in matches] == [("payment_card", 19)]


def test_real_documentation_has_no_false_positives() -> None:
    docs = list(topics.items())
    assert audit_documents(docs) == []
    changed = [name for name, text in docs if redact(text)[0] != text]
    assert changed == []


def test_validators() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB82WEST12345698765433")
    assert not iban_valid("XX82WEST12345698765432")


@pytest.mark.parametrize(
    ("pattern", "windows"),
    [
        ("_EMAIL", "_email_windows"),
        ("_IPV6", "_ipv6_windows"),
        ("_CARD", "_digit_windows"),
        ("_SSN", "_digit_windows"),
        ("_IPV4", "_digit_windows"),
        ("_PHONE_INTL", "_digit_windows"),
        ("_PHONE_NANP", "_digit_windows"),
    ],
)
def test_scanning_candidate_windows_finds_exactly_what_a_full_scan_finds(pattern: str, windows: str) -> None:
    """Each detector only scans the regions its matches can lie in: no match may be lost or gained."""
    import random

    from mmrecipe.text import pii

    regex, make_windows = getattr(pii, pattern), getattr(pii, windows)
    rnd = random.Random(pattern)
    values = [value for _, value in POSITIVES + NEAR_MISSES]

    def piece() -> str:  # a value, a cut of one, or random characters
        value, cut = rnd.choice(values), rnd.randint(0, 12)
        return rnd.choice(
            [value, value[cut:], value[:cut], "".join(rnd.choices("0123456789abcdefé١ .-()+:@_%", k=cut))]
        )

    texts = [
        "".join(piece() + rnd.choice(["", " ", ".", "-", ":", "@", "(", "+", "_", "\n", "x"]) for _ in range(4))
        for _ in range(20_000)
    ]
    texts += [CONTEXT.format(value) for value in values] + [topics[name] for name in ("exceptions", "calls", "numbers")]
    found = 0
    for text in texts:
        full = [m.span() for m in regex.finditer(text)]
        assert [m.span() for m in pii.scan(regex, text, make_windows(text))] == full, text
        found += len(full)
    assert found > 100  # the fuzz really produces candidates of this pattern


@pytest.mark.parametrize(
    ("kind", "value", "plant"),
    [  # a wrong entry in one of pii.py's definitions: the redactor misses the value, the audit must not
        ("iban", "DE89 3704 0044 0532 0130 00", lambda mp: mp.setitem(pii.IBAN_LENGTHS, "DE", 21)),
        ("payment_card", "4111 1111 1111 1111", lambda mp: mp.setattr(pii, "card_prefix_valid", lambda d: d[0] != "4")),
        ("ipv4", "192.0.2.44", lambda mp: mp.setattr(pii, "VERSION_WORDS", pii.VERSION_WORDS | {"on"})),
    ],
)
def test_a_wrong_definition_in_the_redactor_is_caught_by_the_audit(
    kind: str, value: str, plant: Callable[[pytest.MonkeyPatch], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    text = f"The mirror runs on {value} for everyone."
    assert kind in {m.kind for m in find_pii(text)}  # the real redactor catches it
    plant(monkeypatch)
    missed, _ = redact(text)
    assert value in missed  # the planted error makes the redactor miss it...
    assert [h.kind for h in audit(missed)] == [kind]  # ...and the audit, with its own definitions, reports it
