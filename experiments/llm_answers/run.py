"""Cited answers from a real local LLM vs the extractive generator (issue 18.4).

    .venv/bin/python experiments/llm_answers/run.py [--out runs/llm_answers] [--max_tokens 96]

Builds the embedded python-stdlib pack and a BM25 index of it (once), starts the local llama.cpp
server (`make llm`) and runs the demo's LLM stage comparison (`vertjax.demo.llm_answers.compare`)
on the demo's 16 held-out questions: both generators answer over the same selected passages. The
judge is the lexical check (this script trains no NLI model; `vertjax demo --llm` after a full
demo uses the demo's T5 NLI judge when it beats lexical overlap). Writes `OUT/results.json` (every
raw LLM reply, parsed sentences and verdicts) and `OUT/summary.md`, and prints the summary, with
how often the raw replies contain a citation marker at all and how many name no passage.
"""

from __future__ import annotations

import argparse
import pathlib
import re

from vertjax import io_utils
from vertjax.data import packs
from vertjax.demo import llm_answers
from vertjax.demo.data import DOMAIN_PACK
from vertjax.generators import local_server, openai_chat
from vertjax.system import build, generation

JUDGE = "lexical overlap (fallback: no NLI model in this run)"
_MARKER = re.compile(r"\[(\d+)\]")


def marker_counts(answers: list[dict], k: int) -> dict[str, int]:
    """Raw LLM replies with any `[n]` marker, and markers naming no passage (n outside 1..k)."""
    raws = [a["llm"]["raw"] or "" for a in answers]
    numbers = [int(n) for raw in raws for n in _MARKER.findall(raw)]
    return {
        "replies": len(raws),
        "replies_with_marker": sum(bool(_MARKER.search(r)) for r in raws),
        "markers": len(numbers),
        "markers_out_of_range": sum(not 1 <= n <= k for n in numbers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/llm_answers")
    parser.add_argument("--max_tokens", type=int, default=96)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    pack = out / "data" / DOMAIN_PACK
    packs.ensure_pack(DOMAIN_PACK, pack)
    index_dir = build.build_bm25_index(pack, out / "index")
    with local_server.LocalLLMServer(log_path=out / "server.log") as server:
        llm = generation.BackendAnswerGenerator(
            openai_chat.OpenAIChatGenerator(
                server.base_url, server.model_name, max_retries=0, concurrency=1
            ),
            max_tokens=args.max_tokens,
            domain=build.index_domain(index_dir),
        )
        generators = {"extractive": generation.ExtractiveGenerator(), "llm": llm}
        result = llm_answers.compare(
            index_dir=index_dir, generators=generators, predict=build.LexicalScorer().predict
        )
        model = server.model_name
    result["markers"] = marker_counts(result["answers"], k=4)
    summary = llm_answers.markdown(result, judge=JUDGE, model=model)
    summary += f"\n\nRaw LLM replies: {result['markers']}\n"
    io_utils.atomic_write_json(out / "results.json", result)
    io_utils.atomic_write_text(out / "summary.md", summary)
    print(summary)


if __name__ == "__main__":
    main()
