"""Quarantine: which drops may enter a mixture, decided from their blocking checks' latest evaluations.

A drop is admitted only when every blocking check of every gated stage passed on that stage's *current*
materialization of the drop. A missing result, a failed one, or one evaluated on an older materialization
counts as not passed; a failure the check itself reports with warning severity does not block.
The caller reads the records (the Dagster instance, in `data_assets.quarantine`); this module only decides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from mmrecipe.stage_output import markdown_table

PASSED, WARNED, FAILED, NEVER_RUN, STALE, NOT_MATERIALIZED = (
    "passed",
    "passed with warning",
    "failed",
    "never run",
    "stale",
    "not materialized",
)
ADMITTING = (PASSED, WARNED)


class QuarantineError(ValueError):
    """No drop may enter the mixture: every one is quarantined (or none is registered)."""


@dataclass(frozen=True)
class Materialization:
    """The current materialization of one stage partition: its event's storage id, run and time."""

    storage_id: int
    run_id: str
    timestamp: float


@dataclass(frozen=True)
class CheckEvaluation:
    """The latest evaluation of one check on one partition, and the materialization it evaluated (if known)."""

    passed: bool
    run_id: str
    timestamp: float
    warning_only: bool = False  # the check reported its failure with warning severity
    target_storage_id: int | None = None  # None: reported without a target (e.g. runless), dated by timestamp
    target_run_id: str | None = None


@dataclass(frozen=True)
class CheckVerdict:
    """Whether one blocking check admits one partition, with the run that evaluated it and why."""

    partition: str
    asset: str
    check: str
    status: str
    detail: str
    run_id: str | None  # the evaluation's run; None when it never ran
    evaluated_run_id: str | None  # the run of the materialization the check evaluated
    current_run_id: str | None  # the run of the partition's current materialization

    @property
    def admits(self) -> bool:
        return self.status in ADMITTING

    @property
    def check_key(self) -> str:
        return f"{self.asset}:{self.check}"

    def as_row(self) -> dict[str, Any]:
        return asdict(self) | {"check_key": self.check_key, "admits": self.admits}


def check_verdict(
    partition: str, asset: str, check: str, current: Materialization | None, evaluation: CheckEvaluation | None
) -> CheckVerdict:
    """The verdict of one check on one partition from its current materialization and latest evaluation."""
    current_run = current.run_id if current else None

    def verdict(status: str, detail: str) -> CheckVerdict:
        run = evaluation.run_id if evaluation else None
        evaluated = evaluation.target_run_id if evaluation else None
        return CheckVerdict(partition, asset, check, status, detail, run, evaluated, current_run)

    if current is None:
        return verdict(NOT_MATERIALIZED, f"{asset}[{partition}] has never been materialized")
    if evaluation is None:
        return verdict(NEVER_RUN, f"never run on {asset}[{partition}] (materialized in run {current.run_id})")
    if evaluation.target_storage_id is not None:
        current_target = evaluation.target_storage_id == current.storage_id
    else:  # no recorded target: it counts only if it was reported after the current materialization
        current_target = evaluation.timestamp >= current.timestamp
    if not current_target:
        on = f"materialization of run {evaluation.target_run_id}" if evaluation.target_run_id else "an older one"
        detail = f"stale: evaluated on run {evaluation.run_id} ({on}), current materialization run {current.run_id}"
        return verdict(STALE, detail)
    if evaluation.passed:
        return verdict(PASSED, f"passed in run {evaluation.run_id}")
    if evaluation.warning_only:
        return verdict(WARNED, f"failed with warning severity in run {evaluation.run_id} (does not block)")
    return verdict(FAILED, f"failed in run {evaluation.run_id}")


@dataclass(frozen=True)
class Quarantine:
    """The gate's decision over drops: which are admitted, and every verdict it relied on."""

    admitted: tuple[str, ...]
    verdicts: tuple[CheckVerdict, ...]

    @property
    def quarantined(self) -> dict[str, list[CheckVerdict]]:
        """Each left-out drop with the verdicts that keep it out."""
        out: dict[str, list[CheckVerdict]] = {}
        for v in self.verdicts:
            if not v.admits:
                out.setdefault(v.partition, []).append(v)
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One row per quarantined drop and failing check: what the metadata and data card show."""
        return [
            {"drop": v.partition, "check": v.check_key, "status": v.status, "detail": v.detail, "run_id": v.run_id}
            for vs in self.quarantined.values()
            for v in vs
        ]

    def markdown(self) -> str:
        rows = self.rows()
        return markdown_table(rows, ["drop", "check", "status", "detail"], max_chars=160) if rows else "none"

    def evidence(self) -> list[dict[str, Any]]:
        """Every verdict, drop by drop: the check executions a mixture or release relied on."""
        return [v.as_row() for v in self.verdicts]


def gate_drops(
    drops: Iterable[str],
    checks: Mapping[str, Sequence[str]],
    materializations: Mapping[tuple[str, str], Materialization],
    evaluations: Mapping[tuple[str, str, str], CheckEvaluation],
) -> Quarantine:
    """Admit the drops whose every blocking check passed on its current materialization.

    `checks` maps each gated stage to its blocking check names; `materializations` is keyed by
    (stage, drop) and `evaluations` by (stage, check, drop).
    """
    verdicts: list[CheckVerdict] = []
    admitted: list[str] = []
    for drop in sorted(set(drops)):
        mine = [
            check_verdict(
                drop, asset, check, materializations.get((asset, drop)), evaluations.get((asset, check, drop))
            )
            for asset in sorted(checks)
            for check in sorted(checks[asset])
        ]
        verdicts += mine
        if all(v.admits for v in mine):
            admitted.append(drop)
    return Quarantine(tuple(admitted), tuple(verdicts))


def gated_stages(parents: Mapping[str, Sequence[str]], stages: Iterable[str]) -> list[str]:
    """`stages` and every ancestor in `parents` (stage -> the stages it reads), sorted."""
    seen: set[str] = set()
    todo = list(stages)
    while todo:
        stage = todo.pop()
        if stage not in seen:
            seen.add(stage)
            todo += parents.get(stage, ())
    return sorted(seen)


def require_admitted(quarantine: Quarantine, recipe: str) -> list[str]:
    """The admitted drops; raises QuarantineError naming every drop and failing check when none is admitted."""
    if quarantine.admitted:
        return list(quarantine.admitted)
    if not quarantine.verdicts:
        raise QuarantineError("no drops are registered: ingest a drop (mmrecipe ingest DIR) before building")
    reasons = "; ".join(f"{r['drop']}: {r['check']} {r['detail']}" for r in quarantine.rows())
    raise QuarantineError(
        f"mixture[{recipe}]: every drop is quarantined ({reasons}). Fix the drops and re-materialize their "
        "stages (drop_stages_job), or run the missing checks, then build again."
    )
