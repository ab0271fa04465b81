"""`vertjax demo`: the tiny end-to-end reproduction on embedded data, stage by stage.

Each stage reads what earlier stages wrote under `--out`, adds its figures to `results.json` and a
section to `report.md`, and is skipped on a rerun when its outputs already exist (so an interrupted
demo resumes). Stages: data packs → vocabulary → continued pretraining with domain/general PPL.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from vertjax import errors, io_utils

logger = logging.getLogger(__name__)

DOMAIN_PACK = "python-stdlib"
GENERAL_PACKS = ("general-wordnet", "general-shakespeare")  # first one that builds is used


@dataclasses.dataclass
class DemoConfig:
    """Sizes of the demo run; the defaults finish in a few minutes on 2 CPU cores."""

    out: pathlib.Path
    seed: int = 0
    vocab_size: int = 2000
    train_steps: int = 300
    batch_size: int = 16
    inputs_length: int = 128
    targets_length: int = 32
    domain_rate: float = 0.5
    eval_examples: int = 128
    learning_rate: float = 0.01
    nli_steps: int = 400
    retriever_steps: int = 200


@dataclasses.dataclass
class DemoState:
    config: DemoConfig
    results: dict[str, Any]

    @property
    def out(self) -> pathlib.Path:
        return self.config.out

    def save(self) -> None:
        io_utils.atomic_write_json(self.out / "results.json", self.results)


def _say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def stage_data(state: DemoState) -> None:
    """Builds the embedded domain pack and the first general pack available here."""
    from vertjax.data import packs

    data = state.results.setdefault("data", {})
    for role, names in (("domain", (DOMAIN_PACK,)), ("general", GENERAL_PACKS)):
        if role in data and pathlib.Path(data[role]["dir"]).is_dir():
            continue
        for name in names:
            pack_dir = state.out / "data" / name
            try:
                manifest = packs.ensure_pack(name, pack_dir, announce=_say)
            except errors.VertjaxError as e:
                logger.warning("pack %s unavailable: %s", name, e)
                _say(f"pack {name} unavailable here ({e}); trying the next one")
                continue
            data[role] = {"pack": name, "dir": str(pack_dir), "counts": manifest["counts"]}
            break
        else:
            if role == "domain":
                raise errors.DataError(f"the domain pack {DOMAIN_PACK} could not be built")
            _say("no general-text pack available: the demo trains on the domain pack only")
    state.save()


def stage_vocab(state: DemoState) -> None:
    """Trains the SentencePiece vocabulary on the training splits of the demo's packs."""
    from vertjax.data import vocab

    vocab_dir = state.out / "vocab"
    if (vocab_dir / "spm.model").is_file() and "vocab" in state.results:
        return
    summary = vocab.ensure_vocab(
        out_dir=vocab_dir,
        vocab_size=state.config.vocab_size,
        announce=_say,
        inputs=[pathlib.Path(d["dir"]) / "train.jsonl" for d in state.results["data"].values()],
        max_sentences=40_000,
        seed=state.config.seed,
    )
    state.results["vocab"] = {"dir": str(vocab_dir), **summary}
    state.save()


def register_pretraining_tasks(state: DemoState) -> dict[str, str]:
    """Registers domain/general span-corruption tasks (+ their mixture); returns role → name."""
    from vertjax.data import tasks

    names = {}
    for role, info in state.results["data"].items():
        pack_dir = pathlib.Path(info["dir"])
        name = f"demo_{role}_span_corruption"
        tasks.register_jsonl_task(
            name,
            split_files={s: pack_dir / f"{s}.jsonl" for s in ("train", "validation")},
            vocab_path=state.out / "vocab",
            kind="span_corruption",
        )
        names[role] = name
    if len(names) == 2:
        rate = state.config.domain_rate
        tasks.register_mixture(
            "demo_pretrain_mixture",
            rates={names["domain"]: rate, names["general"]: 1.0 - rate},
        )
        names["mixture"] = "demo_pretrain_mixture"
    return names


def _model(state: DemoState):
    from vertjax.data import pipeline
    from vertjax.models import encoder_decoder, t5

    vocabulary = pipeline.get_vocabulary(state.results["tasks"]["domain"])
    return encoder_decoder.EncoderDecoderModel(t5.tiny_config(vocabulary.vocab_size))


def _ppl_table(state: DemoState, model, params) -> dict[str, dict[str, float]]:
    from vertjax.eval import ppl

    lengths = {"inputs": state.config.inputs_length, "targets": state.config.targets_length}
    table = {}
    for role in ("domain", "general"):
        task = state.results["tasks"].get(role)
        if task is None:
            continue
        examples = ppl.task_examples(
            task,
            task_feature_lengths=lengths,
            split="validation",
            seed=state.config.seed,
            max_examples=state.config.eval_examples,
        )
        table[role] = ppl.perplexity(model, params, ppl.padded_batches(examples, 32))
    return table


def stage_pretrain(state: DemoState) -> None:
    """Trains the tiny T5 on the domain(+general) mixture; PPL before and after, per corpus."""
    import jax

    from vertjax.train import checkpoints, data_config, optimizers, trainer

    cfg = state.config
    state.results["tasks"] = register_pretraining_tasks(state)
    if "pretrain" in state.results:
        return
    model = _model(state)
    train_name = state.results["tasks"].get("mixture", state.results["tasks"]["domain"])
    before = _ppl_table(state, model, model.init_params(jax.random.key(cfg.seed)))
    _say(f"PPL before training: {_fmt(before)}")
    run_dir = state.out / "pretrain"
    schedule = optimizers.warmup_cosine_schedule(
        peak_learning_rate=cfg.learning_rate,
        warmup_steps=cfg.train_steps // 10,
        total_steps=cfg.train_steps,
    )
    data = data_config.DatasetConfig(
        mixture_or_task_name=train_name,
        task_feature_lengths={"inputs": cfg.inputs_length, "targets": cfg.targets_length},
        batch_size=cfg.batch_size,
        seed=cfg.seed,
    )
    _say(f"training a tiny T5 for {cfg.train_steps} steps on {train_name}")
    start = time.perf_counter()
    trainer.train(
        model_dir=str(run_dir),
        model=model,
        train_data=data,
        optimizer=optimizers.adamw(learning_rate=schedule, weight_decay=0.0),
        learning_rate_fn=schedule,
        total_steps=cfg.train_steps,
        checkpoint_period=100,
        seed=cfg.seed,
    )
    seconds = time.perf_counter() - start
    _, params = checkpoints.load_params(run_dir)
    after = _ppl_table(state, model, params)
    _say(f"PPL after {cfg.train_steps} steps: {_fmt(after)}")
    state.results["pretrain"] = {
        "run_dir": str(run_dir),
        "steps": cfg.train_steps,
        "train_seconds": seconds,
        "domain_rate": cfg.domain_rate if "mixture" in state.results["tasks"] else 1.0,
        "ppl_before": before,
        "ppl_after": after,
    }
    state.save()


def stage_retrieval(state: DemoState) -> None:
    """A tiny GTR, dense + BM25 + hybrid indexes (fusion weight tuned on validation questions),
    recall tables on the held-out and the lay-language questions, and one PNG.

    The retriever trains from scratch: the demo's pretraining (AdamW at T5's Adafactor rate 1e-2)
    leaves an encoder that maps every passage to nearly the same vector (pooled cosine 0.97-0.99),
    and a GTR started from it stays at chance (recall@5 0.015 vs 0.31 from scratch, 60 steps;
    experiments/gtr_vs_dpr/README.md).
    """
    from vertjax.retrieval import demo_stage

    if "retrieval" in state.results:
        return
    _say(f"training a GTR retriever for {state.config.retriever_steps} steps and indexing")
    result = demo_stage.run(
        out=state.out / "retrieval",
        pack_dir=state.results["data"]["domain"]["dir"],
        vocab_dir=state.results["vocab"]["dir"],
        initial_checkpoint=None,
        train_steps=state.config.retriever_steps,
        seed=state.config.seed,
    )
    print(result["table"], flush=True)
    keys = ("table", "plot", "metrics", "fusion", "train_seconds")
    state.results["retrieval"] = {k: result[k] for k in keys if k in result}
    state.save()


def stage_synth(state: DemoState) -> None:
    """Template-backend instruction synthesis: KG, Self-Instruct, Self-QA, Self-KG, refusals."""
    from vertjax import cli

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
        _say(f"synthesis: {name}")
        if cli.main(argv) != 0:
            raise errors.VertjaxError(f"demo: `vertjax {' '.join(argv)}` failed")
        report = pathlib.Path(argv[argv.index("--out") + 1]) / "report.json"
        if report.is_file():
            full = json.loads(report.read_text(encoding="utf-8"))
            keys = ("generated", "kept", "rejected", "rouge_nn_mean", "unique_verb_noun_pairs")
            summary[name] = {k: full.get(k) for k in keys}
    state.results["synth"] = {"dir": str(synth), "reports": summary}
    state.save()


def stage_consistency(state: DemoState) -> None:
    """NLI consistency model: synthesised pairs (adversarial to word overlap), a T5-encoder
    classifier warm-started from the pretrained tiny T5, ROC AUC beside word overlap."""
    from vertjax import consistency

    if "consistency" in state.results:
        return
    _say(f"training the NLI consistency model for {state.config.nli_steps} steps")
    state.results["consistency"] = consistency.demo_stage(
        out_dir=state.out / "consistency",
        pack_dir=state.results["data"]["domain"]["dir"],
        vocab_dir=state.out / "vocab",
        train_steps=state.config.nli_steps,
        seed=state.config.seed,
        initial_checkpoint_path=state.results["pretrain"]["run_dir"],
    )
    state.save()


def _consistency_judge(state: DemoState) -> tuple[str | None, str]:
    """The NLI run to judge answers with, if it beats the lexical baseline on held-out pairs.

    A judge is a model choice like any other: the tiny demo NLI model is used only when its
    held-out ROC AUC is higher than lexical overlap's; otherwise the lexical check is used and
    the report says so.
    """
    nli = state.results.get("consistency")
    held_out = (nli or {}).get("eval", {}).get("synth_test")
    if not held_out:
        return None, "lexical overlap (no NLI model trained)"
    model_auc, lexical_auc = held_out["roc_auc"], held_out["lexical_overlap_roc_auc"]
    if model_auc > lexical_auc:
        return nli[
            "run_dir"
        ], f"T5 NLI (held-out ROC AUC {model_auc:.3f} > lexical {lexical_auc:.3f})"
    return None, (
        f"lexical overlap (held-out ROC AUC {lexical_auc:.3f}; the tiny T5 NLI model's "
        f"{model_auc:.3f} is lower, so it does not judge the answers)"
    )


def stage_decoding(state: DemoState) -> None:
    """Reference (copy) decoding vs greedy with the demo's pretrained T5 on domain passages."""
    from vertjax.data import packs
    from vertjax.models import encoder_decoder, reference_decoding

    if "decoding" in state.results:
        return
    _say("timing reference (copy) decoding against greedy")
    t5 = encoder_decoder.load_pretrained(state.results["pretrain"]["run_dir"], state.out / "vocab")
    passages = packs.load_passages(state.results["data"]["domain"]["dir"], splits=("validation",))[
        :3
    ]
    inputs = [t5.vocabulary.encode(p["text"])[: state.config.inputs_length] + [1] for p in passages]
    state.results["decoding"] = reference_decoding.measure_speedup(
        t5.model,
        t5.params,
        inputs,
        max_decode_length=48,
        seed=state.config.seed,
    )
    state.save()


def stage_answer(state: DemoState) -> None:
    """The answering system: cited answers with NLI verdicts, refusal precision/recall."""
    from vertjax.system import demo_stage

    if "answer" in state.results:
        return
    _say("answering questions with citations and consistency checks")
    general = state.results["data"].get("general")
    nli_run, judge = _consistency_judge(state)
    _say(f"consistency judge: {judge}")
    result = demo_stage.run(
        out_dir=state.out / "system",
        pack_dir=state.results["data"]["domain"]["dir"],
        general_pack_dir=general["dir"] if general else None,
        nli_run_dir=nli_run,
        vocab_dir=state.out / "vocab",
        seed=state.config.seed,
    )
    print(result["markdown"], flush=True)
    state.results["answer"] = dict(result, consistency_judge=judge)
    state.save()


def _fmt(table: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{role} {r['ppl']:.2f}" for role, r in table.items())


def _optional(record: Mapping[str, Any], key: str) -> str:
    value = record.get(key)
    return "" if value is None else f"{value:.3f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Markdown table lines (header, rule, one line per row), then a blank line."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _fusion_line(fusion: Mapping[str, Any] | None) -> str:
    """How the hybrid was weighted, and which retriever measured best on validation questions."""
    if not fusion:
        return ""
    chosen = fusion["chosen"]
    return (
        f"Hybrid = {fusion['method']} with weights BM25 {fusion['weights'][0]:.2f} / dense "
        f"{fusion['weights'][1]:.2f}, chosen on validation questions ({fusion['metric']} "
        f"{chosen[fusion['metric']]:.3f}); best there: {fusion['kind']}."
    )


def write_report(state: DemoState) -> pathlib.Path:
    """runs/demo/report.md: every stage's figures as markdown tables."""
    r = state.results
    lines = ["# vertjax demo report", ""]
    data = r.get("data", {})
    if data:
        lines += ["## Data", ""]
        lines += _table(
            ("role", "pack", "documents", "passages"),
            (
                (
                    role,
                    info["pack"],
                    info["counts"].get("documents"),
                    info["counts"].get("passages"),
                )
                for role, info in data.items()
            ),
        )
    pre = r.get("pretrain")
    if pre:
        lines += [
            "## Continued pretraining (tiny T5, span corruption)",
            "",
            f"{pre['steps']} steps in {pre['train_seconds']:.0f} s, domain rate "
            f"{pre['domain_rate']:.2f}.",
            "",
        ]
        lines += _table(
            ("validation set", "PPL before", "PPL after"),
            (
                (role, f"{pre['ppl_before'][role]['ppl']:.2f}", f"{after['ppl']:.2f}")
                for role, after in pre["ppl_after"].items()
            ),
        )
    retrieval = r.get("retrieval")
    if retrieval:
        plot = pathlib.Path(retrieval["plot"])
        lines += [
            "## Retrieval (held-out and lay-language questions on the domain pack)",
            "",
            retrieval["table"],
            "",
            _fusion_line(retrieval.get("fusion")),
            "",
            f"![precision and recall vs k]({plot.relative_to(state.out) if plot.is_relative_to(state.out) else plot})",
            "",
        ]
    synth = r.get("synth")
    if synth:
        lines += [
            "## Instruction synthesis (template backend)",
            "",
        ]
        lines += _table(
            ("job", "generated", "kept", "rejected", "mean ROUGE-L to nearest"),
            (
                (
                    name,
                    rep["generated"],
                    rep["kept"],
                    rep["rejected"],
                    _optional(rep, "rouge_nn_mean"),
                )
                for name, rep in synth["reports"].items()
            ),
        )
    nli = r.get("consistency")
    if nli:
        lines += [
            "## NLI consistency model",
            "",
            f"T5 {nli.get('mode', 'seq2seq')} judge, {nli.get('train_steps', '?')} steps in "
            f"{nli['train_seconds']:.0f} s. Sets: `synth_test` = held-out synthesised pairs; "
            "`domain_claims` / `heldout_claims` = hand-written claims (tests/data). The "
            "adversarial slice holds paraphrased entailments and negatives that reuse the "
            "premise's words.",
            "",
        ]
        rows = []
        for name, m in nli["eval"].items():
            rows.append(
                (name, m["pairs"], f"{m['roc_auc']:.3f}", f"{m['lexical_overlap_roc_auc']:.3f}")
            )
            for part, sm in m.get("slices", {}).items():
                if sm["pairs"] != m["pairs"]:
                    rows.append(
                        (
                            f"{name} / {part}",
                            sm["pairs"],
                            f"{sm['roc_auc']:.3f}",
                            f"{sm['lexical_overlap_roc_auc']:.3f}",
                        )
                    )
        lines += _table(("eval set", "pairs", "ROC AUC (T5 NLI)", "ROC AUC (word overlap)"), rows)
    dec = r.get("decoding")
    if dec:
        lines += [
            "## Reference (copy) decoding",
            "",
            "The pretrained tiny T5's own greedy continuations of 3 validation passages, decoded "
            "again with references that contain them (grounded) or not (ungrounded); outputs are "
            "checked identical to greedy.",
            "",
        ]
        grounded = f"reference, grounded (acceptance {100 * dec['grounded_acceptance']:.0f} %)"
        lines += _table(
            ("decoder", "tokens/s", "vs greedy"),
            [
                ("greedy", f"{dec['greedy_tokens_per_second']:.1f}", "1.00x"),
                (
                    grounded,
                    f"{dec['grounded_tokens_per_second']:.1f}",
                    f"{dec['grounded_speedup']:.2f}x",
                ),
                (
                    "reference, ungrounded",
                    f"{dec['ungrounded_tokens_per_second']:.1f}",
                    f"{dec['ungrounded_speedup']:.2f}x",
                ),
            ],
        )
    answer = r.get("answer")
    if answer:
        lines += [
            f"Consistency judge: {answer.get('consistency_judge', '')}.",
            "",
            answer["markdown"],
            "",
        ]
    path = state.out / "report.md"
    io_utils.atomic_write_text(path, "\n".join(lines))
    return path


STAGES: tuple[tuple[str, Callable[[DemoState], None]], ...] = (
    ("data", stage_data),
    ("vocab", stage_vocab),
    ("pretrain", stage_pretrain),
    ("retrieval", stage_retrieval),
    ("synth", stage_synth),
    ("consistency", stage_consistency),
    ("decoding", stage_decoding),
    ("answer", stage_answer),
)


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """Runs every stage in order (resuming finished ones) and writes report.md."""
    config.out.mkdir(parents=True, exist_ok=True)
    results_path = config.out / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.exists() else {}
    state = DemoState(config=config, results=results)
    total = time.perf_counter()
    for name, stage in STAGES:
        start = time.perf_counter()
        stage(state)
        _say(f"stage {name} done in {time.perf_counter() - start:.1f} s")
    report = write_report(state)
    _say(f"finished in {time.perf_counter() - total:.1f} s; report: {report}")
    return state.results
