"""Tests of vertjax.data.tasks: registration (idempotent, validated, from gin) and mixture rates."""

from __future__ import annotations

import json
import uuid

import gin
import pytest
import seqio

from vertjax import errors
from vertjax.data import tasks, vocab


def _name(prefix: str) -> str:
    """A fresh registry name: seqio's registries are process-global."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def _write_pairs(path, target: str, n: int = 100):
    records = [{"id": str(i), "inputs": f"question {i}", "targets": target} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_registration_is_idempotent_and_conflicts_are_errors(tiny_corpus_jsonl, tiny_vocab):
    name = _name("sc")
    files = {"train": str(tiny_corpus_jsonl)}
    task = tasks.register_jsonl_task(
        name, split_files=files, vocab_path=tiny_vocab, kind="span_corruption"
    )
    assert isinstance(task, seqio.Task) and seqio.get_mixture_or_task(name) is task
    again = tasks.register_jsonl_task(
        name, split_files=files, vocab_path=tiny_vocab.parent, kind="span_corruption"
    )
    assert again is task
    with pytest.raises(errors.ConfigError, match="different spec"):
        tasks.register_jsonl_task(name, split_files=files, vocab_path=tiny_vocab, kind="prefix_lm")

    mix = _name("mix")
    mixture = tasks.register_mixture(mix, rates={name: 1.0})
    assert tasks.register_mixture(mix, rates={name: 1}) is mixture
    with pytest.raises(errors.ConfigError, match="different rates"):
        tasks.register_mixture(mix, rates={name: 2.0})


def test_bad_registrations(tiny_corpus_jsonl, tiny_vocab, tmp_path):
    files = {"train": str(tiny_corpus_jsonl)}
    with pytest.raises(errors.ConfigError, match="unknown kind 'mlm'"):
        tasks.register_jsonl_task(_name("t"), split_files=files, vocab_path=tiny_vocab, kind="mlm")
    with pytest.raises(errors.ConfigError, match="may only hold"):
        tasks.register_jsonl_task(
            "bad name!", split_files=files, vocab_path=tiny_vocab, kind="seq2seq"
        )
    with pytest.raises(errors.DataError, match=r"nope\.jsonl: task '.*', split 'train': file not"):
        tasks.register_jsonl_task(
            _name("t"), split_files={"train": tmp_path / "nope.jsonl"},
            vocab_path=tiny_vocab, kind="seq2seq",
        )  # fmt: skip
    with pytest.raises(errors.DataError, match="SentencePiece model not found"):
        tasks.register_jsonl_task(
            _name("t"), split_files=files, vocab_path=tmp_path, kind="seq2seq"
        )
    with pytest.raises(errors.ConfigError, match="unknown task 'ghost'"):
        tasks.register_mixture(_name("m"), rates={"ghost": 1.0})
    known = tasks.register_jsonl_task(
        _name("t"), split_files=files, vocab_path=tiny_vocab, kind="prefix_lm"
    ).name
    for rate in (0, -1.0, float("nan"), "1"):
        with pytest.raises(errors.ConfigError, match="positive number"):
            tasks.register_mixture(_name("m"), rates={known: rate})


def test_bad_records_fail_when_the_dataset_is_built(tmp_path, tiny_vocab):
    path = _write_pairs(tmp_path / "pairs.jsonl", "ok", n=3)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "x", "inputs": "no targets"}) + "\n")
    task = tasks.register_jsonl_task(
        _name("bad"), split_files={"train": str(path)}, vocab_path=tiny_vocab, kind="seq2seq"
    )
    with pytest.raises(errors.DataError, match=r"pairs\.jsonl:4: missing key\(s\) targets"):
        task.get_dataset({"inputs": 8, "targets": 8}, split="train", seed=0)


def test_seq2seq_task_tokenizes_and_appends_eos(tmp_path, tiny_vocab):
    name = _name("s2s")
    path = _write_pairs(tmp_path / "pairs.jsonl", "the final answer")
    task = tasks.register_jsonl_task(
        name, split_files={"validation": str(path)}, vocab_path=tiny_vocab, kind="seq2seq"
    )
    v = vocab.load_vocab(tiny_vocab)
    ds = task.get_dataset({"inputs": 16, "targets": 16}, split="validation", shuffle=False, seed=0)
    examples = list(ds.as_numpy_iterator())
    assert len(examples) == 100
    assert examples[3]["inputs"].tolist() == v.encode("question 3") + [1]
    assert examples[3]["targets"].tolist() == v.encode("the final answer") + [1]


def test_mixture_rates_are_respected(tmp_path, tiny_vocab):
    a, b = _name("alpha"), _name("beta")
    for name, target in ((a, "alpha"), (b, "beta")):
        path = _write_pairs(tmp_path / f"{target}.jsonl", target)
        tasks.register_jsonl_task(
            name, split_files={"train": str(path)}, vocab_path=tiny_vocab, kind="seq2seq"
        )
    mix = _name("mix")
    tasks.register_mixture(mix, rates={a: 1.0, b: 3.0})
    alpha_ids = vocab.load_vocab(tiny_vocab).encode("alpha") + [1]
    ds = seqio.get_mixture_or_task(mix).get_dataset(
        {"inputs": 16, "targets": 16}, split="train", shuffle=True, seed=5, num_epochs=None
    )
    targets = [ex["targets"].tolist() for ex in ds.take(1000).as_numpy_iterator()]
    alpha_share = sum(t == alpha_ids for t in targets) / len(targets)
    assert alpha_share == pytest.approx(0.25, abs=0.04)


def test_register_from_gin(tmp_path, tiny_corpus_jsonl, tiny_vocab):
    sc, s2s, mix = _name("gin_sc"), _name("gin_s2s"), _name("gin_mix")
    pairs = _write_pairs(tmp_path / "pairs.jsonl", "yes")
    gin.clear_config()
    try:
        gin.parse_config(f"""
            import vertjax.data.tasks
            vertjax.data.tasks.register_from_config.vocab_path = '{tiny_vocab.parent}'
            vertjax.data.tasks.register_from_config.tasks = {{
                '{sc}': {{'kind': 'span_corruption', 'split_files': {{'train': '{tiny_corpus_jsonl}'}}}},
                '{s2s}': {{'kind': 'seq2seq', 'split_files': {{'train': '{pairs}'}}}},
            }}
            vertjax.data.tasks.register_from_config.mixtures = {{'{mix}': {{'{sc}': 0.7, '{s2s}': 0.3}}}}
        """)  # fmt: skip
        assert tasks.register_from_config() == [sc, s2s, mix]
        assert tasks.register_from_config() == [sc, s2s, mix]  # idempotent
    finally:
        gin.clear_config()
    mixture = seqio.get_mixture_or_task(mix)
    assert sorted(t.name for t in mixture.tasks) == sorted([sc, s2s])
    with pytest.raises(errors.ConfigError, match="no vocab_path"):
        tasks.register_from_config(tasks={_name("t"): {"kind": "seq2seq", "split_files": {}}})
    with pytest.raises(errors.ConfigError, match="unexpected keyword argument 'colour'"):
        tasks.register_from_config(
            vocab_path=str(tiny_vocab), tasks={_name("t"): {"kind": "seq2seq", "colour": 1}}
        )
