"""Refusal precision / recall of the out-of-the-box assistant on the hand-written SQLite mix.

The 46 in-domain questions (questions.jsonl) and 24 out-of-domain ones (ood_questions.jsonl) go
through the zero-model assistant (BM25 + extractive answers) with the classifier that
`vertjax ood train --pack PACK --index INDEX --out OOD_DIR` trained (issue 14's floors: refusal
precision >= 0.90 and recall >= 0.80, out of domain = positive class).

    python experiments/sqlite_own_corpus/refusal_eval.py --index /tmp/sqlite_own_corpus/index \
        --ood_dir /tmp/sqlite_own_corpus/ood [--min_top_score_percentile 5]
"""

from __future__ import annotations

import argparse
import json
import pathlib

from vertjax import io_utils
from vertjax.system import build, ood

HERE = pathlib.Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True, help="the index run.sh builds")
    parser.add_argument("--ood_dir", required=True, help="the folder `vertjax ood train` wrote")
    parser.add_argument(
        "--min_top_score_percentile", type=float, help="also refuse below this calibrated score"
    )
    args = parser.parse_args()
    in_domain = [r["question"] for r in io_utils.read_jsonl(HERE / "questions.jsonl")]
    out_domain = [r["question"] for r in io_utils.read_jsonl(HERE / "ood_questions.jsonl")]
    bot = build.offline_assistant(
        index_dir=args.index,
        ood_dir=args.ood_dir,
        min_top_score_percentile=args.min_top_score_percentile,
    )
    refused = [bot.answer(q).refused for q in [*in_domain, *out_domain]]
    metrics = ood.refusal_metrics([False] * len(in_domain) + [True] * len(out_domain), refused)
    print(json.dumps(metrics, indent=2))
    print("in-domain questions refused:")
    print("\n".join(f"  {q}" for q, r in zip(in_domain, refused, strict=False) if r))
    print("out-of-domain questions answered:")
    print(
        "\n".join(
            f"  {q}" for q, r in zip(out_domain, refused[len(in_domain) :], strict=True) if not r
        )
    )


if __name__ == "__main__":
    main()
