"""Keyword extraction (lexical, few-shot prompt, seq2seq data) and context rewriting."""

from __future__ import annotations

import json

import pytest

from vertjax import errors, io_utils
from vertjax.retrieval import keywords, rewrite
from vertjax.retrieval.types import Hit

CORPUS = [
    "The json module serializes objects. Use json.dumps for strings.",
    "The socket module opens network connections.",
    "Every module has a docstring and the module name.",
]


def test_lexical_keywords_keep_rare_words_and_code_names():
    extract = keywords.LexicalKeywords.from_texts(CORPUS, limit=2)
    (kws,) = extract(["How do I use json.dumps to serialize the module?"])
    assert kws == ["json.dumps", "serialize"]  # "module" is in every passage: lowest IDF
    assert extract(["what is it?"]) == [[]]


def test_few_shot_prompt_and_parsing():
    prompts = []

    def generate(batch):
        prompts.extend(batch)
        return ["socket, timeout; connection\n\nQuestion: ignored", ""]

    extract = keywords.FewShotKeywords(generate)
    assert extract(["Why does my download hang?", "?"]) == [
        ["socket", "timeout", "connection"],
        [],
    ]
    assert prompts[0].endswith("Question: Why does my download hang?\nKeywords:")
    assert prompts[0].count("Keywords:") == len(keywords.DEFAULT_EXAMPLES) + 1
    with pytest.raises(errors.BackendError):
        keywords.FewShotKeywords(lambda b: [])(["q"])


class _Recorder:
    def __init__(self):
        self.asked = []

    def search(self, questions, k):
        self.asked.extend(questions)
        return [[Hit(1, "p", "", 1.0, "")] for _ in questions]


def test_keyword_retriever_appends_or_replaces():
    extract = keywords.LexicalKeywords.from_texts(CORPUS, limit=2)
    inner = _Recorder()
    keywords.KeywordRetriever(inner, extract).search(["open a socket", "it?"], 3)
    keywords.KeywordRetriever(inner, extract, mode="replace").search(["open a socket"], 3)
    assert inner.asked == ["open a socket open socket", "it?", "open socket"]


def test_keyword_records_and_task_files(tmp_path, tiny_vocab):
    records = keywords.keyword_records(
        ["How do json.dumps work?", "it?"], keywords.LexicalKeywords.from_texts(CORPUS)
    )
    assert records == [{"question": "How do json.dumps work?", "keywords": "json.dumps"}]
    source = tmp_path / "kw.jsonl"
    io_utils.write_jsonl(source, [{"question": "q1?", "keywords": ["a", "b"]}])
    task = keywords.register_keyword_task(
        "test_keywords_task",
        split_files={"train": source},
        vocab_path=tiny_vocab,
        work_dir=tmp_path / "work",
    )
    assert task.name == "test_keywords_task"
    (converted,) = io_utils.load_jsonl(tmp_path / "work" / "test_keywords_task.train.jsonl")
    assert converted == {"inputs": "keywords: q1?", "targets": "a, b"}


@pytest.mark.parametrize(
    "history, question, expected",
    [
        (
            ["I am planning a trip to Beijing."],
            "What sights are there?",
            "What sights are there in Beijing?",
        ),
        (["What are the symptoms of autism?"], "Is it hereditary?", "Is autism hereditary?"),
        (["What does `json.dumps` do?"], "What does it return?", "What does json.dumps return?"),
        (
            ["Tell me about pathlib.Path"],
            "What are its methods?",
            "What are pathlib.Path's methods?",
        ),
        (
            ["What does `json.dumps` do?"],
            "What does `json.loads` do?",
            "What does `json.loads` do?",
        ),
        ([], "What is it?", "What is it?"),
    ],
)
def test_rule_rewriter(history, question, expected):
    assert rewrite.RuleRewriter().rewrite(history, question) == expected


def test_rewrite_records_name_bad_lines(tmp_path):
    path = tmp_path / "rw.jsonl"
    io_utils.write_jsonl(
        path,
        [
            {
                "history": ["Tell me about Beijing"],
                "question": "Sights?",
                "rewrite": "Sights in Beijing?",
            }
        ],
    )
    assert rewrite.rewrite_records(path) == [
        {
            "inputs": "history: Tell me about Beijing question: Sights?",
            "targets": "Sights in Beijing?",
        }
    ]
    with path.open("a") as f:
        f.write(json.dumps({"history": [1], "question": "q", "rewrite": "r"}) + "\n")
    with pytest.raises(errors.DataError, match=r"rw\.jsonl:2"):
        rewrite.rewrite_records(path)
