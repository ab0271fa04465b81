"""The demo's `report.md`: every finished stage's figures from `results.json` as markdown."""

from __future__ import annotations

import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vertjax import io_utils
from vertjax.demo.state import DemoState


def _optional(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    return "" if value is None else f"{value:.3f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Markdown table lines (header, rule, one line per row), then a blank line."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _fusion_line(fusion: Mapping[str, Any] | None) -> str:
    """How the hybrid was weighted, and which retriever measured best on validation questions."""
    if not fusion:
        return ""
    chosen = fusion["chosen"]
    return (
        f"Hybrid = {fusion['method']} with weights BM25 {fusion['weights'][0]:.2f} / dense "
        f"{fusion['weights'][1]:.2f}, chosen on validation questions ({fusion['metric']} "
        f"{chosen[fusion['metric']]:.3f}); best there: {fusion['kind']}."
    )


def write_report(state: DemoState) -> pathlib.Path:
    """runs/demo/report.md: every stage's figures as markdown tables."""
    r = state.results
    lines = ["# vertjax demo report", ""]
    data = r.get("data", {})
    if data:
        lines += ["## Data", ""]
        lines += _table(
            ("role", "pack", "documents", "passages"),
            (
                (
                    role,
                    info["pack"],
                    info["counts"].get("documents"),
                    info["counts"].get("passages"),
                )
                for role, info in data.items()
            ),
        )
    pre = r.get("pretrain")
    if pre:
        lines += [
            "## Continued pretraining (tiny T5, span corruption)",
            "",
            f"{pre['steps']} steps in {pre['train_seconds']:.0f} s, domain rate "
            f"{pre['domain_rate']:.2f}.",
            "",
        ]
        lines += _table(
            ("validation set", "PPL before", "PPL after"),
            (
                (role, f"{pre['ppl_before'][role]['ppl']:.2f}", f"{after['ppl']:.2f}")
                for role, after in pre["ppl_after"].items()
            ),
        )
    retrieval = r.get("retrieval")
    if retrieval:
        plot = pathlib.Path(retrieval["plot"])
        lines += [
            "## Retrieval (held-out and lay-language questions on the domain pack)",
            "",
            retrieval["table"],
            "",
            _fusion_line(retrieval.get("fusion")),
            "",
            f"![precision and recall vs k]({plot.relative_to(state.out) if plot.is_relative_to(state.out) else plot})",
            "",
        ]
    synth = r.get("synth")
    if synth:
        lines += [
            "## Instruction synthesis (template backend)",
            "",
        ]
        lines += _table(
            ("job", "generated", "kept", "rejected", "mean ROUGE-L to nearest"),
            (
                (
                    name,
                    rep["generated"],
                    rep["kept"],
                    rep["rejected"],
                    _optional(rep, "rouge_nn_mean"),
                )
                for name, rep in synth["reports"].items()
            ),
        )
    nli = r.get("consistency")
    if nli:
        lines += [
            "## NLI consistency model",
            "",
            f"T5 {nli.get('mode', 'seq2seq')} judge, {nli.get('train_steps', '?')} steps in "
            f"{nli['train_seconds']:.0f} s. Sets: `synth_test` = held-out synthesised pairs; "
            "`domain_claims` / `heldout_claims` = hand-written claims (vertjax/resources/demo). The "
            "adversarial slice holds paraphrased entailments and negatives that reuse the "
            "premise's words.",
            "",
        ]
        rows = []
        for name, m in nli["eval"].items():
            rows.append(
                (name, m["pairs"], f"{m['roc_auc']:.3f}", f"{m['lexical_overlap_roc_auc']:.3f}")
            )
            for part, sm in m.get("slices", {}).items():
                if sm["pairs"] != m["pairs"]:
                    rows.append(
                        (
                            f"{name} / {part}",
                            sm["pairs"],
                            f"{sm['roc_auc']:.3f}",
                            f"{sm['lexical_overlap_roc_auc']:.3f}",
                        )
                    )
        lines += _table(("eval set", "pairs", "ROC AUC (T5 NLI)", "ROC AUC (word overlap)"), rows)
    dec = r.get("decoding")
    if dec:
        lines += [
            "## Reference (copy) decoding",
            "",
            "The pretrained tiny T5's own greedy continuations of 3 validation passages, decoded "
            "again with references that contain them (grounded) or not (ungrounded); outputs are "
            "checked identical to greedy.",
            "",
        ]
        grounded = f"reference, grounded (acceptance {100 * dec['grounded_acceptance']:.0f} %)"
        lines += _table(
            ("decoder", "tokens/s", "vs greedy"),
            [
                ("greedy", f"{dec['greedy_tokens_per_second']:.1f}", "1.00x"),
                (
                    grounded,
                    f"{dec['grounded_tokens_per_second']:.1f}",
                    f"{dec['grounded_speedup']:.2f}x",
                ),
                (
                    "reference, ungrounded",
                    f"{dec['ungrounded_tokens_per_second']:.1f}",
                    f"{dec['ungrounded_speedup']:.2f}x",
                ),
            ],
        )
    answer = r.get("answer")
    if answer:
        lines += [
            f"Consistency judge: {answer.get('consistency_judge', '')}.",
            "",
            answer["markdown"],
            "",
        ]
    for name in ("llm_answers", "llm_keywords", "llm_synthesis"):
        if r.get(name):
            lines += [r[name]["markdown"], ""]
    path = state.out / "report.md"
    io_utils.atomic_write_text(path, "\n".join(lines))
    return path
