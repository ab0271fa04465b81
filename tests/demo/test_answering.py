"""The demo's answering stage over a tiny pack: cited answers, a refusal, refusal metrics."""

from __future__ import annotations

from conftest import tiny_corpus_records, write_tiny_pack

from vertjax.demo import answering


def _question(i: int) -> str:
    """A question made of the words of passage i's first sentence (BM25 finds that passage)."""
    first = tiny_corpus_records()[i]["text"].split(". ")[0]
    return f"Which part {first.lower()}?"


def test_stage_answers_refuses_and_measures_refusal(tmp_path):
    result = answering.run(
        out_dir=tmp_path / "demo",
        pack_dir=write_tiny_pack(tmp_path / "pack"),
        questions=[_question(12)],
        out_of_domain_question="Which composer wrote the Four Seasons?",
    )
    assert "## Answering system" in result["markdown"]
    assert result["answers"][-1]["refused"] and not result["answers"][0]["refused"]
    for key in ("precision", "recall"):
        assert 0.0 <= result["refusal"][key] <= 1.0
    assert (tmp_path / "demo" / "answers.md").is_file()
