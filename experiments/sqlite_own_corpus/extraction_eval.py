"""Does the extractive answer quote the answering passage's answer? (issue 14.6)

For each hand-written question of `questions.jsonl` whose answering passage (one containing an
`answers` string) is in the BM25 top 5, the assistant's selection (k = 4 of the top 20, as
`system/default.gin`) goes to `ExtractiveGenerator`, and the answer sentences are compared with the
`answers` strings:
- contains: a sentence contains an answer string (case and spacing ignored);
- overlap: the longest common word subsequence covers >= 0.5 of an answer string's words.
Reported for the first sentence and for any sentence. With `--pack`, also "oracle selection":
every question, its answering passage (the best-ranked retrieved one, else the pack's first)
placed last (the most relevant place) after three other selected passages, so that extraction is
measured on all questions, apart from retrieval misses. `--answers FILE` also writes every
question's answer (the hand-graded table in README.md reads them).

The relevance signal (`generation.QuestionRelevance`, the assistant's `min_relevance`) is measured
on the same answers and on those to `ood_questions.jsonl` (no classifier, no score threshold, as
out of the box): the share of answers whose best sentence reaches each threshold, i.e. that the
assistant would label "answers the question".

    python experiments/sqlite_own_corpus/extraction_eval.py --index /tmp/sqlite_own_corpus/index
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re

from vertjax.retrieval import dense, selection
from vertjax.system import generation

HERE = pathlib.Path(__file__).parent
_WORDS = re.compile(r"\w+")


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _tally(counts: dict[str, int], verdicts: list[tuple[bool, bool]]) -> None:
    """Adds one answer's (contains, overlap) verdicts per sentence to the four counts."""
    if verdicts:
        counts["first_contains"] += verdicts[0][0]
        counts["first_overlap"] += verdicts[0][1]
    counts["any_contains"] += any(c for c, _ in verdicts)
    counts["any_overlap"] += any(o for _, o in verdicts)


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        prev = 0
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], prev + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def matches(sentence: str, answers: list[str]) -> tuple[bool, bool]:
    """(contains, overlap >= 0.5) of one sentence against the answer strings."""
    words = _WORDS.findall(sentence.lower())
    contains = any(_norm(a) in _norm(sentence) for a in answers)
    overlap = any(
        _lcs(_WORDS.findall(a.lower()), words) >= 0.5 * len(_WORDS.findall(a)) for a in answers
    )
    return contains, overlap


def answer(question, hits, selector, extractor) -> tuple[list[dict], list[float]]:
    """The extractive answer as the assistant builds it, and each sentence's relevance."""
    chosen = selector(question, hits)
    sentences = extractor.generate(question, chosen)
    relevance = generation.QuestionRelevance(question, chosen)
    titles = [chosen[s["citations"][0] - 1].title for s in sentences]
    return sentences, [
        round(relevance(s["text"], t), 3) for s, t in zip(sentences, titles, strict=True)
    ]


def oracle(questions, hits_all, pack, selector, extractor) -> None:
    """The four counts over every question, its answering passage always selected."""
    from vertjax.data import packs
    from vertjax.retrieval.types import Hit

    passages = packs.load_passages(pack)
    counts = dict.fromkeys(["first_contains", "first_overlap", "any_contains", "any_overlap"], 0)
    for q, hits in zip(questions, hits_all, strict=True):
        answers = [_norm(a) for a in q["answers"]]
        good = [h for h in hits if any(a in _norm(h.text) for a in answers)]
        if not good:
            p = next(p for p in passages if any(a in _norm(p["text"]) for a in answers))
            good = [Hit.of(p, rank=1, score=0.0)]
        others = [h for h in selector(q["question"], hits) if h.id != good[0].id]
        sentences, _ = answer(q["question"], [*others[-3:], good[0]], lambda _, h: h, extractor)
        verdicts = [matches(s["text"], q["answers"]) for s in sentences]
        _tally(counts, verdicts)
    print(f"oracle selection, all {len(questions)} questions:")
    for name, n in counts.items():
        print(f"  {name}: {n}/{len(questions)} = {n / len(questions):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--index", default="/tmp/sqlite_own_corpus/index")
    parser.add_argument("--questions", default=str(HERE / "questions.jsonl"))
    parser.add_argument("--pack", help="the data pack, for the oracle-selection measurement")
    parser.add_argument("--ood_questions", default=str(HERE / "ood_questions.jsonl"))
    parser.add_argument("--answers", help="write each question's answer here (JSONL)")
    args = parser.parse_args()
    questions = [json.loads(line) for line in open(args.questions, encoding="utf-8")]
    retriever = dense.open_retriever(args.index, "bm25")
    selector = selection.KnowledgeSelector(k=4, most_relevant="last")
    extractor = generation.ExtractiveGenerator(max_sentences=2)
    counts = dict.fromkeys(["first_contains", "first_overlap", "any_contains", "any_overlap"], 0)
    evaluated, rows = 0, []
    hits_all = retriever.search([q["question"] for q in questions], 20)
    for q, hits in zip(questions, hits_all, strict=True):
        answers = q["answers"]
        in_top5 = any(any(_norm(a) in _norm(h.text) for a in answers) for h in hits[:5])
        sentences, relevance = answer(q["question"], hits, selector, extractor)
        verdicts = [matches(s["text"], answers) for s in sentences]
        rows.append(
            {
                "id": q["id"],
                "question": q["question"],
                "in_top5": in_top5,
                "answer": [s["text"] for s in sentences],
                "matches": verdicts,
                "relevance": relevance,
            }
        )
        if not in_top5:
            continue
        evaluated += 1
        _tally(counts, verdicts)
    print(f"questions {len(questions)}, answering passage in top 5: {evaluated}")
    for name, n in counts.items():
        print(f"{name}: {n}/{evaluated} = {n / max(evaluated, 1):.3f}")
    if args.pack:
        oracle(questions, hits_all, args.pack, selector, extractor)
    ood = [json.loads(line)["question"] for line in open(args.ood_questions, encoding="utf-8")]
    ood_best = [
        max(answer(q, hits, selector, extractor)[1], default=0.0)
        for q, hits in zip(ood, retriever.search(ood, 20), strict=True)
    ]
    in_best = [max(r["relevance"], default=0.0) for r in rows]
    print("relevance threshold: share of answers labelled 'answers the question'")
    for threshold in (0.3, 0.4, 0.5, 0.6, 0.7):
        share_in = sum(b >= threshold for b in in_best) / len(in_best)
        share_ood = sum(b >= threshold for b in ood_best) / len(ood_best)
        print(f"  {threshold:.1f}: in-domain {share_in:.3f}, out-of-domain {share_ood:.3f}")
    if args.answers:
        with open(args.answers, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


if __name__ == "__main__":
    main()
