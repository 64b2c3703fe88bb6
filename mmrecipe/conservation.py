"""Record conservation of a drop stage: every input record appears once in its kept rows or rejects."""

from dataclasses import dataclass

from mmrecipe.crawl_index import read_records
from mmrecipe.stage_output import REJECTS, read_stage_table
from mmrecipe.storage import Storage


@dataclass(frozen=True)
class Conservation:
    """The verdict on one stage partition: how many records came in, went out, were lost or doubled."""

    inputs: int
    kept: int
    dropped_or_rejected: int
    lost: list[str]
    unexpected: list[str]
    duplicated: int
    duplicate_inputs: int

    @property
    def passed(self) -> bool:
        return not self.lost and not self.unexpected and not self.duplicated and not self.duplicate_inputs

    @property
    def description(self) -> str | None:
        """What went wrong, or None when conserved."""
        if self.passed:
            return None
        return f"{len(self.lost)} lost, {len(self.unexpected)} unexpected, {self.duplicated} duplicated"

    def metadata(self) -> dict[str, int | str]:
        return {
            "in": self.inputs,
            "kept": self.kept,
            "dropped_or_rejected": self.dropped_or_rejected,
            "lost": len(self.lost),
            "unexpected": len(self.unexpected),
            "duplicated": self.duplicated,
            "lost_sample": ", ".join(self.lost[:5]) or "none",
        }


def record_ids_conserved(storage: Storage, asset: str, drop: str, kind: str) -> Conservation:
    """Whether every `kind` input record of `asset[drop]` appears exactly once in its kept rows or rejects."""
    inputs = read_records(storage, drop, kind, columns=["record_id"])["record_id"].to_pylist()
    kept = read_stage_table(storage, asset, drop, columns=["record_id"])["record_id"].to_pylist()
    rejected = read_stage_table(storage, asset, drop, REJECTS, ["record_id"])["record_id"].to_pylist()
    in_ids, out_ids = set(inputs), kept + rejected
    out_set = set(out_ids)
    return Conservation(
        inputs=len(inputs),
        kept=len(kept),
        dropped_or_rejected=len(rejected),
        lost=sorted(in_ids - out_set),
        unexpected=sorted(out_set - in_ids),
        duplicated=len(out_ids) - len(out_set),
        duplicate_inputs=len(inputs) - len(in_ids),
    )
