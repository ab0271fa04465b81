"""The job report, refusal records, seqio registration and the `vertjax synth` CLI."""

from __future__ import annotations

import json

import pytest

from vertjax import cli, io_utils
from vertjax.synth import refusals, report


def _record(instruction, output="out", reason=None, source="template"):
    meta = {"job": "self-instruct", "position": instruction, "is_classification": False}
    if reason:
        meta["reason"] = reason
    return report.make_record(
        instruction=instruction, input_="", output=output, source=source, meta=meta
    )


@pytest.mark.parametrize(
    ("instruction", "pair"),
    [
        ("Write a function that sorts a list.", ("write", "function")),
        ("What does `math.gcd` do?", ("what", "<code>")),
        ("In which module is `json.dumps` defined?", ("which", "module")),
        ("Explain the GIL.", ("explain", "gil")),
        ("", (None, None)),
    ],
)
def test_verb_noun_heuristic(instruction, pair):
    assert report.verb_noun(instruction) == pair


def test_report_counts_and_files(tmp_path):
    kept = [_record("Write a function that sorts a list."), _record("Explain what a list is.")]
    rejected = [
        _record("Draw a map.", reason="banned_keyword"),
        _record("x", reason="too_short"),
        _record("Draw a graph.", reason="banned_keyword"),
    ]
    io_utils.write_jsonl(tmp_path / report.KEPT_FILE, kept)
    io_utils.write_jsonl(tmp_path / report.REJECTED_FILE, rejected)
    summary = report.write_report(tmp_path)
    assert (summary["generated"], summary["kept"], summary["rejected"]) == (5, 2, 3)
    assert summary["rejected_by_reason"] == {"banned_keyword": 2, "too_short": 1}
    assert summary["instruction_words"] == [7, 5]
    assert summary["unique_verb_noun_pairs"] == 2
    nn = report.summarize(kept, [])["rouge_nn"]
    assert summary["rouge_nn_mean"] == pytest.approx(sum(nn) / 2) and 0 < nn[0] < 1
    md = (tmp_path / report.REPORT_MD).read_text()
    assert "| rejected: banned_keyword | 2 |" in md and "| kept | 2 |" in md
    assert (tmp_path / report.REPORT_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_refusal_records():
    records = refusals.refusal_records()
    assert len(records) >= 50 and len({r["id"] for r in records}) == len(records)
    assert {r["source"] for r in records} == {"refusal"}
    assert (
        len({r["output"] for r in records}) == 1
        and "Python standard library" in records[0]["output"]
    )
    assert refusals.format_inputs("Sort.", "[2, 1]") == "Instruction: Sort.\nInput: [2, 1]"
    assert refusals.format_inputs("Sort.") == "Instruction: Sort."


def test_register_instruction_task_yields_seq2seq_examples(tmp_path, tiny_vocab):
    path = tmp_path / "refusals.jsonl"
    io_utils.write_jsonl(path, refusals.refusal_records()[:4])
    task = refusals.register_instruction_task(
        "synth_test_refusals",
        split_files={"train": [path]},
        vocab_path=tiny_vocab,
        work_dir=tmp_path,
    )
    example = next(iter(task.get_dataset(split="train", shuffle=False, sequence_length=None)))
    vocab = task.output_features["inputs"].vocabulary
    # the tiny test vocab has no capitals or ':' (they decode as unknowns), hence the fragments
    inputs = vocab.decode(example["inputs"].numpy().tolist())
    assert "nstruction" in inputs and "boil an egg to get a soft yolk" in inputs
    assert int(example["targets"].numpy()[-1]) == 1  # eos


def test_cli_end_to_end_resumes_and_reports(tmp_path, capsys):
    triples = tmp_path / "kg.jsonl"
    assert cli.main(["synth", "kg", "--out", str(triples), "--modules", "json,heapq"]) == 0
    assert json.loads(capsys.readouterr().out)["triples"] > 50
    out = tmp_path / "si"
    args = ["synth", "self-instruct", "--out", str(out), "--target", "8", "--triples", str(triples)]
    assert cli.main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kept"] == 8 and (out / "report.md").is_file()
    before = (out / report.KEPT_FILE).read_text()
    assert cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["rounds_run"] == 0
    assert (out / report.KEPT_FILE).read_text() == before
    assert (
        cli.main(
            [
                "synth",
                "self-kg",
                "--triples",
                str(triples),
                "--out",
                str(tmp_path / "kg_job"),
                "--max_entities",
                "3",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["kept"] > 0


def test_cli_reports_backend_errors_in_one_line(tmp_path, capsys):
    code = cli.main(
        [
            "synth",
            "self-qa",
            "--passages",
            str(tmp_path / "missing.jsonl"),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2 and "missing.jsonl: file not found" in capsys.readouterr().err
    passages = tmp_path / "p.jsonl"
    io_utils.write_jsonl(passages, [{"id": "a", "text": "A list is a mutable sequence."}])
    code = cli.main(
        [
            "synth",
            "self-qa",
            "--passages",
            str(passages),
            "--out",
            str(tmp_path / "o"),
            "--backend",
            "openai",
            "--base_url",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--max_retries",
            "0",
            "--timeout",
            "0.5",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "is the server running" in err
