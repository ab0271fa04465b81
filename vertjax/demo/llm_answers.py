"""The demo's optional LLM stage (`vertjax demo --llm`): cited answers written by a real local LLM
beside the extractive generator's, judged by the same NLI judge.

The local server (`make llm`: llama.cpp + SmolLM2-135M-Instruct) starts on a free 127.0.0.1 port.
For each of the answering stage's held-out questions (`answering.DOMAIN_EVAL_QUESTIONS`) the
passages are retrieved and selected once (BM25 over the answering stage's index, the assistant's
`KnowledgeSelector`, most relevant last) and both generators answer over exactly those passages.
Per generator: ALCE citation recall / precision (`consistency.citations`, the judge's entailment
decision), the NLI-judged support rate (the share of sentences the post-processing check calls
supported: against their cited passages, or all passages when a sentence cites none), the share
of sentences with a citation, and answers left empty. The judge is the demo's
(`consistency.consistency_judge`); when it picks no NLI model the lexical check stands in, and the
section says so.
"""

from __future__ import annotations

import os
import pathlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from vertjax import errors, io_utils
from vertjax.consistency import citations, nli, postprocess
from vertjax.demo.answering import DOMAIN_EVAL_QUESTIONS
from vertjax.demo.consistency import consistency_judge
from vertjax.demo.state import DemoState, say
from vertjax.retrieval import selection
from vertjax.system import build, generation

PathLike = str | os.PathLike
EXAMPLES = 3  # questions whose answers the report shows, with verdicts
QUESTIONS = DOMAIN_EVAL_QUESTIONS  # what the stage asks (the answering stage's held-out questions)


def _judge(predict: postprocess.Predict, threshold: float) -> citations.Judge:
    """ALCE's entailment decision from an NLI `predict`: P(entailment) >= threshold."""

    def judge(premise: str, hypothesis: str) -> bool:
        [prediction] = predict([premise], [hypothesis])
        return prediction.p_entailment >= threshold

    return judge


def compare(
    *,
    index_dir: PathLike,
    generators: Mapping[str, generation.AnswerGenerator],
    predict: postprocess.Predict,
    questions: Sequence[str] = DOMAIN_EVAL_QUESTIONS,
    k: int = 4,
    retrieve_k: int = 20,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Answers `questions` with every generator over the same selected passages and judges them.

    Returns `{metrics: {generator: {...}}, answers: [{question, passages, by generator:
    {sentences, verdicts, text, seconds}}]}`.
    """
    if not questions or not generators:
        raise errors.ConfigError("compare needs at least one question and one generator")
    retriever = build.load_retriever(index_dir, kind="bm25")
    selector = selection.KnowledgeSelector(k=k)
    hits = retriever.search(list(questions), retrieve_k)
    config = postprocess.PostprocessConfig(policy="flag", threshold=threshold)
    judge = _judge(predict, threshold)
    answers = []
    for question, question_hits in zip(questions, hits, strict=True):
        chosen = list(selector(question, question_hits))[-k:]
        records = [{"title": h.title, "text": h.text} for h in chosen]
        row: dict[str, Any] = {"question": question, "passages": [h.id for h in chosen]}
        for name, generator in generators.items():
            start = time.perf_counter()
            sentences = generator.generate(question, chosen) if chosen else []
            seconds = time.perf_counter() - start
            checked = (
                postprocess.postprocess_answer(sentences, records, predict=predict, config=config)
                if sentences
                else {"checked": [], "text": ""}
            )
            scores = citations.citation_scores(sentences, records, judge=judge)
            row[name] = {
                "sentences": sentences,
                "verdicts": checked["checked"],
                "text": checked["text"],
                "raw": getattr(generator, "last_text", None),
                "citation_recall": scores["citation_recall"],
                "citation_precision": scores["citation_precision"],
                "seconds": seconds,
            }
        answers.append(row)
    return {"metrics": {name: _summary(answers, name) for name in generators}, "answers": answers}


def _summary(answers: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any]:
    """One generator's figures over all answers (citation scores: mean per answer, as ALCE;
    an empty answer scores 0)."""
    rows = [a[name] for a in answers]
    verdicts = [v for r in rows for v in r["verdicts"]]
    sentences = [s for r in rows for s in r["sentences"]]
    return {
        "answers": len(rows),
        "empty_answers": sum(not r["sentences"] for r in rows),
        "sentences": len(sentences),
        "cited_share": sum(bool(s["citations"]) for s in sentences) / max(len(sentences), 1),
        "citation_recall": sum(r["citation_recall"] for r in rows) / len(rows),
        "citation_precision": sum(r["citation_precision"] for r in rows) / len(rows),
        "support_rate": sum(v["status"] == "supported" for v in verdicts) / max(len(verdicts), 1),
        "seconds_per_answer": sum(r["seconds"] for r in rows) / len(rows),
    }


def markdown(result: Mapping[str, Any], *, judge: str, model: str) -> str:
    """The report section: the table, then `EXAMPLES` questions with both answers and verdicts."""
    lines = [
        "## Cited answers: local LLM vs extractive",
        "",
        f"LLM: {model} (llama.cpp server, greedy). Both generators answer the same "
        f"{len(result['answers'])} held-out questions over the same selected passages (BM25, "
        f"most relevant last). Judge: {judge}. Support rate: share of sentences the judge finds "
        "entailed by their cited passages (by all passages when a sentence cites none); citation "
        "recall / precision: ALCE's, mean per answer (an empty answer scores 0).",
        "",
        "| generator | citation recall | citation precision | support rate | sentences | "
        "cited | empty answers | s / answer |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in result["metrics"].items():
        lines.append(
            f"| {name} | {m['citation_recall']:.3f} | {m['citation_precision']:.3f} | "
            f"{m['support_rate']:.3f} | {m['sentences']} | {100 * m['cited_share']:.0f} % | "
            f"{m['empty_answers']} / {m['answers']} | {m['seconds_per_answer']:.1f} |"
        )
    lines.append("")
    for row in result["answers"][:EXAMPLES]:
        lines += [f"**Q: {row['question']}**", ""]
        for name in result["metrics"]:
            lines.append(f"- {name}: {row[name]['text'] or '(no answer)'}")
            for v in row[name]["verdicts"]:
                cites = ", ".join(f"[{c}]" for c in v["citations"]) or "no citation"
                lines.append(
                    f"  - {v['status']}, P(entailment) {v['p_entailment']:.2f}, {cites}: "
                    f"{v['text']}"
                )
        lines.append("")
    return "\n".join(lines)


def answering_index(state: DemoState) -> pathlib.Path:
    """The index the answering stage built, which the LLM stages search."""
    answer = state.results.get("answer")
    if not answer:
        raise errors.ConfigError(
            f"the LLM stage needs the answering stage's index in {state.out}; run the demo first"
        )
    return pathlib.Path(answer["index_dir"])


def stage_llm_answers(state: DemoState) -> None:
    """`vertjax demo --llm`: the local LLM's cited answers beside the extractive ones."""
    from vertjax.generators import local_server, openai_chat

    if "llm_answers" in state.results:
        return
    index_dir = answering_index(state)
    nli_run, judge = consistency_judge(state)
    if nli_run is not None:
        predict = nli.Scorer.from_run_dir(nli_run, state.out / "vocab").predict
    else:
        predict = build.LexicalScorer().predict
        judge = f"{judge}; lexical fallback, not an NLI model"
    out = state.out / "llm_answers"
    out.mkdir(parents=True, exist_ok=True)
    say(f"starting the local LLM server; judge: {judge}")
    with local_server.LocalLLMServer(log_path=out / "server.log") as server:
        llm = generation.BackendAnswerGenerator(
            openai_chat.OpenAIChatGenerator(
                server.base_url, server.model_name, max_retries=0, concurrency=1
            ),
            max_tokens=state.config.llm_max_tokens,
            domain=build.index_domain(index_dir),
        )
        generators = {"extractive": generation.ExtractiveGenerator(), "llm": llm}
        result = compare(
            index_dir=index_dir, generators=generators, predict=predict, questions=QUESTIONS
        )
        model = server.model_name
    section = markdown(result, judge=judge, model=model)
    io_utils.atomic_write_json(out / "results.json", result)
    io_utils.atomic_write_text(out / "answers.md", section + "\n")
    print(section, flush=True)
    state.results["llm_answers"] = {
        "markdown": section,
        "metrics": result["metrics"],
        "judge": judge,
        "model": model,
        "max_tokens": state.config.llm_max_tokens,
    }
    state.save()
