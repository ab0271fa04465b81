"""The demo's `llm_synthesis` stage on the least demo state it needs (issue 18.2).

    .venv/bin/python experiments/llm_synthesis/run_demo_stage.py [--out runs/llm_synthesis_stage]

`vertjax demo --llm` runs the stage after the whole demo (pretraining, NLI, ...); this builds only
what the stage reads (the embedded python-stdlib pack and the stdlib KG triples, recorded in
`OUT/results.json` as the data and synthesis stages would) and runs the stage with the demo's
sizes: Self-Instruct, Self-QA, Self-KG and generated refusals with the template backend and with
the local LLM (`make llm`); `--passages 10` etc. override a size (`llm_synthesis.Sizes`). Its
section is `OUT/report.md`; each job folder under `OUT/llm_synthesis/<backend>/<job>/` holds
every kept and rejected record. Reruns resume.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import subprocess
import sys

from vertjax.demo import llm_synthesis, report
from vertjax.demo.state import DemoConfig, DemoState

VERTJAX = [sys.executable, "-m", "vertjax"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/llm_synthesis_stage", help="demo output folder")
    for field in dataclasses.fields(llm_synthesis.Sizes):
        parser.add_argument(f"--{field.name}", type=int, default=field.default, help="size")
    args = parser.parse_args()
    sizes = llm_synthesis.Sizes(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(llm_synthesis.Sizes)}
    )
    out = pathlib.Path(args.out)
    pack, triples = out / "data" / "python-stdlib", out / "synth" / "kg.jsonl"
    if not (pack / "manifest.json").is_file():
        subprocess.run([*VERTJAX, "data", "build", "python-stdlib", "--out", str(pack)], check=True)
    if not triples.is_file():
        subprocess.run([*VERTJAX, "synth", "kg", "--out", str(triples)], check=True)
    path = out / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    counts = json.loads((pack / "manifest.json").read_text())["counts"]
    results.setdefault(
        "data", {"domain": {"pack": "python-stdlib", "dir": str(pack), "counts": counts}}
    )
    results.setdefault("synth", {"dir": str(triples.parent), "reports": {}})
    state = DemoState(config=DemoConfig(out=out, llm=True), results=results)
    llm_synthesis.stage_llm_synthesis(state, sizes=sizes)
    report.write_report(state)


if __name__ == "__main__":
    main()
