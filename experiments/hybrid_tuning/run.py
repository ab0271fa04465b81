"""Hybrid tuning (XuanYuan 2.0) vs two-stage tuning, from one general model, at equal tokens.

    python experiments/hybrid_tuning/run.py --gin_file=experiments/hybrid_tuning/tiny.gin \
        --out runs/hybrid_tuning/tiny [--gin.HybridSettings.stage1_steps=100 ...]

Stages, each skipped on a rerun once done (a killed training run resumes from its checkpoint):
data packs -> SentencePiece vocab -> instruction data (`instructions.py`) -> seqio tasks ->
`general` (span corruption on general text; or HybridSettings.general_checkpoint) ->
arm A: `a_stage1` (continued pretraining, domain + general span corruption) then `a_stage2`
(instruction tuning, domain + general instructions) -> arm B: `b_hybrid` (one stage on all four
tasks; its rates reproduce A's share of target tokens per task and it stops once it has read as
many non-padding target tokens as A's two stages together) -> evaluation of every model (domain /
general validation PPL, ROUGE-L on held-out domain / general instructions) -> results.json,
table.md, results.png. Every training stage binds the scale gin, so its run dir holds config.gin,
metrics.jsonl and checkpoints; `stage.json` marks it finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import random
import statistics
import sys
import time
from typing import Any

from vertjax import errors, gin_utils, io_utils

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import hybrid_settings  # noqa: E402  (sibling modules; the scale gins import hybrid_settings)
import instructions  # noqa: E402

STAGE_FILE = "stage.json"
EVAL_FILE = "eval.json"
ROLES = ("domain", "general")


def _say(message: str) -> None:
    print(f"[hybrid_tuning] {message}", flush=True)


class Experiment:
    """The settings, the output folder and the results JSON shared by every stage."""

    def __init__(self, *, gin_files: list[str], bindings: list[str], out: pathlib.Path):
        gin_utils.parse_gin(gin_files=gin_files, gin_bindings=bindings)
        self.gin_files, self.bindings, self.out = gin_files, bindings, out
        self.s = dataclasses.asdict(hybrid_settings.settings())
        self.s["lengths"] = dict(gin_utils.query_macro("TASK_FEATURE_LENGTHS"))
        self.s["batch_size"] = gin_utils.query_macro("BATCH_SIZE")
        self.s["seed"] = gin_utils.query_macro("SEED")
        out.mkdir(parents=True, exist_ok=True)
        path = out / "results.json"
        self.results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        before = self.results.get("settings", self.s)
        changed = sorted(k for k in self.s.keys() | before.keys() if before.get(k) != self.s.get(k))
        if changed:
            raise errors.ConfigError(
                f"{out} was made with other settings ({', '.join(changed)}): finished stages "
                "would be reused; pass a new --out"
            )
        self.results["settings"] = self.s
        self.tasks: dict[str, str] = {}

    def save(self) -> None:
        io_utils.atomic_write_json(self.out / "results.json", self.results)


def prepare_data(exp: Experiment) -> dict[str, pathlib.Path]:
    """Builds (or verifies) the packs and the vocab; returns name -> folder (+ 'vocab')."""
    from vertjax.data import packs, vocab

    s, dirs = exp.s, {}
    names = {"domain": s["domain_pack"], "general": s["general_pack"], "wordnet": s["wordnet_pack"]}
    for role, name in names.items():
        pack_dir = exp.out / "data" / name.replace(":", "_").replace("/", "_")
        source = s["general_source"] if role == "general" else None
        packs.ensure_pack(
            name, pack_dir, announce=_say, source=source, max_documents=s["max_documents"]
        )
        dirs[role] = pack_dir
    if s["vocab"]:
        dirs["vocab"] = pathlib.Path(s["vocab"])
    else:
        dirs["vocab"] = exp.out / "vocab"
        vocab.ensure_vocab(
            out_dir=dirs["vocab"],
            vocab_size=s["vocab_size"],
            announce=_say,
            inputs=[dirs[r] / "train.jsonl" for r in ROLES],
            max_sentences=s["vocab_sentences"],
            seed=s["seed"],
        )
    return dirs


def prepare_instructions(exp: Experiment, dirs: dict[str, pathlib.Path]) -> dict[str, Any]:
    """Writes instructions/{domain,general}_{train,heldout}.jsonl once; returns their counts."""
    from vertjax.synth import refusals

    folder = exp.out / "instructions"
    done = folder / "summary.json"
    if done.is_file():
        return json.loads(done.read_text())
    s = exp.s
    _say("synthesizing domain instructions (template backend: Self-Instruct, Self-KG, Self-QA)")
    records = {
        "domain": instructions.synthesize_domain(
            pack_dir=dirs["domain"],
            out_dir=folder / "synth",
            self_instruct_target=s["self_instruct_target"],
            self_kg_entities=s["self_kg_entities"],
            self_qa_passages=s["self_qa_passages"],
            seed=s["seed"],
        ),
        "general": instructions.general_records(
            pack_dir=dirs["wordnet"],
            lemmas=s["wordnet_lemmas"],
            refusals=refusals.refusal_records(),
            seed=s["seed"],
        ),
    }
    summary: dict[str, Any] = {}
    for role, recs in records.items():
        train, heldout = instructions.split_records(
            recs, heldout_fraction=s["heldout_fraction"], seed=s["seed"]
        )
        for split, rows in (("train", train), ("heldout", heldout)):
            io_utils.write_jsonl(folder / f"{role}_{split}.jsonl", rows)
            by_source: dict[str, int] = {}
            for r in rows:
                by_source[r["source"]] = by_source.get(r["source"], 0) + 1
            summary[f"{role}_{split}"] = {"records": len(rows), "by_source": by_source}
    io_utils.atomic_write_json(done, summary)
    return summary


def register_tasks(exp: Experiment, dirs: dict[str, pathlib.Path]) -> None:
    """Registers the four leaf tasks and the pretraining / instruction mixtures of arm A."""
    from vertjax.data import tasks
    from vertjax.synth import refusals

    folder = exp.out / "instructions"
    for role in ROLES:
        name = f"hy_{role}_sc"
        tasks.register_jsonl_task(
            name,
            split_files={s: dirs[role] / f"{s}.jsonl" for s in ("train", "validation")},
            vocab_path=dirs["vocab"],
            kind="span_corruption",
        )
        exp.tasks[f"{role}_sc"] = name
        name = f"hy_{role}_instructions"
        refusals.register_instruction_task(
            name,
            split_files={
                "train": folder / f"{role}_train.jsonl",
                "validation": folder / f"{role}_heldout.jsonl",
            },
            vocab_path=dirs["vocab"],
            work_dir=folder / "seqio",
        )
        exp.tasks[f"{role}_instructions"] = name
    rate = exp.s["domain_rate"]
    exp.tasks["pretrain"] = "hy_pretrain_mix"
    tasks.register_mixture(
        "hy_pretrain_mix",
        rates={exp.tasks["domain_sc"]: rate, exp.tasks["general_sc"]: 1.0 - rate},
    )
    exp.tasks["instruct"] = "hy_instruct_mix"
    tasks.register_mixture(
        "hy_instruct_mix",
        rates={exp.tasks["domain_instructions"]: 0.5, exp.tasks["general_instructions"]: 0.5},
    )


def _data(exp: Experiment, task: str) -> Any:
    from vertjax.train import data_config

    return data_config.DatasetConfig(
        mixture_or_task_name=task,
        task_feature_lengths=exp.s["lengths"],
        batch_size=exp.s["batch_size"],
        seed=exp.s["seed"],
    )


def target_tokens(exp: Experiment, task: str, *, steps: int | None, budget: int | None = None):
    """(batches, non-padding target tokens) of the training stream: `steps` batches, or as few
    as reach `budget` tokens. Counted on the exact batches the trainer reads (same config)."""
    iterator = _data(exp, task).iterator()
    batches = tokens = 0
    while (steps is None or batches < steps) and (budget is None or tokens < budget):
        tokens += int(next(iterator)["decoder_loss_weights"].sum())
        batches += 1
    return batches, tokens


def mean_target_length(exp: Experiment, task: str, examples: int = 512) -> float:
    """Mean non-padding target tokens per (unpacked, truncated) training example of a task."""
    from vertjax.eval import ppl

    rows = ppl.task_examples(
        task,
        task_feature_lengths=exp.s["lengths"],
        split="train",
        seed=exp.s["seed"],
        max_examples=examples,
    )
    return statistics.fmean(float((r["decoder_target_tokens"] > 0).sum()) for r in rows)


def train_stage(
    exp: Experiment, name: str, *, task: str, steps: int, init: pathlib.Path | None
) -> dict[str, Any]:
    """Trains one stage with the scale gin (resuming it); returns and stores its record."""
    import gin

    from vertjax.data import pipeline
    from vertjax.train import trainer

    run_dir = exp.out / name
    if (run_dir / STAGE_FILE).is_file():
        record = json.loads((run_dir / STAGE_FILE).read_text())
        exp.results.setdefault("stages", {})[name] = record
        return record
    vocab_size = pipeline.get_vocabulary(task).vocab_size
    stage_bindings = [
        f"MODEL_DIR={str(run_dir)!r}",
        f"TRAIN_STEPS={steps}",
        f"MIXTURE_OR_TASK_NAME={task!r}",
        f"INITIAL_CHECKPOINT_PATH={str(init)!r}" if init else "INITIAL_CHECKPOINT_PATH=None",
        f"VOCAB_SIZE={vocab_size}",
    ]
    gin_utils.parse_gin(gin_files=exp.gin_files, gin_bindings=exp.bindings + stage_bindings)
    gin_utils.write_operative_config(run_dir)
    _say(f"training {name}: {steps} steps on {task}" + (f" from {init.name}" if init else ""))
    start = time.perf_counter()
    result = gin_utils.call_configurable(gin.get_configurable(trainer.train), progress=False)
    seconds = time.perf_counter() - start
    gin_utils.write_operative_config(run_dir)
    _, tokens = target_tokens(exp, task, steps=steps)
    record = {
        "name": name,
        "task": task,
        "steps": steps,
        "init": init.name if init else None,
        "target_tokens": tokens,
        "train_seconds_last_session": round(seconds, 1),
        "final_loss": result.losses.get(result.step),
    }
    io_utils.atomic_write_json(run_dir / STAGE_FILE, record)
    exp.results.setdefault("stages", {})[name] = record
    exp.save()
    return record


def hybrid_rates(exp: Experiment, a1: dict[str, Any], a2: dict[str, Any]) -> dict[str, float]:
    """Example rates of B's four tasks that give each the expected target tokens it had in A.

    In a stage of A with example rates r_t, task t gets tokens T_s * r_t * l_t / sum_u r_u * l_u
    (l: mean target tokens per example); B's example rate is that divided by l_t.
    """
    s = exp.s
    stage_rates = (
        (a1, {"domain_sc": s["domain_rate"], "general_sc": 1.0 - s["domain_rate"]}),
        (a2, {"domain_instructions": 0.5, "general_instructions": 0.5}),
    )
    lengths = {k: mean_target_length(exp, exp.tasks[k]) for _, r in stage_rates for k in r}
    rates = {}
    for stage, r in stage_rates:
        norm = sum(r[k] * lengths[k] for k in r)
        for k in r:
            rates[exp.tasks[k]] = stage["target_tokens"] * r[k] / norm
    total = sum(rates.values())
    exp.results["hybrid_design"] = {
        "mean_target_tokens_per_example": lengths,
        "rates": {k: v / total for k, v in rates.items()},
    }
    return {k: v / total for k, v in rates.items()}


def run_arms(exp: Experiment) -> dict[str, pathlib.Path]:
    """general -> A (two stages) and B (one hybrid stage, token-matched); name -> run dir."""
    from vertjax.data import tasks

    s, out = exp.s, exp.out
    if s["general_checkpoint"]:
        general = pathlib.Path(s["general_checkpoint"])
    else:
        train_stage(
            exp, "general", task=exp.tasks["general_sc"], steps=s["general_steps"], init=None
        )
        general = out / "general"
    a1 = train_stage(
        exp, "a_stage1", task=exp.tasks["pretrain"], steps=s["stage1_steps"], init=general
    )
    a2 = train_stage(
        exp, "a_stage2", task=exp.tasks["instruct"], steps=s["stage2_steps"], init=out / "a_stage1"
    )
    design = exp.results.get("hybrid_design")
    rates = design["rates"] if design else hybrid_rates(exp, a1, a2)
    exp.tasks["hybrid"] = "hy_hybrid_mix"
    tasks.register_mixture("hy_hybrid_mix", rates=rates)
    if "steps" not in exp.results.get("hybrid_design", {}):
        budget = a1["target_tokens"] + a2["target_tokens"]
        steps, _ = target_tokens(exp, exp.tasks["hybrid"], steps=None, budget=budget)
        exp.results["hybrid_design"].update(steps=steps, token_budget=budget)
        exp.save()
    steps = exp.results["hybrid_design"]["steps"]
    train_stage(exp, "b_hybrid", task=exp.tasks["hybrid"], steps=steps, init=general)
    return {
        "general": general,
        "a_stage1": out / "a_stage1",
        "A": out / "a_stage2",
        "B": out / "b_hybrid",
    }


def evaluate_model(
    exp: Experiment, label: str, run_dir: pathlib.Path, *, instructions_too: bool = True
) -> dict[str, Any]:
    """Domain/general PPL and (optionally) held-out instruction ROUGE-L of a checkpoint (cached)."""
    from vertjax.data import pipeline
    from vertjax.eval import instruction_following, ppl
    from vertjax.generators import t5
    from vertjax.models import encoder_decoder
    from vertjax.train import restore

    folder = exp.out / "eval" / label
    if (folder / EVAL_FILE).is_file():
        return json.loads((folder / EVAL_FILE).read_text())
    s = exp.s
    _say(f"evaluating {label} ({run_dir})")
    config, params = restore.load_params(run_dir)
    model = encoder_decoder.EncoderDecoderModel(config)
    vocabulary = pipeline.get_vocabulary(exp.tasks["domain_sc"])
    record: dict[str, Any] = {"checkpoint": str(run_dir), "ppl": {}, "instructions": {}}
    for role in ROLES:
        examples = ppl.task_examples(
            exp.tasks[f"{role}_sc"],
            task_feature_lengths=s["lengths"],
            split="validation",
            seed=s["seed"],
            max_examples=s["eval_examples"],
        )
        record["ppl"][role] = ppl.perplexity(
            model, params, ppl.padded_batches(examples, s["eval_batch_size"])
        )
        if not instructions_too:
            continue
        heldout = instruction_following.load_records(
            exp.out / "instructions" / f"{role}_heldout.jsonl"
        )
        heldout = instructions.eval_subset(heldout, s["eval_instructions"])
        result = instruction_following.evaluate(
            t5.T5Client(model, params, vocabulary),
            heldout,
            batch_size=s["eval_batch_size"],
            max_input_length=s["lengths"]["inputs"],
            max_decode_length=s["max_decode_length"],
        )
        io_utils.write_jsonl(folder / f"predictions_{role}.jsonl", result.rows)
        record["instructions"][role] = result.summary()
    io_utils.atomic_write_json(folder / EVAL_FILE, record)
    return record


def paired_bootstrap(exp: Experiment, role: str, *, base: str, other: str) -> dict[str, float]:
    """Mean ROUGE-L difference (other - base) on the same held-out records, with a 95% interval
    from resampling the records (evaluation-set noise only: one training seed per arm)."""
    rows = {
        label: {
            r["id"]: r["rouge_l"]
            for r in io_utils.read_jsonl(exp.out / "eval" / label / f"predictions_{role}.jsonl")
        }
        for label in (base, other)
    }
    ids = sorted(rows[base])
    diffs = [rows[other][i] - rows[base][i] for i in ids]
    rng = random.Random(exp.s["seed"])
    means = sorted(
        statistics.fmean(rng.choices(diffs, k=len(diffs))) for _ in range(exp.s["bootstrap"])
    )
    lo, hi = means[int(0.025 * len(means))], means[int(0.975 * len(means)) - 1]
    return {"mean": statistics.fmean(diffs), "ci95": [lo, hi], "records": len(diffs)}


def run(args: argparse.Namespace) -> None:
    """Runs (or resumes) every stage into `args.out`."""
    import report

    start = time.perf_counter()
    exp = Experiment(
        gin_files=args.gin_file, bindings=args.gin_bindings, out=pathlib.Path(args.out)
    )
    dirs = prepare_data(exp)
    exp.results["instructions"] = prepare_instructions(exp, dirs)
    exp.save()
    register_tasks(exp, dirs)
    models = run_arms(exp)
    exp.results["eval"] = {
        label: evaluate_model(exp, label, d, instructions_too=label != "a_stage1")
        for label, d in models.items()
    }
    exp.results["b_minus_a"] = {
        role: paired_bootstrap(exp, role, base="A", other="B") for role in ROLES
    }
    exp.results["wall_seconds_last_session"] = round(time.perf_counter() - start, 1)
    exp.save()
    table = report.write(exp.out, exp.results)
    _say(f"done in {time.perf_counter() - start:.0f} s; table: {table}")


def main(argv: list[str] | None = None) -> int:
    """The command line; a user error (bad setting, data) is one line on stderr and exit 2."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    gin_utils.add_gin_flags(parser)
    parser.add_argument("--out", required=True, help="experiment folder (resumed if it exists)")
    args = parser.parse_args(gin_utils.normalize_argv(argv if argv is not None else sys.argv[1:]))
    try:
        run(args)
    except errors.VertjaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
