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
CASES = [
    # (case, current materialization, latest evaluation, status, admits, detail contains)
    ("passed on current", CURRENT, CheckEvaluation(True, "run-chk", 201.0, target_storage_id=20), PASSED, True, "run-chk"),
    ("failed on current", CURRENT, CheckEvaluation(False, "run-chk", 201.0, target_storage_id=20), FAILED, False, "failed in run run-chk"),
    ("never run", CURRENT, None, NEVER_RUN, False, "never run"),
    ("never materialized", None, CheckEvaluation(True, "run-chk", 201.0, target_storage_id=20), NOT_MATERIALIZED, False, "never been materialized"),
    ("passed on an older materialization", CURRENT, CheckEvaluation(True, "run-chk", 150.0, target_storage_id=10, target_run_id="run-mat-1"), STALE, False, "stale: evaluated on run run-mat-1, current materialization run run-mat-2"),
    ("warning severity", CURRENT, CheckEvaluation(False, "run-chk", 201.0, warning_only=True, target_storage_id=20), WARNED, True, "does not block"),
    ("reported without target, after", CURRENT, CheckEvaluation(True, "", 250.0), PASSED, True, "passed"),
    ("reported without target, before", CURRENT, CheckEvaluation(True, "", 150.0), STALE, False, "stale"),
]  # fmt: skip


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
    mats = {(a, d): Materialization(i, f"mat-{a}-{d}", 100.0) for i, (a, d) in enumerate(
        (a, d) for a in checks for d in ("d1", "d2", "d3"))}  # fmt: skip
    ok = {
        (a, c, d): CheckEvaluation(True, f"chk-{d}", 101.0, target_storage_id=mats[(a, d)].storage_id)
        for a, names in checks.items()
        for c in names
        for d in ("d1", "d2", "d3")
    }
    evals = ok | {("extracted_text", "no_pii_left", "d2"): CheckEvaluation(False, "chk-bad", 101.0, target_storage_id=mats[("extracted_text", "d2")].storage_id)}  # fmt: skip
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
    assert gated_stages(parents, ["deduped_images", "transcribed_audio"]) == ["deduped_images", "raw_crawl", "transcribed_audio"]  # fmt: skip
