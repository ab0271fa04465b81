"""Self-QA with a real local LLM vs the template backend, on the same passages (issue 18.2).

    .venv/bin/python experiments/llm_synthesis/run.py [--out runs/llm_synthesis] [--passages 10]

Builds the embedded python-stdlib pack (once), picks its first N passages the template backend can
ask about (a documented name or an "X is a Y." definition: the template asks nothing of most
passages, so the first N alone would compare the LLM with nothing), starts the local llama.cpp
server (`make llm`), runs `vertjax synth self-qa` on them with `--backend template` and with
`--backend openai` pointed at the server, and writes `OUT/summary.json` and `OUT/summary.md`: kept,
rejected by reason, diversity, ROUGE-L and wall time side by side. Every job resumes on a rerun.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
import time

from vertjax import io_utils
from vertjax.generators import local_server
from vertjax.synth import self_qa

VERTJAX = [sys.executable, "-m", "vertjax"]
FIELDS = ("generated", "kept", "rejected", "unique_verbs", "unique_verb_noun_pairs")


def _pick_passages(pack: pathlib.Path, out: pathlib.Path, n: int) -> pathlib.Path:
    """Writes the pack's first `n` passages with at least one template question to `out`."""
    picked = []
    for passage in self_qa.load_passages(pack):
        if self_qa.template_questions(passage.get("title", ""), passage["text"], count=1):
            picked.append({k: passage[k] for k in ("id", "title", "text") if k in passage})
        if len(picked) == n:
            break
    io_utils.write_jsonl(out, picked)
    return out


def _self_qa(out: pathlib.Path, passages: pathlib.Path, args, backend: list[str]) -> float:
    """Runs one Self-QA job; its wall time in seconds."""
    start = time.monotonic()
    subprocess.run(
        [*VERTJAX, "synth", "self-qa", "--passages", str(passages), "--out", str(out)]
        + ["--questions_per_passage", str(args.questions_per_passage)]
        + ["--seed", "0", *backend],
        check=True,
    )
    return time.monotonic() - start


def _row(job: pathlib.Path, seconds: float) -> dict:
    report = json.loads((job / "report.json").read_text())
    row = {k: report[k] for k in FIELDS}
    row["rejected_by_reason"] = report["rejected_by_reason"]
    row["rouge_nn_mean"] = report["rouge_nn_mean"]
    row["seconds"] = round(seconds, 1)
    kept = job / "kept.jsonl"
    records = list(io_utils.read_jsonl(kept)) if kept.is_file() else []
    row["kept_examples"] = [{"question": r["instruction"], "answer": r["output"]} for r in records]
    return row


def _markdown(rows: dict[str, dict]) -> str:
    names = list(rows)
    lines = ["| | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for field in (*FIELDS, "rouge_nn_mean", "seconds"):
        values = [rows[n][field] for n in names]
        cells = [
            f"{v:.3f}" if isinstance(v, float) and field != "seconds" else str(v) for v in values
        ]
        lines.append(f"| {field} | " + " | ".join(cells) + " |")
    reasons = sorted({r for n in names for r in rows[n]["rejected_by_reason"]})
    for reason in reasons:
        cells = [str(rows[n]["rejected_by_reason"].get(reason, 0)) for n in names]
        lines.append(f"| rejected: {reason} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/llm_synthesis", help="output folder")
    parser.add_argument("--passages", type=int, default=10, help="how many passages to use")
    parser.add_argument("--questions_per_passage", type=int, default=2, help="Self-QA questions")
    parser.add_argument("--model", default=None, help=".gguf file (default: SmolLM2-135M)")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    pack = out / "pack"
    if not (pack / "manifest.json").is_file():
        subprocess.run([*VERTJAX, "data", "build", "python-stdlib", "--out", str(pack)], check=True)

    passages = _pick_passages(pack, out / "passages.jsonl", args.passages)
    rows = {"template": _row(out / "template", _self_qa(out / "template", passages, args, []))}
    with local_server.LocalLLMServer(args.model, log_path=out / "server.log") as server:
        llm = ["--backend", "openai", "--base_url", server.base_url, "--model", server.model_name]
        seconds = _self_qa(out / "llm", passages, args, [*llm, "--concurrency", "1"])
        rows[f"openai ({server.model_name})"] = _row(out / "llm", seconds)
    summary = {"passages": args.passages, "questions_per_passage": args.questions_per_passage}
    summary["backends"] = rows
    io_utils.atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    io_utils.atomic_write_text(out / "summary.md", _markdown(rows))
    print(_markdown(rows))


if __name__ == "__main__":
    main()
