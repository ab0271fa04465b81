"""`vertjax consistency score|train-data|citation-data`: the T5 NLI consistency model's CLI.

- score: P(entailment) per `{id, premise, hypothesis}` line → `{id, p_entailment, label}` lines,
  appended as it goes (a rerun skips the ids already written);
- `vertjax eval consistency` (defined here): ROC AUC, accuracy and a calibration plot on labelled
  pairs, beside the lexical baseline; `vertjax consistency eval` is its deprecated hidden alias;
- train-data: NLI JSONL splits synthesised from passages, or read from a prepared tfds NLI set;
- citation-data: answer-with-citations seq2seq records from QA examples with passage ids.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from vertjax import errors, io_utils
from vertjax.commands import flags

HELP = (
    "NLI factual consistency: score pairs, build NLI / citation training data"
    " (evaluate with `vertjax eval consistency`)"
)
LABEL_SETS = {
    "nli": ("entailment", "neutral", "contradiction"),
    "binary": ("consistent", "inconsistent"),
}
_CHUNK = 64


def _scorer_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="NLI run dir or checkpoint_<step> dir")
    parser.add_argument(
        "--vocab", required=True, help="the vocab dir (or spm.model) it was trained with"
    )
    parser.add_argument(
        "--pairs", required=True, help="JSONL of {id, premise, hypothesis[, label]}"
    )
    parser.add_argument(
        "--labels",
        choices=sorted(LABEL_SETS),
        default="nli",
        help="the label set it was trained on",
    )
    parser.add_argument(
        "--max_premise_tokens",
        type=int,
        default=None,
        help="premise window in tokens (default: a classifier's training budget, else 384)",
    )
    parser.add_argument(
        "--window_stride", type=int, default=None, help="window step (default: 2/3 of the window)"
    )


EVAL_HELP = "ROC AUC, accuracy, calibration vs the lexical baseline"


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `vertjax eval consistency` (and of its deprecated alias `consistency eval`)."""
    _scorer_flags(parser)
    parser.add_argument("--out", default=None, help="dir for scores.jsonl, metrics.json, PNG")
    parser.add_argument("--threshold", type=float, default=0.5, help="accuracy threshold")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="consistency_command", metavar="<what>", required=True)
    score = sub.add_parser("score", help="P(entailment) per pair (resumable)")
    _scorer_flags(score)
    score.add_argument("--out", required=True, help="output JSONL {id, p_entailment, label}")
    score.set_defaults(_consistency=_run_score)

    evaluate = sub.add_parser("eval", description=EVAL_HELP)  # no help=: hidden from the list
    add_eval_arguments(evaluate)
    evaluate.set_defaults(_consistency=_run_deprecated_eval)

    data = sub.add_parser("train-data", help="NLI train/validation/test JSONL")
    source = data.add_mutually_exclusive_group(required=True)
    source.add_argument("--passages", help="passages JSONL {id, doc_id, title, text} or a pack dir")
    source.add_argument(
        "--tfds", help="a prepared tfds NLI set: anli, anli/r2, anli/r3, multi_nli, snli"
    )
    data.add_argument("--tfds_data_dir", default=None, help="tfds data dir (never downloads)")
    data.add_argument("--out", required=True, help="output dir for {train,validation,test}.jsonl")
    data.add_argument("--binary", action="store_true", help="targets consistent|inconsistent")
    data.add_argument("--seed", type=int, default=0, help="--passages: seed of pairs and splits")
    data.add_argument("--per_passage", type=int, default=1, help="premise windows per passage")
    data.add_argument("--premise_sentences", type=int, default=4, help="sentences per premise")
    data.add_argument("--max_examples", type=int, default=None, help="tfds: per split")
    data.set_defaults(_consistency=_run_train_data)

    cite = sub.add_parser(
        "citation-data", help="answer-with-citations seq2seq JSONL from QA records"
    )
    cite.add_argument("--qa", required=True, help="{question, passages, answer_sentences} JSONL")
    cite.add_argument(
        "--out", required=True, help="output JSONL {id, inputs, targets, passage_ids}"
    )
    cite.set_defaults(_consistency=_run_citation_data)


def run(args: argparse.Namespace) -> int:
    return args._consistency(args)


def _run_deprecated_eval(args: argparse.Namespace) -> int:
    flags.deprecation_note("vertjax consistency eval", "vertjax eval consistency")
    return run_eval(args)


def _load_pairs(path: str, *, labelled: bool) -> list[dict]:
    keys = ("premise", "hypothesis", "label") if labelled else ("id", "premise", "hypothesis")
    records = io_utils.load_jsonl(path, required_keys=keys)
    seen = set()
    for line, record in enumerate(records, start=1):
        record.setdefault("id", line)
        if record["id"] in seen:
            raise errors.DataError(f"duplicate id {record['id']!r}", path=path, line=line)
        seen.add(record["id"])
        for key in ("premise", "hypothesis"):
            if not isinstance(record[key], str):
                raise errors.DataError(f"{key!r} is not a string", path=path, line=line)
    if labelled:
        from vertjax.consistency import nli_data

        for line, record in enumerate(records, start=1):
            record["label"] = nli_data.normalize_label(record["label"], path=path, line=line)
    return records


def _scorer(args: argparse.Namespace):
    from vertjax.consistency import nli

    return nli.Scorer.from_run_dir(
        args.checkpoint,
        args.vocab,
        labels=LABEL_SETS[args.labels],
        max_premise_tokens=args.max_premise_tokens,
        window_stride=args.window_stride,
    )


def _score_into(scorer, records: list[dict], out: pathlib.Path) -> dict:
    """Scores records not yet in `out` (append-only, resumable); returns id → output record."""
    from tqdm import tqdm

    with io_utils.JsonlAppender(out) as appender:
        todo = [r for r in records if r["id"] not in appender.seen]
        for start in tqdm(range(0, len(todo), _CHUNK), desc="scoring", disable=not todo):
            chunk = todo[start : start + _CHUNK]
            predictions = scorer.predict(
                [r["premise"] for r in chunk], [r["hypothesis"] for r in chunk]
            )
            for record, prediction in zip(chunk, predictions, strict=True):
                appender.append(
                    {
                        "id": record["id"],
                        "p_entailment": prediction.p_entailment,
                        "label": prediction.label,
                    }
                )
        return {r["id"]: r for r in appender.records}


def _run_score(args: argparse.Namespace) -> int:
    records = _load_pairs(args.pairs, labelled=False)
    out = pathlib.Path(args.out)
    scored = _score_into(_scorer(args), records, out)
    print(f"scored {len(records)} pairs ({len(scored)} lines) into {out}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from vertjax.consistency import metrics, nli

    records = _load_pairs(args.pairs, labelled=True)
    out_dir = pathlib.Path(args.out) if args.out else pathlib.Path(args.checkpoint) / "nli_eval"
    scored = _score_into(_scorer(args), records, out_dir / "scores.jsonl")
    predictions = [
        nli.Prediction(scored[r["id"]]["p_entailment"], scored[r["id"]]["label"], {})
        for r in records
    ]
    results = metrics.evaluate(records, predictions, threshold=args.threshold)
    results.update(checkpoint=str(args.checkpoint), pairs_file=str(args.pairs))
    plot = metrics.plot_calibration(
        {"T5 NLI": results["model"]["calibration"]},
        out_dir / "calibration.png",
        title=f"calibration: {pathlib.Path(args.pairs).name}",
    )
    io_utils.atomic_write_json(out_dir / "metrics.json", results)
    summary = {
        "pairs": results["pairs"],
        "roc_auc": round(results["model"]["roc_auc"], 4),
        "accuracy": round(results["model"]["accuracy"], 4),
        "ece": round(results["model"]["ece"], 4),
        "lexical_overlap_roc_auc": round(results["lexical_overlap"]["roc_auc"], 4),
        "calibration_plot": str(plot),
    }
    if "accuracy_3way" in results["model"]:
        summary["accuracy_3way"] = round(results["model"]["accuracy_3way"], 4)
    print(json.dumps(summary, indent=2))
    return 0


def _read_passages(source: str) -> list[dict]:
    from vertjax.data import packs

    path = pathlib.Path(source)
    if path.is_dir():
        return packs.load_passages(path)
    return io_utils.load_jsonl(path, required_keys=("id", "doc_id", "text"))


def _run_train_data(args: argparse.Namespace) -> int:
    from vertjax.consistency import nli_data

    if args.passages:
        splits = nli_data.synthesize(
            _read_passages(args.passages),
            seed=args.seed,
            per_passage=args.per_passage,
            premise_sentences=args.premise_sentences,
            binary=args.binary,
        )
    else:
        splits = {
            split: list(
                nli_data.tfds_records(
                    args.tfds,
                    split=split,
                    data_dir=args.tfds_data_dir,
                    binary=args.binary,
                    max_examples=args.max_examples,
                )
            )
            for split in nli_data.SPLITS
        }
    if not splits["train"]:
        raise errors.DataError("no training pairs could be made from this input")
    counts = nli_data.write_splits(splits, args.out)
    print(f"wrote {counts} to {args.out}")
    return 0


def _run_citation_data(args: argparse.Namespace) -> int:
    from vertjax.consistency import citations

    examples = io_utils.load_jsonl(args.qa)
    count = io_utils.write_jsonl(args.out, citations.build_records(examples, source=args.qa))
    print(f"wrote {count} citation records to {args.out}")
    return 0
