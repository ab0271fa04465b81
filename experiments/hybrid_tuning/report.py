"""table.md and results.png of the hybrid-tuning experiment, from its results.json."""

from __future__ import annotations

import pathlib
from typing import Any

from vertjax import io_utils

LABELS = {
    "general": "general model (start of both arms)",
    "a_stage1": "A after stage 1 (continued pretraining)",
    "A": "A: two-stage (pretrain, then instructions)",
    "B": "B: hybrid (one stage, all four tasks)",
}
SOURCES = ("self_instruct", "self_kg", "self_qa", "wordnet", "refusal")


def _tokens(results: dict[str, Any], label: str) -> tuple[str, str]:
    stages = results.get("stages", {})
    names = {"general": ["general"], "a_stage1": ["a_stage1"], "A": ["a_stage1", "a_stage2"]}
    names["B"] = ["b_hybrid"]
    rows = [stages[n] for n in names[label] if n in stages]
    if label == "general" or not rows:
        return "-", "-"
    return str(sum(r["steps"] for r in rows)), f"{sum(r['target_tokens'] for r in rows):,}"


def markdown(results: dict[str, Any]) -> str:
    """The main table, the per-source ROUGE-L table and the B - A intervals."""
    ev = results["eval"]
    s = results["settings"]
    lines = [
        "| model | steps after general | target tokens after general | domain PPL | general PPL "
        "| domain ROUGE-L | general ROUGE-L |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, row in ev.items():
        steps, tokens = _tokens(results, label)
        rouge = [
            f"{row['instructions'][r]['rouge_l']:.3f}" if r in row["instructions"] else "-"
            for r in ("domain", "general")
        ]
        lines.append(
            f"| {LABELS.get(label, label)} | {steps} | {tokens} | {row['ppl']['domain']['ppl']:.2f} "
            f"| {row['ppl']['general']['ppl']:.2f} | {rouge[0]} | {rouge[1]} |"
        )
    counts = {role: ev["A"]["instructions"][role]["count"] for role in ("domain", "general")}
    lines += [
        "",
        f"PPL: {s['eval_examples']} validation span-corruption examples per corpus. ROUGE-L: "
        f"greedy outputs (at most {s['max_decode_length']} tokens) vs reference outputs on "
        f"{counts['domain']} held-out domain and {counts['general']} held-out general "
        "instructions.",
        "",
        "| ROUGE-L by source | " + " | ".join(SOURCES) + " |",
        "|---|" + "---|" * len(SOURCES),
    ]
    for label, row in ev.items():
        if not row["instructions"]:
            continue
        groups = {**row["instructions"]["domain"]["by_group"]}
        groups.update(row["instructions"]["general"]["by_group"])
        cells = [
            f"{groups[g]['rouge_l']:.3f} (n={groups[g]['count']})" if g in groups else "-"
            for g in SOURCES
        ]
        lines.append(f"| {LABELS.get(label, label)} | " + " | ".join(cells) + " |")
    lines.append("")
    for role, d in results.get("b_minus_a", {}).items():
        lo, hi = d["ci95"]
        lines.append(
            f"- B - A, {role} ROUGE-L: {d['mean']:+.3f} (95% paired bootstrap over the "
            f"{d['records']} held-out records: {lo:+.3f} .. {hi:+.3f})"
        )
    design = results.get("hybrid_design", {})
    if design:
        rates = ", ".join(f"{k} {v:.3f}" for k, v in design["rates"].items())
        lines.append(
            f"- B: {design['steps']} steps to read A's {design['token_budget']:,} target tokens; "
            f"example rates {rates}"
        )
    return "\n".join(lines) + "\n"


def plot(results: dict[str, Any], path: pathlib.Path) -> None:
    """Two panels: validation PPL and held-out ROUGE-L, domain and general, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = results["eval"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    width = 0.38
    panels = (
        ("ppl", "validation PPL (lower is better)"),
        ("instructions", "held-out ROUGE-L (higher is better)"),
    )
    for ax, (metric, title) in zip(axes, panels, strict=True):
        # Models evaluated for PPL only have no ROUGE-L bars (rather than zero-height ones).
        labels = [m for m in ev if metric == "ppl" or ev[m]["instructions"]]
        for k, role in enumerate(("domain", "general")):
            values = [
                ev[m]["ppl"][role]["ppl"] if metric == "ppl" else ev[m][metric][role]["rouge_l"]
                for m in labels
            ]
            xs = [i + (k - 0.5) * width for i in range(len(labels))]
            bars = ax.bar(xs, values, width, label=role)
            ax.bar_label(bars, fmt="%.2f" if metric == "ppl" else "%.3f", fontsize=7)
        ax.set_xticks(range(len(labels)), labels)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("Two-stage (A) vs hybrid (B) tuning, tiny T5, equal target tokens", fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def write(out: pathlib.Path, results: dict[str, Any]) -> pathlib.Path:
    """Writes OUT/table.md and OUT/results.png; returns the table's path."""
    path = out / "table.md"
    io_utils.atomic_write_text(path, markdown(results))
    plot(results, out / "results.png")
    return path
