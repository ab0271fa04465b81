"""The demo's instruction-synthesis stage: the template backend's jobs, run as `vertjax synth`."""

from __future__ import annotations

import json
import pathlib

from vertjax import errors
from vertjax.demo.state import DemoState, say


def stage_synth(state: DemoState) -> None:
    """Template-backend instruction synthesis: KG, Self-Instruct, Self-QA, Self-KG, refusals."""
    from vertjax import cli  # the jobs run exactly as a user types them

    if "synth" in state.results:
        return
    synth = state.out / "synth"
    domain_dir = state.results["data"]["domain"]["dir"]
    jobs = {
        "kg": ["synth", "kg", "--out", str(synth / "kg.jsonl")],
        "self_instruct": [
            "synth",
            "self-instruct",
            "--out",
            str(synth / "self_instruct"),
            "--target",
            "100",
        ],
        "self_qa": [
            "synth",
            "self-qa",
            "--passages",
            domain_dir,
            "--out",
            str(synth / "self_qa"),
            "--max-passages",
            "300",
        ],
        "self_kg": [
            "synth",
            "self-kg",
            "--triples",
            str(synth / "kg.jsonl"),
            "--out",
            str(synth / "self_kg"),
            "--max-entities",
            "100",
        ],
        "refusals": ["synth", "refusals", "--out", str(synth / "refusals.jsonl")],
    }
    summary = {}
    for name, argv in jobs.items():
        say(f"synthesis: {name}")
        if cli.main(argv) != 0:
            raise errors.VertjaxError(f"demo: `vertjax {' '.join(argv)}` failed")
        report = pathlib.Path(argv[argv.index("--out") + 1]) / "report.json"
        if report.is_file():
            full = json.loads(report.read_text(encoding="utf-8"))
            keys = ("generated", "kept", "rejected", "rouge_nn_mean", "unique_verb_noun_pairs")
            summary[name] = {k: full.get(k) for k in keys}
    state.results["synth"] = {"dir": str(synth), "reports": summary}
    state.save()
