"""Drop lag: which landed drops every drop stage has processed since their manifest landed, and the verdict.

A drop has landed once its manifest is in the landing root; it is processed once every drop stage
materialized it after that. A drop not processed within the allowed lag is late. The caller says
when each stage last materialized a drop (`materialized_at`), so this module needs no Dagster.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from mmrecipe.drops import MANIFEST, DropError, validate_drop_name
from mmrecipe.stage_output import markdown_table
from mmrecipe.storage import Storage


@dataclass(frozen=True)
class DropLag:
    """One landed drop: when its manifest landed and which drop stages have not materialized it since."""

    drop: str
    landed_at: float
    missing: tuple[str, ...]
    status: str  # processed | waiting | lagging | invalid_name


def landed_drops(storage: Storage) -> dict[str, float]:
    """Drop folder name → modification time (epoch s) of its manifest, for every folder that has one."""
    landed: dict[str, float] = {}
    for name in storage.list_dirs(storage.root):
        if name.startswith((".", "_")):
            continue
        manifest = storage.uri(name, MANIFEST)
        for uri, _, mtime_ns in storage.stat_files(storage.uri(name)):
            if uri == manifest:
                landed[name] = mtime_ns / 1e9
    return landed


def drop_lags(
    landed: Mapping[str, float],
    materialized_at: Callable[[str, str], float | None],
    stages: Sequence[str],
    max_lag_s: float,
    now: float,
) -> list[DropLag]:
    """The state of every landed drop: processed once every stage materialized it after its manifest landed."""
    out = []
    for drop, landed_at in sorted(landed.items()):
        try:
            validate_drop_name(drop)
            missing = tuple(s for s in stages if (materialized_at(s, drop) or -1.0) < landed_at)
            late_status = "lagging"
        except DropError:
            missing, late_status = tuple(stages), "invalid_name"
        late = now - landed_at >= max_lag_s
        status = "processed" if not missing else (late_status if late else "waiting")
        out.append(DropLag(drop, landed_at, missing, status))
    return out


def lag_verdict(lags: Sequence[DropLag], max_lag_hours: float, now: float) -> tuple[bool, str, dict[str, object]]:
    """(passed, description, metadata) of the drop-lag check for these drops (`drops` is a markdown table)."""
    late = [lag for lag in lags if lag.status in ("lagging", "invalid_name")]
    order = {"lagging": 0, "invalid_name": 1, "waiting": 2, "processed": 3}
    rows = [
        {
            "drop": lag.drop,
            "status": lag.status,
            "landed_utc": datetime.fromtimestamp(lag.landed_at, UTC).strftime("%Y-%m-%d %H:%M"),
            "age_hours": round((now - lag.landed_at) / 3600, 2),
            "missing_stages": ", ".join(lag.missing) or "-",
        }
        for lag in sorted(lags, key=lambda g: (order[g.status], g.drop))[:50]
    ]
    counts = {s: sum(1 for lag in lags if lag.status == s) for s in order}
    if late:
        names = ", ".join(f"{lag.drop} ({lag.status}; missing {', '.join(lag.missing)})" for lag in late[:10])
        description = (
            f"{len(late)} drop(s) landed more than {max_lag_hours:g} h ago and are not processed: {names}. "
            "Check the source_drops sensor and the drop's runs, then materialize drop_stages_job for it "
            "(an invalid_name drop must be renamed and landed again)."
        )
    else:
        description = f"every drop that landed more than {max_lag_hours:g} h ago is processed"
    metadata: dict[str, object] = {
        "max_lag_hours": float(max_lag_hours),
        "drops_landed": len(lags),
        **{f"drops_{status}": int(n) for status, n in counts.items()},
        "late_drops": ", ".join(lag.drop for lag in late) or "none",
        "drops": markdown_table(rows, ["drop", "status", "landed_utc", "age_hours", "missing_stages"])
        if rows
        else "none",
    }
    return not late, description, metadata
