"""`vertjax synth`: instruction-data synthesis (Self-Instruct, Self-QA, Self-KG) and its inputs.

Jobs write `OUT/instructions.jsonl` (kept), `OUT/rejected.jsonl` (filtered, with reasons),
`OUT/progress.jsonl` and a report (`report.md`, `report.png`); rerunning a job with the same OUT
resumes it. Backends: `template` (deterministic, from the stdlib KG; offline), `openai` (any
OpenAI-compatible server), `t5` (a vertjax checkpoint).
"""

from __future__ import annotations

import argparse
import json

from vertjax.commands import flags

HELP = (
    "synthesize instruction data: self-instruct | self-qa | self-kg | kg | refusals | "
    "refusal-questions | report"
)


def _backend_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("generator backend")
    group.add_argument(
        "--backend",
        choices=("template", "openai", "t5"),
        default="template",
        help="who writes: template (offline, from KG triples), openai (HTTP), t5 (a checkpoint)",
    )
    group.add_argument("--triples", help="template: KG triples JSONL (default: extract the stdlib)")
    flags.add_flag(
        group,
        "--base_url",
        aliases=("--base-url",),
        help="openai: e.g. http://127.0.0.1:8000/v1",
    )
    group.add_argument("--model", help="openai: the served model name")
    flags.add_flag(
        group,
        "--api_key_env",
        aliases=("--api-key-env",),
        default="OPENAI_API_KEY",
        help="openai: key's env var",
    )
    group.add_argument("--timeout", type=float, default=60.0, help="openai: seconds per request")
    flags.add_flag(
        group,
        "--max_retries",
        aliases=("--max-retries",),
        type=int,
        default=4,
        help="openai: retries per request",
    )
    group.add_argument("--backoff", type=float, default=1.0, help="openai: first retry delay (s)")
    group.add_argument("--concurrency", type=int, default=4, help="openai: parallel requests")
    group.add_argument("--checkpoint", help="t5: run dir or RUN_DIR/checkpoint_<step>")
    group.add_argument("--vocab", help="t5: SentencePiece model (or its vocab dir)")
    flags.add_flag(
        group,
        "--batch_size",
        aliases=("--batch-size",),
        type=int,
        default=8,
        help="t5: prompts per decode batch",
    )
    group.add_argument("--temperature", type=float, default=0.7, help="sampling temperature")
    group.add_argument("--seed", type=int, default=0, help="random seed of the whole job")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="synth_command", metavar="<action>", required=True)

    si = sub.add_parser("self-instruct", help="grow instructions from seed tasks")
    si.add_argument("--seeds", help="seed tasks JSONL (default: the shipped stdlib seeds)")
    si.add_argument("--out", required=True, help="job folder (resumed if it exists)")
    si.add_argument("--target", type=int, default=100, help="stop after this many kept")
    flags.add_flag(
        si,
        "--max_rounds",
        aliases=("--max-rounds",),
        type=int,
        default=100,
        help="stop after this many rounds",
    )
    flags.add_flag(
        si,
        "--prompts_per_round",
        aliases=("--prompts-per-round",),
        type=int,
        default=4,
        help="generation prompts per round",
    )
    si.add_argument("--dialogue", action="store_true", help="multi-turn instances (Mozi)")
    flags.add_flag(
        si,
        "--rouge_threshold",
        aliases=("--rouge-threshold",),
        type=float,
        default=0.7,
        help="reject at ROUGE-L >= this",
    )
    si.add_argument(
        "--banned", help="comma-separated banned keywords (default: the paper's image,graph,...)"
    )
    _backend_arguments(si)

    qa = sub.add_parser("self-qa", help="questions and answers from passages")
    qa.add_argument("--passages", required=True, help="passages JSONL {id, text} or a pack dir")
    qa.add_argument("--out", required=True, help="job folder (resumed if it exists)")
    flags.add_flag(
        qa,
        "--questions_per_passage",
        aliases=("--questions-per-passage",),
        type=int,
        default=4,
        help="questions asked of each passage",
    )
    flags.add_flag(
        qa,
        "--max_passages",
        aliases=("--max-passages",),
        type=int,
        help="use the first N passages only",
    )
    _backend_arguments(qa)

    skg = sub.add_parser("self-kg", help="instructions grounded on KG entities")
    skg.add_argument("--out", required=True, help="job folder (resumed if it exists)")
    flags.add_flag(
        skg,
        "--examples_per_entity",
        aliases=("--examples-per-entity",),
        type=int,
        default=4,
        help="instructions asked about each entity",
    )
    flags.add_flag(
        skg,
        "--max_entities",
        aliases=("--max-entities",),
        type=int,
        default=200,
        help="entities sampled, seeded (0: every entity)",
    )
    flags.add_flag(
        skg,
        "--min_facts",
        aliases=("--min-facts",),
        type=int,
        default=3,
        help="skip entities with fewer facts",
    )
    _backend_arguments(skg)

    kg = sub.add_parser("kg", help="extract the Python stdlib knowledge graph as triples JSONL")
    kg.add_argument("--out", required=True, help="triples JSONL to write")
    kg.add_argument("--modules", help="comma-separated modules, or 'all' (default: a curated 41)")

    ref = sub.add_parser("refusals", help="write out-of-domain questions with a fixed refusal")
    ref.add_argument("--out", required=True, help="instruction JSONL to write")
    ref.add_argument(
        "--domain",
        default="the Python standard library",
        help="the domain named in the refusal",
    )

    gen = sub.add_parser(
        "refusal-questions",
        help="grow out-of-domain questions with a generator, each with the fixed refusal",
    )
    gen.add_argument("--out", required=True, help="job folder (resumed if it exists)")
    gen.add_argument("--target", type=int, default=50, help="stop after this many kept")
    flags.add_flag(
        gen,
        "--max_rounds",
        aliases=("--max-rounds",),
        type=int,
        default=10,
        help="stop after this many rounds",
    )
    flags.add_flag(
        gen,
        "--prompts_per_round",
        aliases=("--prompts-per-round",),
        type=int,
        default=2,
        help="generation prompts per round",
    )
    gen.add_argument(
        "--domain",
        default="the Python standard library",
        help="the domain the questions must stay out of, named in the refusal",
    )
    gen.add_argument(
        "--domain_terms",
        help="comma-separated words that put a question inside --domain (needed with --domain; "
        "default: Python's)",
    )
    _backend_arguments(gen)

    rep = sub.add_parser("report", help="(re)write a job folder's report")
    rep.add_argument("dir", help="a job folder")


def _generator(args: argparse.Namespace):
    from vertjax import errors
    from vertjax.generators import openai_chat
    from vertjax.synth import kg, template_backend

    if args.backend == "template":
        triples = kg.load_triples(args.triples) if args.triples else None
        return template_backend.TemplateGenerator(triples)
    if args.backend == "openai":
        if not args.base_url or not args.model:
            raise errors.ConfigError("--backend openai needs --base_url and --model")
        return openai_chat.OpenAIChatGenerator(
            args.base_url,
            args.model,
            api_key_env=args.api_key_env,
            timeout=args.timeout,
            max_retries=args.max_retries,
            backoff=args.backoff,
            concurrency=args.concurrency,
        )
    if not args.checkpoint or not args.vocab:
        raise errors.ConfigError("--backend t5 needs --checkpoint and --vocab")
    from vertjax.generators import t5

    return t5.T5Generator.from_run_dir(args.checkpoint, args.vocab, batch_size=args.batch_size)


def _finish(out: str, summary: dict, title: str) -> int:
    from vertjax.synth import report

    stats = report.write_report(out, title=title)
    summary = dict(
        summary, rejected_by_reason=stats["rejected_by_reason"], report=f"{out}/report.md"
    )
    print(json.dumps(summary))
    return 0


def run(args: argparse.Namespace) -> int:
    from vertjax import errors, io_utils
    from vertjax.synth import filters, kg, refusals, report

    action = args.synth_command
    if action == "kg":
        if args.modules == "all":
            from vertjax.data import corpora

            triples = []
            for name in corpora.stdlib_module_names():
                try:
                    triples += kg.module_triples(name)
                except errors.ConfigError:
                    continue
        else:
            modules = args.modules.split(",") if args.modules else kg.DEFAULT_MODULES
            triples = kg.extract_triples([m.strip() for m in modules if m.strip()])
        n = io_utils.write_jsonl(args.out, triples)
        print(
            json.dumps({"out": args.out, "triples": n, "entities": len(kg.entity_facts(triples))})
        )
        return 0
    if action == "refusals":
        n = io_utils.write_jsonl(args.out, refusals.refusal_records(domain=args.domain))
        print(json.dumps({"out": args.out, "records": n}))
        return 0
    if action == "refusal-questions":
        terms = {}
        if args.domain_terms is not None:
            words = tuple(w.strip() for w in args.domain_terms.split(",") if w.strip())
            if not words:
                raise errors.ConfigError("--domain_terms names no word")
            terms = {"domain_terms": words}
        config = refusals.RefusalConfig(
            target=args.target,
            max_rounds=args.max_rounds,
            prompts_per_round=args.prompts_per_round,
            domain=args.domain,
            **terms,
            temperature=args.temperature,
            seed=args.seed,
        )
        summary = refusals.run_refusals(_generator(args), args.out, config=config)
        return _finish(args.out, summary, "Generated refusals report")
    if action == "report":
        stats = report.write_report(args.dir)
        print(json.dumps({k: stats[k] for k in ("generated", "kept", "rejected", "rouge_nn_mean")}))
        return 0
    if action == "self-instruct":
        from vertjax.synth import self_instruct

        banned = (
            tuple(k.strip() for k in args.banned.split(",") if k.strip())
            if args.banned is not None
            else filters.DEFAULT_BANNED_KEYWORDS
        )
        config = self_instruct.SelfInstructConfig(
            target=args.target,
            max_rounds=args.max_rounds,
            prompts_per_round=args.prompts_per_round,
            dialogue=args.dialogue,
            temperature=args.temperature,
            seed=args.seed,
            filters=filters.FilterConfig(
                rouge_threshold=args.rouge_threshold, banned_keywords=banned
            ),
        )
        seeds = self_instruct.load_seed_tasks(args.seeds)
        summary = self_instruct.run_self_instruct(seeds, _generator(args), args.out, config=config)
        return _finish(args.out, summary, "Self-Instruct report")
    if action == "self-qa":
        from vertjax.synth import self_qa

        passages = self_qa.load_passages(args.passages)
        if args.max_passages is not None:
            passages = passages[: args.max_passages]
        config = self_qa.SelfQAConfig(
            questions_per_passage=args.questions_per_passage,
            temperature=args.temperature,
            seed=args.seed,
        )
        summary = self_qa.run_self_qa(passages, _generator(args), args.out, config=config)
        return _finish(args.out, summary, "Self-QA report")
    from vertjax.synth import self_kg

    if not args.triples:
        raise errors.ConfigError("self-kg needs --triples (write them with `vertjax synth kg`)")
    config = self_kg.SelfKGConfig(
        examples_per_entity=args.examples_per_entity,
        max_entities=args.max_entities or None,
        min_facts=args.min_facts,
        temperature=args.temperature,
        seed=args.seed,
    )
    triples = kg.load_triples(args.triples)
    summary = self_kg.run_self_kg(triples, _generator(args), args.out, config=config)
    return _finish(args.out, summary, "Self-KG report")
