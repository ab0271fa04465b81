"""The audit trail of a synthesis job and its report.

A job folder holds `instructions.jsonl` (kept records `{id, instruction, input, output, source,
meta}`), `rejected.jsonl` (every filtered candidate with `meta.reason`) and `progress.jsonl` (units
of work finished: rounds, passages, entities). Each is appended one fsynced line per record, so a
killed job resumes: `JobLog.decided` maps each candidate's deterministic position to its record and
finished units are skipped. `write_report` counts generated / filtered-by-reason / kept and adds
the Self-Instruct paper's analyses (instruction lengths, verb-noun diversity, ROUGE-L to the
nearest neighbour) as `report.md` + `report.png`.
"""

from __future__ import annotations

import collections
import hashlib
import json
import pathlib
import re
import statistics
from collections.abc import Sequence
from typing import Any

from vertjax import errors, io_utils
from vertjax.synth import filters

KEPT_FILE = "instructions.jsonl"
REJECTED_FILE = "rejected.jsonl"
PROGRESS_FILE = "progress.jsonl"
REPORT_MD = "report.md"
REPORT_PNG = "report.png"
RECORD_KEYS = ("id", "instruction", "input", "output", "source", "meta")
_QUESTION_WORDS = frozenset(
    "what which how why when where who whom whose is are was were does do did can could should "
    "would will has have".split()
)
_LEADING_PREPOSITIONS = frozenset("in on for to with from by at of".split())
_NOT_NOUNS = frozenset(
    "a an the this that these those of to for in on with by from all each every some any its "
    "their my your me us it them following given one two three new short simple more".split()
)


def stable_id(*parts: str) -> str:
    """A 16-hex-digit hash of the parts (content ids are stable across runs and resumes)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:16]


def make_record(
    *, instruction: str, input_: str, output: str, source: str, meta: dict[str, Any]
) -> dict[str, Any]:
    """An instruction record whose id hashes its source and content."""
    return {
        "id": stable_id(source, instruction, input_, output),
        "instruction": instruction,
        "input": input_,
        "output": output,
        "source": source,
        "meta": meta,
    }


class JobLog:
    """The append-only files of one job folder, reopened as they were left (see module doc)."""

    def __init__(self, out_dir: io_utils.PathLike):
        self.dir = pathlib.Path(out_dir)
        self.kept = io_utils.JsonlAppender(self.dir / KEPT_FILE)
        self.rejected = io_utils.JsonlAppender(self.dir / REJECTED_FILE)
        self.progress = io_utils.JsonlAppender(self.dir / PROGRESS_FILE)
        self.decided: dict[str, dict[str, Any]] = {}
        for record in self.kept.records + self.rejected.records:
            position = record.get("meta", {}).get("position")
            if position is not None:
                self.decided[position] = record

    def keep(self, record: dict[str, Any]) -> bool:
        """Appends a kept record; one whose id is already kept is rejected as a duplicate."""
        if record["id"] in self.kept.seen:
            self.reject(record, "duplicate")
            return False
        self.kept.append(record)
        self.decided[record["meta"]["position"]] = record
        return True

    def reject(self, record: dict[str, Any], reason: str, **extra: Any) -> None:
        meta = dict(record["meta"], reason=reason, **extra)
        position = meta["position"]
        rejected = dict(record, id=stable_id("rejected", position, record["id"]), meta=meta)
        self.rejected.append(rejected)
        self.decided[position] = rejected

    def is_done(self, unit: str) -> bool:
        return unit in self.progress.seen

    def mark_done(self, unit: str) -> None:
        if unit not in self.progress.seen:
            self.progress.append({"id": unit})

    def close(self) -> None:
        for appender in (self.kept, self.rejected, self.progress):
            appender.close()

    def __enter__(self) -> JobLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def is_rejected(record: dict[str, Any]) -> bool:
    return "reason" in record.get("meta", {})


def verb_noun(instruction: str) -> tuple[str | None, str | None]:
    """A cheap stand-in for the paper's parse: the first word as the verb (a question word for
    questions, after leading prepositions) and the next noun-like word as its object; inline
    `code` counts as `<code>`."""
    words = re.findall(r"<code>|[A-Za-z_]+", re.sub(r"`[^`]*`", " <code> ", instruction))
    while words and words[0].lower() in _LEADING_PREPOSITIONS:
        words = words[1:]
    if not words:
        return None, None
    verb = words[0].lower()
    for word in words[1:]:
        lowered = word.lower()
        if lowered == "<code>" or (
            len(lowered) > 1 and lowered not in _QUESTION_WORDS | _NOT_NOUNS
        ):
            return verb, lowered
    return verb, None


def _stats(values: Sequence[int]) -> str:
    if not values:
        return "n/a"
    return f"mean {statistics.mean(values):.1f}, median {statistics.median(values):g}, max {max(values)}"


def summarize(
    kept: Sequence[dict[str, Any]],
    rejected: Sequence[dict[str, Any]],
    *,
    nn_sample: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """The report's numbers (also written as `report.json`)."""
    instructions = [r["instruction"] for r in kept]
    pairs = collections.Counter(verb_noun(i) for i in instructions)
    verbs = collections.Counter(v for v, _ in pairs.elements() if v)
    nn = filters.rouge_nearest_neighbours(instructions, sample=nn_sample, seed=seed)
    return {
        "generated": len(kept) + len(rejected),
        "kept": len(kept),
        "rejected": len(rejected),
        "rejected_by_reason": filters.count_reasons(rejected),
        "kept_by_source": dict(collections.Counter(r["source"] for r in kept).most_common()),
        "kept_by_job": dict(collections.Counter(r["meta"].get("job") for r in kept).most_common()),
        "classification": sum(bool(r["meta"].get("is_classification")) for r in kept),
        "instruction_words": [len(i.split()) for i in instructions],
        "output_words": [len(r["output"].split()) for r in kept],
        "unique_verbs": len(verbs),
        "unique_verb_noun_pairs": len([p for p in pairs if p[0] and p[1]]),
        "top_verbs": verbs.most_common(15),
        "top_verb_noun_pairs": [(f"{v} {n}", c) for (v, n), c in pairs.most_common() if v and n][
            :20
        ],
        "rouge_nn": nn,
        "rouge_nn_mean": statistics.mean(nn) if nn else None,
    }


def _markdown(summary: dict[str, Any], *, title: str) -> str:
    lines = [f"# {title}", "", "| count | n |", "|---|---:|"]
    lines += [f"| {k} | {summary[k]} |" for k in ("generated", "kept", "rejected")]
    lines += [f"| rejected: {k} | {v} |" for k, v in summary["rejected_by_reason"].items()]
    lines += [f"| kept, source {k} | {v} |" for k, v in summary["kept_by_source"].items()]
    lines += [f"| kept, job {k} | {v} |" for k, v in summary["kept_by_job"].items()]
    lines.append(f"| kept, classification | {summary['classification']} |")
    nn = summary["rouge_nn"]
    nn_mean = "n/a" if summary["rouge_nn_mean"] is None else f"{summary['rouge_nn_mean']:.3f}"
    lines += [
        "",
        f"- Instruction length (words): {_stats(summary['instruction_words'])}",
        f"- Output length (words): {_stats(summary['output_words'])}",
        f"- Verb-noun diversity: {summary['unique_verbs']} distinct first verbs, "
        f"{summary['unique_verb_noun_pairs']} distinct verb-noun pairs "
        "(heuristic: first word + next noun-like word)",
        f"- Mean ROUGE-L F1 to the nearest other kept instruction: {nn_mean} "
        f"(over {len(nn)} instructions)",
        "",
        "| top verb-noun pairs | n |",
        "|---|---:|",
    ]
    lines += [f"| {p} | {c} |" for p, c in summary["top_verb_noun_pairs"]]
    lines += ["", f"![report]({REPORT_PNG})", ""]
    return "\n".join(lines)


def _plot(summary: dict[str, Any], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    reasons = {"kept": summary["kept"], **summary["rejected_by_reason"]}
    axes[0, 0].barh(list(reasons)[::-1], list(reasons.values())[::-1], color="tab:blue")
    axes[0, 0].set_title("kept and rejected by reason")
    for ax, key, title in (
        (axes[0, 1], "instruction_words", "instruction length (words)"),
        (axes[0, 2], "output_words", "output length (words)"),
    ):
        ax.hist(summary[key] or [0], bins=30, color="tab:green")
        ax.set_title(title)
    for ax, key, title in (
        (axes[1, 0], "top_verbs", "top first verbs"),
        (axes[1, 1], "top_verb_noun_pairs", "top verb-noun pairs"),
    ):
        names = [n for n, _ in summary[key]][::-1]
        ax.barh(names, [c for _, c in summary[key]][::-1], color="tab:orange")
        ax.set_title(title)
    axes[1, 2].hist(summary["rouge_nn"] or [0], bins=20, range=(0, 1), color="tab:purple")
    axes[1, 2].set_title("ROUGE-L F1 to nearest neighbour")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)


def write_report(job_dir: io_utils.PathLike, *, title: str = "Synthesis report") -> dict[str, Any]:
    """Reads a job folder and writes report.md, report.json and report.png into it."""
    job_dir = pathlib.Path(job_dir)
    if not (job_dir / KEPT_FILE).is_file():
        raise errors.DataError(f"no {KEPT_FILE} here: not a synthesis job folder", path=job_dir)
    kept = list(io_utils.read_jsonl(job_dir / KEPT_FILE, required_keys=RECORD_KEYS))
    rejected_path = job_dir / REJECTED_FILE
    rejected = list(io_utils.read_jsonl(rejected_path)) if rejected_path.is_file() else []
    summary = summarize(kept, rejected)
    io_utils.atomic_write_text(job_dir / REPORT_MD, _markdown(summary, title=title))
    io_utils.atomic_write_text(job_dir / "report.json", json.dumps(summary, indent=1) + "\n")
    _plot(summary, job_dir / REPORT_PNG)
    return summary
