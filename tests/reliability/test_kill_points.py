"""kill -9 at every write step of `index build --bm25` and of a data pack build, and at sampled write
steps of a Self-Instruct job, then a rerun: the result equals an uninterrupted run and nothing the
killed run left behind survives.

Each killed run is a forked child that `os._exit`s (as SIGKILL would: no cleanup handler runs)
at its N-th `os.fsync` or `os.replace`, for every N the uninterrupted build reaches.
"""

from __future__ import annotations

import multiprocessing
import os
import pathlib

import pytest

from vertjax.data import packs
from vertjax.retrieval import encode
from vertjax.synth import kg, report, self_instruct, template_backend

# The forked children never touch JAX (a BM25 index, a data pack), whatever the parent imported.
pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")


def _count_steps(build, monkeypatch) -> int:
    calls = {"n": 0}
    for name in ("fsync", "replace"):
        real = getattr(os, name)

        def counted(*args, _real=real, **kwargs):
            calls["n"] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, counted)
    build()
    monkeypatch.undo()
    return calls["n"]


def _killed_at(step: int, build) -> None:
    def child() -> None:
        calls = {"n": 0}
        for name in ("fsync", "replace"):
            real = getattr(os, name)

            def dying(*args, _real=real, **kwargs):
                calls["n"] += 1
                if calls["n"] == step:
                    os._exit(9)
                return _real(*args, **kwargs)

            setattr(os, name, dying)
        build()
        os._exit(0)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(timeout=60)
    assert process.exitcode == 9, f"the build never reached step {step}"


def _snapshot(root: pathlib.Path, *, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def test_index_build_killed_at_every_step_then_rerun(tmp_path, tiny_corpus_jsonl, monkeypatch):
    def build(out):
        return lambda: encode.build_index(
            passages=tiny_corpus_jsonl, out=out, bm25=True, progress=False
        )

    steps = _count_steps(build(tmp_path / "clean"), monkeypatch)
    assert steps >= 4
    clean = _snapshot(tmp_path / "clean")
    for step in range(1, steps + 1):
        out = tmp_path / f"killed_{step}"
        _killed_at(step, build(out))
        assert build(out)()["status"] in ("built", "already built")
        hidden = [p.name for p in out.rglob(".*")]
        assert not hidden, f"step {step}: left {hidden}"
        assert _snapshot(out) == clean, f"step {step}"


def test_data_build_killed_at_every_step_then_rerun(tmp_path, monkeypatch):
    source = tmp_path / "docs"
    source.mkdir()
    for i in range(5):
        text = " ".join(f"d{i}w{k}" for k in range(120))
        (source / f"doc{i}.md").write_text(f"# Doc {i}\n\n{text}", encoding="utf-8")

    def build(out):
        return lambda: packs.build_pack("folder", out, source=source, max_tokens=40)

    steps = _count_steps(build(tmp_path / "clean"), monkeypatch)
    assert steps >= 3
    clean = _snapshot(tmp_path / "clean", skip=(packs.MANIFEST,))
    for step in range(1, steps + 1):
        out = tmp_path / f"killed_{step}" / "pack"
        out.parent.mkdir()
        _killed_at(step, build(out))
        build(out)()
        assert sorted(p.name for p in out.parent.iterdir()) == ["pack"], f"step {step}"
        assert _snapshot(out, skip=(packs.MANIFEST,)) == clean, f"step {step}"
        packs.verify_pack(out)


def test_self_instruct_killed_at_sampled_steps_then_rerun(tmp_path, monkeypatch):
    seeds = self_instruct.load_seed_tasks()
    generator = template_backend.TemplateGenerator(kg.extract_triples(["math", "json"]))
    config = self_instruct.SelfInstructConfig(target=16, max_rounds=12, prompts_per_round=2)

    def run(out):
        return lambda: self_instruct.run_self_instruct(seeds, generator, out, config=config)

    steps = _count_steps(run(tmp_path / "clean"), monkeypatch)
    assert steps >= 16  # one fsync per kept or rejected record, at least
    clean = _snapshot(tmp_path / "clean")
    # Every record's fsync is a kill point; eight of them, spread over the job, keep the test short.
    for step in sorted(
        {1, 2, steps // 4, steps // 2, steps // 2 + 1, 3 * steps // 4, steps - 1, steps}
    ):
        out = tmp_path / f"killed_{step}"
        _killed_at(step, run(out))
        summary = run(out)()
        assert summary["kept"] >= config.target, f"step {step}"
        for name in (report.KEPT_FILE, report.REJECTED_FILE):
            assert (out / name).read_bytes() == clean[name], f"step {step}: {name}"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VERTJAX_CACHE", str(tmp_path / "cache"))
