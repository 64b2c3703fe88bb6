"""An independent PII audit of redacted text: a second implementation that shares no code with `pii.py`.

`no_pii_left` runs this over every kept document. Where the redactor uses regexes over the whole
text, this scanner walks whitespace tokens and digit runs with plain string methods and its own
validators, so a bug in one (a regex, an overlap rule, a placeholder that breaks a neighbour) is
unlikely to be repeated in the other. Its definitions are its own too, so a wrong entry in one of
pii.py's tables does not fool it: IBANs are judged by python-stdnum (its per-country IBAN registry and
mod-97), card numbers by stdnum's Luhn and this module's card-network prefixes, version contexts by
this module's word list; plus possible SSNs, parseable IP addresses, emails, and phone numbers
(+CC international or North American).
"""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from stdnum import iban, luhn

_STRIP = "()[]{}<>\"'“”‘’,;:!?.*`"
_VERSION_WORDS = {
    "version", "versions", "ver", "v", "release", "rel", "build", "python", "java", "node", "php", "perl", "ruby",
    "go", "rust", "kernel", "linux", "firmware", "update", "revision", "rev", "tag", "chrome", "firefox", "windows",
    "macos", "ios", "android", "api", "sdk", "package", "lib", "library", "edition", "debian", "ubuntu", "rc", "patch",
    "release-candidate",
}  # fmt: skip
IBAN_MAX_LEN = 34  # ISO 13616
_CARD_PREFIXES = ("4", "34", "37", "36", "38", "39", "30", "35", "62", "65", "6011", "644", "645", "646", "647", "648",
                  "649")  # fmt: skip


@dataclass(frozen=True)
class AuditHit:
    """PII the audit found: its type and the offending snippet."""

    kind: str
    value: str


def _tokens(text: str) -> list[tuple[int, str]]:
    out, i, n = [], 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        j = i
        while j < n and not text[j].isspace():
            j += 1
        if j > i:
            out.append((i, text[i:j]))
        i = j
    return out


def _is_card(digits: str) -> bool:
    if not 13 <= len(digits) <= 19:
        return False
    two = int(digits[:2])
    network = digits.startswith(_CARD_PREFIXES) or 51 <= two <= 55 or 2221 <= int(digits[:4]) <= 2720
    return network and luhn.is_valid(digits)


def _digit_runs(text: str) -> Iterator[tuple[int, str]]:
    """(start, run) of maximal digit runs joined by single spaces or dashes, not touching letters."""
    i, n = 0, len(text)
    while i < n:
        if not text[i].isdigit() or (i > 0 and (text[i - 1].isalnum() or text[i - 1] in "-")):
            i += 1
            continue
        j = i
        while j < n and (text[j].isdigit() or (text[j] in " -" and j + 1 < n and text[j + 1].isdigit())):
            j += 1
        if j >= n or not (text[j].isalnum() or text[j] == "-"):
            yield i, text[i:j]
        i = j + 1


def _email(token: str) -> bool:
    core = token.strip(_STRIP)
    if core.count("@") != 1:
        return False
    local, domain = core.split("@")
    labels = domain.split(".")
    allowed = set(string.ascii_letters + string.digits + "._%+-")
    return (
        bool(local)
        and set(local) <= allowed
        and len(labels) >= 2
        and all(lab and set(lab) <= set(string.ascii_letters + string.digits + "-") for lab in labels)
        and labels[-1].isalpha()
        and len(labels[-1]) >= 2
    )


def _ipv4(token: str, previous: str) -> bool:
    core = token.strip(_STRIP)
    parts = core.split(".")
    if len(parts) != 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return False
    if previous.strip(_STRIP).lower() in _VERSION_WORDS or token[:1] in "vV":
        return False
    return all(int(p) <= 255 and (p == "0" or not p.startswith("0")) for p in parts)


def _ipv6(token: str) -> bool:
    core = token.strip("()[]{}<>\"'“”‘’,;!?.*`")
    if core.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(core)
    except ValueError:
        return False
    groups = [g for g in core.split(":") if g]
    return len(groups) >= 3 or any(len(g) == 4 for g in groups)


def _ssn(token: str) -> bool:
    core = token.strip(_STRIP)
    parts = core.split("-")
    if [len(p) for p in parts] != [3, 2, 4] or not all(p.isdigit() for p in parts):
        return False
    return parts[0] not in ("000", "666") and not parts[0].startswith("9") and parts[1] != "00" and parts[2] != "0000"


def _iban(tokens: list[tuple[int, str]], k: int) -> str | None:
    """The IBAN starting at token k (grouped in any way), judged by python-stdnum's registry, not pii.py's table."""
    first = tokens[k][1].strip(_STRIP)
    if len(first) < 4 or not first[:2].isalpha() or not first[2:4].isdigit():
        return None
    compact, used = "", []
    for _, tok in tokens[k:]:
        core = tok.strip(_STRIP)
        if not core.isalnum() or len(compact) + len(core) > IBAN_MAX_LEN:
            break
        compact += core.upper()
        used.append(tok)
        if len(compact) >= 15 and iban.is_valid(compact):
            return " ".join(used)
    return None


def _phone(text: str, start: int) -> str | None:
    """A phone number starting at `start` ('+' or a digit or '('), if one does."""
    j, n = start, len(text)
    while j < n:
        c = text[j]
        if c.isdigit() or c in "+().-" or (c == " " and j + 1 < n and text[j + 1].isdigit()):
            j += 1
        else:
            break
    candidate = text[start:j].rstrip(" .-(")
    if j < n and text[j].isalnum():
        return None
    digits = "".join(c for c in candidate if c.isdigit())
    if candidate.startswith("+"):
        ok = 8 <= len(digits) <= 15 and candidate.count("+") == 1 and candidate[1:2] in set("123456789")
        return candidate if ok else None
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    groups = [g for g in candidate.replace("(", " ").replace(")", " ").replace(".", " ").replace("-", " ").split() if g]
    tail = [len(g) for g in groups[-3:]]
    if len(digits) == 10 and digits[0] in "23456789" and digits[3] in "23456789" and tail[-2:] == [3, 4]:
        return candidate
    return None


def audit(text: str) -> list[AuditHit]:
    """Every PII value the audit finds in `text` (empty for clean, redacted text)."""
    hits: list[AuditHit] = []
    tokens = _tokens(text)
    for k, (_, tok) in enumerate(tokens):
        previous = tokens[k - 1][1] if k else ""
        if "@" in tok and _email(tok):
            hits.append(AuditHit("email", tok))
        elif _ipv4(tok, previous):
            hits.append(AuditHit("ipv4", tok))
        elif _ipv6(tok):
            hits.append(AuditHit("ipv6", tok))
        elif _ssn(tok):
            hits.append(AuditHit("us_ssn", tok))
        elif tok[:1].isupper() and (iban := _iban(tokens, k)):
            hits.append(AuditHit("iban", iban))
    for _, run in _digit_runs(text):
        groups = run.replace("-", " ").split()
        for size in range(len(groups), 0, -1):  # the longest card-shaped window of the run's digit groups
            window = next(
                (
                    groups[i : i + size]
                    for i in range(len(groups) - size + 1)
                    if _is_card("".join(groups[i : i + size]))
                ),
                None,
            )
            if window:
                hits.append(AuditHit("payment_card", " ".join(window)))
                break
    i = 0
    while i < len(text):
        ch = text[i]
        boundary = i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "+-.")
        if boundary and (ch == "+" or ch == "(" or ch.isdigit()) and (phone := _phone(text, i)):
            if not _is_card("".join(c for c in phone if c.isdigit()) or "0"):
                hits.append(AuditHit("phone", phone))
            i += len(phone)
            continue
        i += 1
    return hits


def audit_documents(docs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(record_id, PII type) of every audit hit in (record_id, text) documents."""
    return [(rid, hit.kind) for rid, text in docs for hit in audit(text or "")]
