"""The demo's second LLM stage (`vertjax demo --llm`): ChatDoctor's keyword step by the local LLM.

The demo's hand-written lay-language questions (`retrieval.LAY_QUESTIONS`: "How do I get rid of a
folder along with everything nested inside it?") are searched with BM25 over the answering stage's
index three ways: as asked, with lexical keywords appended (`keywords.LexicalKeywords`, IDF of the
index) and with the local LLM's few-shot keywords appended (`keywords.FewShotKeywords` through the
OpenAI-compatible server). The section reports recall@k per system and three questions' keywords.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from vertjax import io_utils
from vertjax.demo.llm_answers import answering_index
from vertjax.demo.retrieval import LAY_QUESTIONS
from vertjax.demo.state import DemoState, say
from vertjax.retrieval import dense, keywords, metrics
from vertjax.retrieval.types import Retriever

PathLike = str | os.PathLike
KS = (1, 5, 10, 20)
EXAMPLES = 3


def compare(
    *,
    retriever: Retriever,
    extractors: Mapping[str, keywords.KeywordExtractor],
    questions: Sequence[metrics.Question],
    depth: int = 100,
) -> dict[str, Any]:
    """Recall@k of `retriever` on `questions` as asked and with each extractor's keywords
    appended; `{metrics: {system: {...}}, keywords: {system: [[...] per question]}, seconds}`."""
    texts = [q.question for q in questions]
    found = {"as asked": metrics.run_retriever(retriever, questions, depth=depth)}
    extracted, seconds = {}, {"as asked": 0.0}
    for name, extractor in extractors.items():
        system = f"+ {name} keywords"
        start = time.perf_counter()
        extracted[name] = extractor(texts)
        seconds[system] = time.perf_counter() - start
        queries = [
            metrics.Question(q.id, " ".join([q.question, *words]), q.positive_ids, q.answers)
            for q, words in zip(questions, extracted[name], strict=True)
        ]
        found[system] = metrics.run_retriever(retriever, queries, depth=depth)
    return {
        "metrics": {
            system: {
                **metrics.evaluate(questions, results, ks=KS),
                "seconds_per_question": seconds[system] / len(questions),
            }
            for system, results in found.items()
        },
        "questions": texts,
        "keywords": extracted,
    }


def markdown(result: Mapping[str, Any], *, model: str) -> str:
    lines = [
        "## Keywords by the local LLM (ChatDoctor's keyword step)",
        "",
        f"BM25 on {len(result['questions'])} hand-written lay-language questions, as asked and with"
        f" keywords appended: lexical (IDF of the index) and few-shot by {model}.",
        "",
        "| system | " + " | ".join(f"recall@{k}" for k in KS) + " | s / question |",
        "|---|" + "---:|" * (len(KS) + 1),
    ]
    for system, m in result["metrics"].items():
        cells = " | ".join(f"{m[f'recall@{k}']:.3f}" for k in KS)
        lines.append(f"| {system} | {cells} | {m['seconds_per_question']:.2f} |")
    lines.append("")
    for i, question in enumerate(result["questions"][:EXAMPLES]):
        lines.append(f"- {question}")
        for name, extracted in result["keywords"].items():
            lines.append(f"  - {name}: {', '.join(extracted[i]) or '(none)'}")
    lines.append("")
    return "\n".join(lines)


def stage_llm_keywords(state: DemoState, *, questions: PathLike = LAY_QUESTIONS) -> None:
    """`vertjax demo --llm`: lay questions with and without the local LLM's keywords."""
    from vertjax.generators import local_server

    if "llm_keywords" in state.results:
        return
    index_dir = answering_index(state)
    labelled = metrics.load_questions(questions)
    out = state.out / "llm_keywords"
    out.mkdir(parents=True, exist_ok=True)
    say("starting the local LLM server for keywords")
    with local_server.LocalLLMServer(log_path=out / "server.log") as server:
        extractors = {
            "lexical": keywords.open_extractor("lexical", index_dir=index_dir),
            "LLM": keywords.open_extractor(
                "llm", index_dir=index_dir, base_url=server.base_url, model=server.model_name
            ),
        }
        result = compare(
            retriever=dense.open_retriever(index_dir, "bm25"),
            extractors=extractors,
            questions=labelled,
        )
        model = server.model_name
    section = markdown(result, model=model)
    io_utils.atomic_write_json(out / "results.json", result)
    print(section, flush=True)
    state.results["llm_keywords"] = {"markdown": section, "metrics": result["metrics"]}
    state.save()
