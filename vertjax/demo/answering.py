"""The demo's last stage: the answering system over the demo's domain pack.

`stage_answer` runs it in the demo with the judge `consistency.consistency_judge` picks; `run(...)`
builds a BM25 index of the pack, trains the out-of-domain classifier (domain questions
from the pack's train split vs general questions), measures refusal precision/recall of the whole
system on a held-out mix (questions from the pack's test split and hand-written domain questions
vs held-out general questions), answers a few in-domain questions with citations and consistency
verdicts, refuses an out-of-domain one, and returns a markdown section for `report.md`. Every
step's output is reused on a rerun. With zero trained models it uses the extractive generator and
the lexical consistency check; pass the demo's NLI run to check sentences with the T5 NLI model.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Sequence
from typing import Any

from vertjax import io_utils
from vertjax.consistency import nli
from vertjax.data import packs
from vertjax.demo.consistency import consistency_judge
from vertjax.demo.state import DemoState, say
from vertjax.synth import refusals
from vertjax.system import build, ood

PathLike = str | os.PathLike
DEMO_QUESTIONS = (
    "What does json.dumps do? Which arguments does it take?",
    "How do I read a file line by line?",
    "What is a context manager?",
)
OUT_OF_DOMAIN_QUESTION = "How long should I boil an egg to get a soft yolk?"
# Written for this project as held-out in-domain questions (never used for training).
DOMAIN_EVAL_QUESTIONS = (
    "How do I read a file line by line?",
    "How can I sort a list of dictionaries by a key?",
    "What is the difference between a list and a tuple?",
    "How do I parse command-line arguments?",
    "How do I start a thread and wait for it to finish?",
    "What does the with statement do?",
    "How do I format a date as a string?",
    "How do I compute a SHA-256 hash of a file?",
    "How do I serialize a dictionary to JSON?",
    "What exception is raised when a key is missing from a dict?",
    "How do I create a temporary directory?",
    "How do I run a shell command and capture its output?",
    "What does the yield keyword do in a function?",
    "How can I copy a directory tree?",
    "How do I match a regular expression against a string?",
    "How do I get the current working directory?",
)


def _train_ood(
    ood_dir: pathlib.Path,
    *,
    domain_train: Sequence[dict],
    general_train: Sequence[dict],
    refusal_train: Sequence[str],
    seed: int,
    max_passages: int,
) -> Any:
    if (ood_dir / ood.CONFIG_FILE).is_file():
        return ood.HashedLogisticClassifier.load(ood_dir)
    classifier = ood.train_classifier(
        domain_train,
        general_train,
        refusal_questions=refusal_train,
        seed=seed,
        max_passages=max_passages,
    )
    classifier.save(ood_dir)
    return classifier


def _verdict_lines(result: Any) -> list[str]:
    lines = []
    for s in result.sentences:
        p = "n/a" if s.p_entailment is None else f"{s.p_entailment:.2f}"
        lines.append(f"  - {s.status}, P(entailment) {p}: cites {', '.join(s.passage_ids)}")
    return lines


def run(
    *,
    out_dir: PathLike,
    pack_dir: PathLike,
    general_pack_dir: PathLike | None = None,
    nli_run_dir: PathLike | None = None,
    vocab_dir: PathLike | None = None,
    questions: Sequence[str] = DEMO_QUESTIONS,
    out_of_domain_question: str = OUT_OF_DOMAIN_QUESTION,
    max_eval_questions: int = 150,
    max_train_passages: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Runs the stage; returns `{markdown, refusal, classifier_refusal, answers, ...}`.

    Args:
      out_dir: where the index (`index/`), the classifier (`ood/`), `results.json` and
        `answers.md` go.
      pack_dir: the built domain pack (`vertjax data build`); general_pack_dir: a general one
        (WordNet, Shakespeare) for general training/eval questions, beside the hand-written ones.
      nli_run_dir, vocab_dir: the demo's NLI model; without it the lexical check is used.
    """
    out_dir = pathlib.Path(out_dir)
    start = time.perf_counter()
    domain_train = packs.load_passages(pack_dir, splits=("train",))
    domain_test = packs.load_passages(pack_dir, splits=("test",))
    general_train, general_test = [], []
    if general_pack_dir is not None:
        general_train = packs.load_passages(general_pack_dir, splits=("train",))
        general_test = packs.load_passages(general_pack_dir, splits=("test",))
    refusal_train, refusal_test = ood.split_by_hash(
        refusals.OUT_OF_DOMAIN_QUESTIONS, test_fraction=0.4, salt=str(seed)
    )
    classifier = _train_ood(
        out_dir / "ood",
        domain_train=domain_train,
        general_train=general_train,
        refusal_train=refusal_train,
        seed=seed,
        max_passages=max_train_passages,
    )
    system = build.offline_assistant(
        index_dir=out_dir / "index", pack_dir=pack_dir, ood_dir=out_dir / "ood"
    )
    if nli_run_dir is not None and vocab_dir is not None:
        system.consistency_scorer = nli.Scorer.from_run_dir(nli_run_dir, vocab_dir)
    consistency = type(system.consistency_scorer).__name__

    in_domain = list(
        dict.fromkeys(
            [
                *DOMAIN_EVAL_QUESTIONS,
                *ood.questions_from_passages(domain_test, seed=seed + 2)[:max_eval_questions],
            ]
        )
    )
    general = list(
        dict.fromkeys(
            [
                *refusal_test,
                *ood.questions_from_passages(general_test, seed=seed + 3)[:max_eval_questions],
            ]
        )
    )
    mix = [(q, False) for q in in_domain] + [(q, True) for q in general]
    refused = [system.answer(q).refused for q, _ in mix]
    truth = [is_ood for _, is_ood in mix]
    p_in = classifier.probabilities([q for q, _ in mix])
    system_metrics = ood.refusal_metrics(truth, refused)
    classifier_metrics = ood.refusal_metrics(truth, [p < classifier.threshold for p in p_in])
    written = {*DOMAIN_EVAL_QUESTIONS, *refusal_test}  # hand-written, not template questions
    keep = [i for i, (q, _) in enumerate(mix) if q in written]
    written_metrics = ood.refusal_metrics([truth[i] for i in keep], [refused[i] for i in keep])

    answers = [system.answer(q) for q in [*questions, out_of_domain_question]]
    lines = ["## Answering system", ""]
    lines.append(
        f"BM25 over `{pack_dir}`, extractive cited answers, consistency check: {consistency}, "
        f"out-of-domain classifier: hashed n-gram logistic regression "
        f"({classifier.meta.get('domain_questions')} domain vs "
        f"{classifier.meta.get('general_questions')} general training questions)."
    )
    lines.append("")
    for result in answers:
        lines.append(f"**Q: {result.question}**")
        if len(result.sub_questions) > 1:
            lines.append("Sub-questions: " + " | ".join(s.text for s in result.sub_questions))
        lines.append("")
        lines += [f"> {line}" for line in result.answer.splitlines()]
        lines += _verdict_lines(result)
        if result.refused:
            lines.append(f"  - refused: {result.refusal_reason}")
        lines.append("")
    lines += [
        f"Refusal on a held-out mix of {len(in_domain)} in-domain and {len(general)} "
        "out-of-domain questions (positive class: out of domain):",
        "",
        "| refusal by | precision | recall | F1 | false refusals | missed |",
        "|---|---|---|---|---|---|",
    ]
    rows = (
        ("whole system", system_metrics),
        ("classifier only", classifier_metrics),
        (f"whole system, hand-written questions only ({len(keep)})", written_metrics),
    )
    for name, m in rows:
        lines.append(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
            f"{m['false_refusals']} | {m['missed_refusals']} |"
        )
    markdown = "\n".join(lines) + "\n"
    results = {
        "markdown": markdown,
        "refusal": system_metrics,
        "classifier_refusal": classifier_metrics,
        "hand_written_refusal": written_metrics,
        "eval_questions": {"in_domain": len(in_domain), "out_of_domain": len(general)},
        "answers": [dataclasses.asdict(r) for r in answers],
        "index_dir": str(out_dir / "index"),
        "ood_dir": str(out_dir / "ood"),
        "consistency": consistency,
        "seconds": time.perf_counter() - start,
    }
    io_utils.atomic_write_text(out_dir / "answers.md", markdown)
    io_utils.atomic_write_json(out_dir / "results.json", results)
    return results


def stage_answer(state: DemoState) -> None:
    """The answering system: cited answers with NLI verdicts, refusal precision/recall."""
    if "answer" in state.results:
        return
    say("answering questions with citations and consistency checks")
    general = state.results["data"].get("general")
    nli_run, judge = consistency_judge(state)
    say(f"consistency judge: {judge}")
    result = run(
        out_dir=state.out / "system",
        pack_dir=state.results["data"]["domain"]["dir"],
        general_pack_dir=general["dir"] if general else None,
        nli_run_dir=nli_run,
        vocab_dir=state.out / "vocab",
        seed=state.config.seed,
    )
    print(result["markdown"], flush=True)
    state.results["answer"] = dict(result, consistency_judge=judge)
    state.save()
