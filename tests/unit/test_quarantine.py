"""The quarantine decision: which drops a mixture may read, from check evaluations and current materializations."""

import pytest

from mmrecipe.quarantine import (
    FAILED,
    NEVER_RUN,
    NOT_MATERIALIZED,
    PASSED,
    STALE,
    WARNED,
    CheckEvaluation,
    Materialization,
    QuarantineError,
    check_verdict,
    gate_drops,
    gated_stages,
    require_admitted,
)

CURRENT = Materialization(storage_id=20, run_id="run-mat-2", timestamp=200.0)


def evaluated(passed: bool, at: float = 201.0, target: int | None = 20, **kw: object) -> CheckEvaluation:
    return CheckEvaluation(passed, "run-chk" if target else "", at, target_storage_id=target, **kw)  # type: ignore[arg-type]


STALE_DETAIL = (
    "stale: evaluated on run run-chk (materialization of run run-mat-1), current materialization run run-mat-2"
)
CASES = [  # (case, current materialization, latest evaluation, status, admits, detail contains)
    ("passed on current", CURRENT, evaluated(True), PASSED, True, "passed in run run-chk"),
    ("failed on current", CURRENT, evaluated(False), FAILED, False, "failed in run run-chk"),
    ("never run", CURRENT, None, NEVER_RUN, False, "never run on extracted_text[d1]"),
    ("never materialized", None, evaluated(True), NOT_MATERIALIZED, False, "never been materialized"),
    (
        "older materialization",
        CURRENT,
        evaluated(True, 150.0, 10, target_run_id="run-mat-1"),
        STALE,
        False,
        STALE_DETAIL,
    ),
    ("warning severity", CURRENT, evaluated(False, warning_only=True), WARNED, True, "does not block"),
    ("no target, reported after", CURRENT, evaluated(True, 250.0, None), PASSED, True, "passed"),
    ("no target, reported before", CURRENT, evaluated(True, 150.0, None), STALE, False, "stale"),
]


@pytest.mark.parametrize(
    ("case", "current", "evaluation", "status", "admits", "detail"), CASES, ids=[c[0] for c in CASES]
)
def test_check_verdict(
    case: str,
    current: Materialization | None,
    evaluation: CheckEvaluation | None,
    status: str,
    admits: bool,
    detail: str,
) -> None:
    v = check_verdict("d1", "extracted_text", "no_pii_left", current, evaluation)
    assert (v.status, v.admits) == (status, admits)
    assert detail in v.detail
    assert v.check_key == "extracted_text:no_pii_left" and v.current_run_id == (current.run_id if current else None)


def test_gate_drops_quarantines_only_drops_with_a_blocking_failure() -> None:
    checks = {"extracted_text": ["conservation", "no_pii_left"], "raw_crawl": ["conservation"]}
    keys = [(a, d) for a in checks for d in ("d1", "d2", "d3")]
    mats = {key: Materialization(i, f"mat-{key[0]}-{key[1]}", 100.0) for i, key in enumerate(keys)}
    ok = {
        (a, c, d): CheckEvaluation(True, f"chk-{d}", 101.0, target_storage_id=mats[(a, d)].storage_id)
        for a, names in checks.items()
        for c in names
        for d in ("d1", "d2", "d3")
    }
    bad = CheckEvaluation(False, "chk-bad", 101.0, target_storage_id=mats[("extracted_text", "d2")].storage_id)
    evals = ok | {("extracted_text", "no_pii_left", "d2"): bad}
    del evals[("raw_crawl", "conservation", "d3")]
    q = gate_drops(["d3", "d1", "d2", "d1"], checks, mats, evals)
    assert q.admitted == ("d1",)
    assert {d: [(v.check_key, v.status) for v in vs] for d, vs in q.quarantined.items()} == {
        "d2": [("extracted_text:no_pii_left", FAILED)],
        "d3": [("raw_crawl:conservation", NEVER_RUN)],
    }
    assert [r["drop"] for r in q.rows()] == ["d2", "d3"] and q.rows()[0]["run_id"] == "chk-bad"
    assert len(q.evidence()) == 9 and all(e["admits"] for e in q.evidence() if e["partition"] == "d1")
    assert "| d2 | extracted_text:no_pii_left | failed | failed in run chk-bad |" in q.markdown()
    assert require_admitted(q, "default") == ["d1"]


def test_no_admitted_drop_is_a_clear_error() -> None:
    q = gate_drops(["d1"], {"raw_crawl": ["conservation"]}, {}, {})
    with pytest.raises(
        QuarantineError, match=r"every drop is quarantined \(d1: raw_crawl:conservation raw_crawl\[d1\] has never"
    ):
        require_admitted(q, "default")
    with pytest.raises(QuarantineError, match="no drops are registered"):
        require_admitted(gate_drops([], {"raw_crawl": ["conservation"]}, {}, {}), "default")


def test_gated_stages_follow_the_reader_upstream() -> None:
    parents = {"extracted_text": ["filtered_text"], "filtered_text": ["raw_crawl"], "deduped_images": ["raw_crawl"]}
    assert gated_stages(parents, ["extracted_text"]) == ["extracted_text", "filtered_text", "raw_crawl"]
    images_and_audio = gated_stages(parents, ["deduped_images", "transcribed_audio"])
    assert images_and_audio == ["deduped_images", "raw_crawl", "transcribed_audio"]
