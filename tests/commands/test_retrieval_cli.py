"""`vertjax index build`, `vertjax retrieve` and `vertjax eval retrieval` end to end (tiny)."""

from __future__ import annotations

import json

from conftest import make_retriever

from vertjax import cli, io_utils


def test_build_retrieve_and_evaluate(tmp_path, tiny_corpus_jsonl, tiny_vocab, capsys):
    index = str(tmp_path / "index")
    argv = ["index", "build", "--passages", str(tiny_corpus_jsonl), "--out", index]
    argv += ["--retriever", str(make_retriever(tmp_path / "gtr")), "--vocab", str(tiny_vocab)]
    assert cli.main([*argv, "--method", "brute", "--bm25", "--no_progress"]) == 0
    assert json.loads(capsys.readouterr().out)["count"] == 200

    question = "The database reads every row"
    argv = ["retrieve", "--index", index, "--question", question, "-k", "3"]
    assert cli.main([*argv, "--retriever", "hybrid", "--json"]) == 0
    hits = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert set(hits[0]) == {"rank", "id", "title", "score", "text", "doc_id", "source", "url"}
    assert cli.main([*argv, "--retriever", "bm25"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"# {question}") and "doc" in printed

    records = io_utils.load_jsonl(tiny_corpus_jsonl)
    questions = tmp_path / "q.jsonl"
    io_utils.write_jsonl(
        questions,
        [
            {"id": "a", "question": records[3]["text"][:80], "positive_ids": [records[3]["id"]]},
            {
                "id": "b",
                "question": "Who reads every row?",
                "answers": ["every row"],
                "history": ["x"],
            },
        ],
    )
    argv = ["eval", "retrieval", "--questions", str(questions), "--index", index]
    assert cli.main([*argv, "--keywords", "--out", str(tmp_path / "eval")]) == 0
    table = (tmp_path / "eval" / "retrieval_metrics.md").read_text()
    for system in ("bm25", "dense", "hybrid", "bm25 +rewrite", "dense +keywords"):
        assert f"| {system} |" in table
    assert (tmp_path / "eval" / "precision_recall_vs_k.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "eval" / "retrieval_metrics.json").read_text())
    assert saved["metrics"]["bm25"]["recall@100"] == 1.0


def test_corrupted_index_is_one_clear_line(tmp_path, tiny_corpus_jsonl, capsys):
    index = tmp_path / "index"
    argv = ["index", "build", "--passages", str(tiny_corpus_jsonl), "--out", str(index), "--bm25"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    argv = ["retrieve", "--index", str(index), "--question", "row"]
    assert cli.main(argv) == 2  # no dense index in a BM25-only build
    assert "retriever.json: missing" in capsys.readouterr().err
    (index / "bm25" / "manifest.json").write_text("{not json")
    assert cli.main([*argv, "--retriever", "bm25"]) == 2
    err = capsys.readouterr().err.strip()
    assert "corrupted manifest" in err and len(err.splitlines()) == 1


def test_index_build_takes_scann_params_from_gin_and_flags(
    tmp_path, tiny_corpus_jsonl, tiny_vocab, capsys
):
    from vertjax.retrieval import index as index_lib

    argv = ["index", "build", "--passages", str(tiny_corpus_jsonl), "--no_progress"]
    argv += ["--retriever", str(make_retriever(tmp_path / "gtr")), "--vocab", str(tiny_vocab)]
    argv += ["--gin_file=index/scann.gin", "--gin.encode.build_index.passage_length=32"]
    gin_params = "{'brute_force': False, 'num_leaves': 8, 'leaves_to_search': 3}"
    out = tmp_path / "gin"
    assert cli.main([*argv, f"--gin.SCANN_PARAMS={gin_params}", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["passage_length"] == 32 and summary["method"] == "scann"
    params = index_lib.read_manifest(out)["params"]
    assert not params["brute_force"] and (params["num_leaves"], params["leaves_to_search"]) == (
        8,
        3,
    )
    assert "'num_leaves': 8" in (out / "config.gin").read_text()
    # A flag wins over gin; --scann adds to the gin-bound params instead of replacing them.
    both = [f"--gin.SCANN_PARAMS={gin_params}", "--scann", "leaves_to_search=5", "--out"]
    assert cli.main([*argv, *both, str(tmp_path / "both"), "--passage_length", "24"]) == 0
    assert json.loads(capsys.readouterr().out)["passage_length"] == 24
    params = index_lib.read_manifest(tmp_path / "both")["params"]
    assert (params["num_leaves"], params["leaves_to_search"]) == (8, 5)
    # Without gin the size-based defaults apply: 200 passages are searched exhaustively.
    plain = ["index", "build", "--passages", str(tiny_corpus_jsonl), "--no_progress"]
    plain += ["--retriever", str(tmp_path / "gtr"), "--vocab", str(tiny_vocab)]
    assert cli.main([*plain, "--out", str(tmp_path / "plain")]) == 0
    assert index_lib.read_manifest(tmp_path / "plain")["params"]["brute_force"] is True
    assert not (tmp_path / "plain" / "config.gin").exists()
    assert json.loads(capsys.readouterr().out)["passage_length"] == 256
    bad = [*argv, "--gin.SCANN_PARAMS={'leaves': 3}", "--out", str(tmp_path / "bad")]
    assert cli.main(bad) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown ScaNN params ['leaves']" in err


def _folder_pack(tmp_path):
    from vertjax.data import packs

    source = tmp_path / "docs"
    source.mkdir()
    for i in range(6):
        words = " ".join(f"w{i}_{k}" for k in range(60))
        (source / f"doc{i}.md").write_text(f"# Doc {i}\n\nDoc {i} says {words}.", encoding="utf-8")
    out = tmp_path / "pack"
    packs.build_pack("folder", out, source=source, max_tokens=40, cache=tmp_path / "cache")
    return out


def test_index_build_refuses_an_out_that_is_a_data_pack(tmp_path, capsys):
    pack = _folder_pack(tmp_path)
    before = {p.name: p.read_bytes() for p in pack.iterdir()}
    for passages in (pack, pack / "train.jsonl"):
        argv = ["index", "build", "--passages", str(passages), "--out", str(pack), "--bm25"]
        assert cli.main(argv) == 2
        assert "not part of a vertjax index" in capsys.readouterr().err
        assert {p.name: p.read_bytes() for p in pack.iterdir()} == before


def test_index_build_reruns_into_its_own_folder(tmp_path, tiny_corpus_jsonl, capsys):
    index = tmp_path / "index"
    argv = ["index", "build", "--passages", str(tiny_corpus_jsonl), "--out", str(index), "--bm25"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "already built"
    (index / "notes.txt").write_text("mine")
    assert cli.main(argv) == 2
    assert (index / "notes.txt").read_text() == "mine"


def test_index_keeps_the_pack_domain_and_every_hit_cites_its_file(tmp_path, capsys):
    """`index build` copies the pack's domain into the index (updated on an "already built"
    rerun) and keeps each passage's doc_id and relative source path for citations."""
    from vertjax.data import packs
    from vertjax.retrieval.index_dir import IndexDir

    pack = _folder_pack(tmp_path)
    index = tmp_path / "index"
    argv = ["index", "build", "--passages", str(pack), "--out", str(index), "--bm25"]
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["domain"]["name"] == "docs"
    assert IndexDir(index).domain() == packs.read_manifest(pack)["domain"]

    argv_retrieve = ["retrieve", "--index", str(index), "--question", "w3_7 w3_8", "-k", "2"]
    assert cli.main([*argv_retrieve, "--retriever", "bm25", "--json"]) == 0
    top = json.loads(capsys.readouterr().out.splitlines()[0])
    assert (top["doc_id"], top["source"]) == ("doc3.md", "doc3.md")
    assert cli.main([*argv_retrieve, "--retriever", "bm25"]) == 0
    assert "Doc 3 (doc3.md)" in capsys.readouterr().out
    assert str(tmp_path) not in (index / "passages.jsonl").read_text()

    manifest = json.loads((pack / "manifest.json").read_text())
    manifest["domain"] = {"name": "our manual", "description": "renamed"}
    (pack / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "already built"
    assert IndexDir(index).domain()["name"] == "our manual"


def test_an_index_of_a_jsonl_file_has_no_domain(tmp_path, tiny_corpus_jsonl, capsys):
    from vertjax.retrieval.index_dir import IndexDir

    index = tmp_path / "index"
    argv = ["index", "build", "--passages", str(tiny_corpus_jsonl), "--out", str(index), "--bm25"]
    assert cli.main(argv) == 0
    assert IndexDir(index).domain() is None
