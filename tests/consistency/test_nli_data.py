"""NLI record format, perturbations, by-document synthesis splits, WordNet antonyms, tfds loaders."""

from __future__ import annotations

import collections
import random
import re

import pytest

from vertjax import errors, io_utils
from vertjax.consistency import lexicon, metrics, nli_data

ANTONYMS = {"ascending": "descending", "descending": "ascending", "first": "last", "last": "first"}


def test_record_format_and_labels():
    record = nli_data.make_record(id="x", premise="P.", hypothesis="H.", label="c", binary=True)
    assert record["inputs"] == "hypothesis: H. premise: P."  # trimming cuts the premise only
    assert (record["label"], record["targets"]) == ("contradiction", "inconsistent")
    assert nli_data.to_binary("entailment") == "consistent"
    assert nli_data.to_binary("neutral") == "inconsistent"
    with pytest.raises(errors.DataError, match="f.jsonl:3: label 'maybe'"):
        nli_data.normalize_label("maybe", path="f.jsonl", line=3)


def test_prose_sentences_skip_code_and_tables():
    text = (
        "Sort the list in place.\nIt is stable.\n\n>>> a.sort()\n[1, 2]\n\n| a | b |\n\nDone now."
    )
    assert nli_data.prose_sentences(text) == [
        "Sort the list in place.",
        "It is stable.",
        "Done now.",
    ]
    assert nli_data.is_claim_like("The sort is stable and it runs in place.")
    assert not nli_data.is_claim_like("x = f(a) + g(b) * h(c) / 2.")


def test_perturbations_change_meaning_markers():
    rng = random.Random(0)
    assert nli_data.negate("The sort is stable.", rng) == "The sort is not stable."
    assert nli_data.negate("It can block.", rng) == "It cannot block."
    assert nli_data.unnegate("The result is not cached.", rng) == "The result is cached."
    assert nli_data.unnegate("It doesn't block.", rng) == "It does block."
    swapped = nli_data.swap_number("Use at most 3 retries.", rng)
    assert re.fullmatch(r"Use at most (\d+) retries\.", swapped).group(1) != "3"
    assert nli_data.swap_antonym("Sorted in ascending order.", rng, ANTONYMS) == (
        "Sorted in descending order."
    )
    assert (
        nli_data.swap_keyword(
            "Call os.path.join to build it.", rng, pool=["shutil.copy", "Other"], premise=""
        )
        == "Call shutil.copy to build it."
    )
    assert nli_data.negate("Nothing to see here.", rng) is None


def test_entailed_variants_start_verbatim():
    variants = dict(nli_data.entailed_variants("However, it is not stable (see below)."))
    assert variants["verbatim"] == "However, it is not stable (see below)."
    assert variants["drop_discourse_marker"] == "It is not stable (see below)."
    assert variants["drop_parenthetical"] == "However, it is not stable."
    assert variants["contraction"] == "However, it isn't stable (see below)."


def test_synthesize_is_balanced_split_by_document_and_seeded(tiny_corpus_records):
    out = nli_data.synthesize(tiny_corpus_records, seed=1, antonyms=ANTONYMS)
    assert set(out) == set(nli_data.SPLITS)
    docs = {s: {r["doc_id"] for r in rows} for s, rows in out.items()}
    assert not docs["train"] & docs["validation"] and not docs["train"] & docs["test"]
    assert not docs["validation"] & docs["test"]
    assert all(rows for rows in out.values())
    counts = collections.Counter(r["label"] for r in out["train"])
    assert counts["entailment"] == counts["neutral"] == counts["contradiction"] > 50
    for record in out["train"]:
        assert record["inputs"] == nli_data.format_input(record["premise"], record["hypothesis"])
        verbatim = record["synthesis"] == "verbatim" and not record["surface_synonyms"]
        if record["label"] == "entailment" and verbatim:
            assert record["hypothesis"] in record["premise"]
        elif record["label"] in ("contradiction", "neutral"):
            assert record["hypothesis"] not in record["premise"]
    again = nli_data.synthesize(tiny_corpus_records, seed=1, antonyms=ANTONYMS)
    assert again == out
    assert nli_data.synthesize(tiny_corpus_records, seed=2, antonyms=ANTONYMS) != out


def test_neutral_hypotheses_come_from_the_same_document(tiny_corpus_records):
    text_doc = {}
    for p in tiny_corpus_records:
        for s in nli_data.prose_sentences(p["text"]):
            text_doc.setdefault(s, set()).add(p["doc_id"])
    out = nli_data.synthesize(
        tiny_corpus_records, seed=0, antonyms=ANTONYMS, surface_paraphrase_rate=0.0
    )
    neutrals = [r for rows in out.values() for r in rows if r["label"] == "neutral"]
    others = [r for r in neutrals if r["synthesis"] == "same_document"]
    assert others and all(r["doc_id"] in text_doc[r["hypothesis"]] for r in others)
    spliced = [r for r in neutrals if r["synthesis"] != "same_document"]
    assert spliced and all(r["hypothesis"] not in r["premise"] for r in spliced)


def test_write_splits_and_the_cli(tmp_path, tiny_corpus_jsonl):
    from vertjax import cli

    assert (
        cli.main(
            [
                "consistency",
                "train-data",
                "--passages",
                str(tiny_corpus_jsonl),
                "--out",
                str(tmp_path / "nli"),
                "--binary",
            ]
        )
        == 0
    )
    rows = io_utils.load_jsonl(tmp_path / "nli" / "train.jsonl")
    assert {r["targets"] for r in rows} == {"consistent", "inconsistent"}
    assert (tmp_path / "nli" / "test.jsonl").is_file()


def test_wordnet_antonyms_from_data_files(tmp_path):
    (tmp_path / "data.adj").write_text(
        "  1 licence header line\n"
        "00001740 00 a 01 able 0 001 ! 00002098 a 0101 | having the means\n"
        "00002098 00 a 01 unable 0 001 ! 00001740 a 0101 | not having the means\n"
        "00003000 00 a 01 open 0 001 ! 00003100 a 0101 | not shut\n"
        "00003100 00 a 01 closed 0 001 ! 00003000 a 0101 | shut\n"
    )
    (tmp_path / "index.verb").write_text("open v 1 0 1 0 00000001\n")
    pairs = lexicon.wordnet_antonyms(tmp_path)
    assert pairs == {"able": "unable", "unable": "able"}  # 'open' is also a verb: skipped
    (tmp_path / "data.adv").write_text("garbage\n")
    with pytest.raises(errors.DataError, match="data.adv:1"):
        lexicon.wordnet_antonyms(tmp_path)


@pytest.mark.parametrize("name", ["anli", "multi_nli", "snli"])
def test_tfds_loaders_with_mock_data(name):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=5, policy=tfds.testing.MockPolicy.USE_CODE):
        rows = list(nli_data.tfds_records(name, split="validation", binary=False))
    assert 0 < len(rows) <= 5
    for row in rows:
        assert row["label"] in nli_data.NLI_LABELS and row["targets"] == row["label"]
        assert row["inputs"] == nli_data.format_input(row["premise"], row["hypothesis"])
        assert row["id"].startswith(f"{name}/validation/")


def test_tfds_unknown_dataset():
    with pytest.raises(errors.ConfigError, match="unknown NLI dataset"):
        list(nli_data.tfds_records("glue", split="train"))


SYNONYMS = {
    "quickly": ["rapidly"],
    "silently": ["quietly"],
    "reads": ["scans"],
    "writes": ["stores"],
    "database": ["store"],
    "server": ["host"],
    "disk": ["drive"],
    "night": ["evening"],
}


def test_synthesized_test_split_defeats_word_overlap(tiny_corpus_records):
    out = nli_data.synthesize(
        tiny_corpus_records, seed=3, antonyms=ANTONYMS, synonyms=SYNONYMS, per_passage=2
    )
    rows = out["train"] + out["test"]
    kinds = collections.Counter(r["synthesis"] for r in rows)
    for kind in ("paraphrase", "splice_unsupported", "append_unsupported", "negate"):
        assert kinds[kind] > 0, kind

    def overlap_auc(records):
        positives = [nli_data.is_positive(r["label"]) for r in records]
        scores = [metrics.lexical_overlap(r["premise"], r["hypothesis"]) for r in records]
        return metrics.roc_auc(scores, positives)

    adversarial = [r for r in rows if r["adversarial"]]
    ordinary = [r for r in rows if not r["adversarial"]]
    assert overlap_auc(adversarial) < 0.4 < 0.8 < overlap_auc(ordinary)
    paraphrases = [r for r in rows if r["synthesis"] == "paraphrase"]
    assert all(
        r["label"] == "entailment" and r["hypothesis"] not in r["premise"] for r in paraphrases
    )


def test_wordnet_synonyms_take_the_most_tagged_sense(tmp_path):
    (tmp_path / "index.noun").write_text(
        "  1 licence header line\norder n 2 1 @ 2 5 00000010 00000020\n"
    )
    (tmp_path / "index.verb").write_text("order v 1 1 @ 1 1 00000030\n")
    (tmp_path / "data.noun").write_text(
        "00000010 00 n 02 order 0 ordering 0 000 | a sorted arrangement\n"
        "00000020 00 n 02 order 0 decree 0 000 | a command\n"
    )
    (tmp_path / "data.verb").write_text("00000030 00 v 02 order 0 tell 0 000 | command\n")
    assert lexicon.wordnet_synonyms(tmp_path) == {"order": ["ordering"]}
