"""The data card of a mixture: a markdown page of its sources, filters, counts, tokens, PII/opt-out figures and inputs.

It is rendered from the mixture's summary (`mixture.json`), so it says exactly what was built and holds
nothing run-specific (no clock, no absolute paths): rebuilding the same mixture gives the same card.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mmrecipe.stage_output import markdown_table

PII = re.compile(r"pii|email|phone|personal", re.I)
OPT_OUT = re.compile(r"opt_?out|noai|noimageai|robots|consent", re.I)


def _filters(f: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(f.items())) or "none"


def privacy_figures(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Upstream PII and opt-out figures: reject reasons, redaction counts and materialization counts naming them."""
    rows: list[dict[str, Any]] = []
    for stage, reasons in summary.get("upstream_rejects", {}).items():
        for key, n in reasons.items():
            kind = "PII" if PII.search(key) else "opt-out" if OPT_OUT.search(key) else None
            if kind:
                rows.append({"kind": kind, "stage": stage, "figure": key, "count": n})
    for stage, counts in summary.get("pii_redacted", {}).items():
        for key, n in counts.items():
            rows.append({"kind": "PII", "stage": stage, "figure": f"redacted:{key}", "count": n})
    for where, figures in summary.get("upstream_figures", {}).items():
        for key, n in sorted(figures.items()):
            kind = "PII" if PII.search(key) else "opt-out" if OPT_OUT.search(key) else None
            if kind:
                rows.append({"kind": kind, "stage": where, "figure": key, "count": n})
    return rows


def _video_pairs(summary: Mapping[str, Any]) -> list[str]:
    """The data card's line on video–text pairs (none without a video source)."""
    if "video_webdataset" not in summary:
        return []
    wds = summary["video_webdataset"]
    return [
        f"- WebDataset: {wds['samples']} video–text pairs (clip MP4, keyframe, caption) "
        f"in {len(wds['shards'])} shard(s)"
    ]


def render_data_card(summary: Mapping[str, Any]) -> str:
    """The markdown data card of a mixture summary."""
    s = summary
    tokens = s.get("tokens", {})
    lines = [
        f"# Data card: mixture `{s['recipe']}`",
        "",
        s.get("description") or "",
        "",
        f"- recipe sha256: `{s['recipe_sha256'][:16]}`, seed {s['seed']}, when a source is short: {s['when_short']}",
        f"- tokenizer: {s['tokenizer']} (fingerprint `{s['tokenizer_fingerprint']}`), "
        f"ids stored as {tokens.get('dtype')}",
        f"- token budget {s['total_tokens_budget']:,}; achieved {s['achieved_tokens']:,} tokens "
        f"({tokens.get('tokens', 0):,} with end-of-text separators) in {s['document_copies']:,} document copies "
        f"of {s['documents']:,} distinct documents",
        f"- WebDataset: {s['webdataset']['samples']} image–caption pairs in {len(s['webdataset']['shards'])} shard(s)",
        *_video_pairs(s),
        "",
        "## Sources",
        "",
        markdown_table(
            [
                {
                    **src,
                    "filters": _filters(src["filters"]),
                    "target_share": f"{src['target_share']:.3f}",
                    "achieved_share": f"{src['achieved_share']:.3f}",
                    "epochs": f"{src['epochs']:.2f} (cap {src['max_epochs']:g})",
                }
                for src in s["sources"]
            ],
            [
                "name",
                "stage",
                "filters",
                "weight",
                "target_share",
                "achieved_share",
                "candidates",
                "available_tokens",
                "achieved_tokens",
                "selected_docs",
                "epochs",
            ],
            max_chars=120,
        ),
        "",
    ]
    short = [src for src in s["sources"] if src["too_small"]]
    if short:
        lines += ["**Too-small sources**", ""] + [f"- `{src['name']}`: {src['note']}" for src in short] + [""]
    lines += ["## Drops", "", f"Admitted: {', '.join(s.get('drops', [])) or 'none'}", ""]
    held = s.get("quarantined", [])
    lines += ["**Quarantined drops** (a blocking check did not pass on the current materialization)", ""]
    lines += [markdown_table(held, ["drop", "check", "status", "detail"], max_chars=160) if held else "none", ""]
    lines += ["## Filters applied at mixture time (rows excluded per source)", ""]
    excl = [
        {
            "source": src["name"],
            "filter": k,
            "excluded": n,
            "threshold": src["thresholds"].get("quality_score", "") if k == "min_quality_percentile" else "",
        }
        for src in s["sources"]
        for k, n in src["excluded_by_filter"].items()
        if n
    ]
    lines += [markdown_table(excl, ["source", "filter", "excluded", "threshold"]) if excl else "none", ""]
    lines += ["## Filters applied upstream (dropped / rejected records, all drops)", ""]
    up = [
        {"stage": stage, "outcome_reason": k, "records": n}
        for stage, reasons in s.get("upstream_rejects", {}).items()
        for k, n in reasons.items()
    ]
    lines += [markdown_table(up, ["stage", "outcome_reason", "records"]) if up else "none", ""]
    priv = privacy_figures(s)
    lines += ["## PII and opt-out", ""]
    lines += [
        markdown_table(priv, ["kind", "stage", "figure", "count"]) if priv else "no PII or opt-out figures upstream",
        "",
    ]
    d = s["decontamination"]
    verdict = "passed" if d["passed"] else "FAILED"
    lines += [
        f"## Decontamination ({d['ngram']}-gram overlap with the eval sets, max {d['max_overlap']}: {verdict})",
        "",
        markdown_table(
            d["eval_sets"], ["eval_set", "ngrams", "found_in_mixture", "overlap", "docs_hit", "example_docs"]
        ),
        "",
        "## Eval sets (held out)",
        "",
        markdown_table(
            [{"eval_set": k, **v, "sha256": v["sha256"][:16]} for k, v in s.get("eval_sets", {}).items()],
            ["eval_set", "utf8_bytes", "sha256"],
        ),
        "",
        "## Inputs (data versions)",
        "",
        markdown_table(
            [{**i, "sha256": i["sha256"][:16]} for i in s["inputs"]], ["stage", "drop", "rows", "sha256", "path"]
        ),
        "",
    ]
    return "\n".join(lines)
