"""The mixture sweep: general model, continued pretraining per domain rate, PPL table and plot.

    python experiments/mixture_sweep/run.py --gin_file=experiments/mixture_sweep/tiny.gin \
        --out runs/mixture_sweep/tiny [--gin.SweepSettings.point_steps=200 ...]

Stages, each skipped on a rerun once done (a killed training run resumes from its checkpoint):
data packs -> SentencePiece vocab -> `general` (from scratch, general text only) -> `rate_dXXX`
(continued from `general` at each domain rate, the same steps/tokens each) -> `scratch_domain`
(from scratch, domain only, the steps of one point) -> `staged_dXXX` (from scratch: general for
the general model's steps, then the mixture: `mixtures.staged_schedule`) -> results.json,
sweep_table.md and sweep_ppl.png. Every point trains with `vertjax train` and the scale gin, so its
run dir holds the usual config.gin / metrics.jsonl / checkpoints, plus `sweep_point.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import time
from typing import Any

from vertjax import errors, gin_utils, io_utils

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import sweep_settings  # noqa: E402  (a sibling module; the scale gins import it)

POINT_FILE = "sweep_point.json"
ROLES = ("domain", "general")


def _say(message: str) -> None:
    print(f"[mixture_sweep] {message}", flush=True)


def read_settings(gin_file: str, bindings: list[str]) -> dict[str, Any]:
    """`SweepSettings` and the shared macros of the scale gin (parsed here, bound again per point)."""
    gin_utils.parse_gin(gin_files=[gin_file], gin_bindings=bindings)
    settings = dataclasses.asdict(sweep_settings.settings())
    settings["task_feature_lengths"] = dict(gin_utils.query_macro("TASK_FEATURE_LENGTHS"))
    settings["batch_size"] = gin_utils.query_macro("BATCH_SIZE")
    settings["seed"] = gin_utils.query_macro("SEED")
    return settings


def train_env() -> dict[str, str]:
    """The environment of a point's `vertjax train`: this folder on PYTHONPATH, so that the scale
    gin's `import sweep_settings` resolves there too."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH")) if p)
    return env


def prepare_data(out: pathlib.Path, settings: dict[str, Any]) -> dict[str, pathlib.Path]:
    """Builds (or verifies) both packs and the vocabulary; returns role -> pack dir + 'vocab'."""
    from vertjax.data import packs, vocab

    dirs = {}
    for role in ROLES:
        name = settings[f"{role}_pack"]
        pack_dir = out / "data" / name.replace(":", "_").replace("/", "_")
        packs.ensure_pack(
            name,
            pack_dir,
            announce=_say,
            source=settings[f"{role}_source"],
            max_documents=settings["max_documents"],
        )
        dirs[role] = pack_dir
    dirs["vocab"] = out / "vocab"
    vocab.ensure_vocab(
        out_dir=dirs["vocab"],
        vocab_size=settings["vocab_size"],
        announce=_say,
        inputs=[dirs[r] / "train.jsonl" for r in ROLES],
        max_sentences=settings["vocab_sentences"],
        seed=settings["seed"],
    )
    return dirs


def split_files(pack_dir: pathlib.Path) -> dict[str, str]:
    return {s: str(pack_dir / f"{s}.jsonl") for s in ("train", "validation")}


def plan(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """The sweep's points in run order: name, domain rate, steps, init and staged steps."""
    from vertjax.data.mixtures import rate_suffix

    general_steps, point_steps = settings["general_steps"], settings["point_steps"]
    points = [{"name": "general", "kind": "general", "domain_rate": 0.0, "steps": general_steps}]
    for rate in settings["rates"]:
        points.append(
            {
                "name": f"rate_{rate_suffix(rate)}",
                "kind": "continued",
                "domain_rate": float(rate),
                "steps": point_steps,
                "init": "general",
            }
        )
    if settings["scratch_domain"]:
        points.append(
            {"name": "scratch_domain", "kind": "scratch", "domain_rate": 1.0, "steps": point_steps}
        )
    if settings["staged_rate"] is not None:
        rate = float(settings["staged_rate"])
        points.append(
            {
                "name": f"staged_{rate_suffix(rate)}",
                "kind": "staged",
                "domain_rate": rate,
                "steps": general_steps + point_steps,
                "staged_general_steps": general_steps,
            }
        )
    return points


def train_point(
    *,
    point: dict[str, Any],
    out: pathlib.Path,
    dirs: dict[str, pathlib.Path],
    gin_file: str,
    bindings: list[str],
) -> float:
    """Runs `vertjax train` for one point (resuming it); returns the wall seconds."""
    from vertjax.data.mixtures import rate_suffix

    run_dir = out / point["name"]
    init = str(out / point["init"]) if point.get("init") else None
    flags = {
        "MODEL_DIR": repr(str(run_dir)),
        "TRAIN_STEPS": point["steps"],
        "DOMAIN_RATE": point["domain_rate"],
        "MIXTURE_NAME": repr(f"sweep_mix_{rate_suffix(point['domain_rate'])}"),
        "STAGED_GENERAL_STEPS": point.get("staged_general_steps", 0),
        "INITIAL_CHECKPOINT_PATH": repr(init) if init else None,
        "VOCAB": repr(str(dirs["vocab"])),
        "DOMAIN_FILES": split_files(dirs["domain"]),
        "GENERAL_FILES": split_files(dirs["general"]),
    }
    command = [
        str(pathlib.Path(sys.executable).with_name("vertjax")),
        "train",
        f"--gin_file={gin_file}",
        "--no_progress",
        *(f"--gin.{k}={v}" for k, v in flags.items()),
        *(f"--gin.{b}" for b in bindings),
    ]
    _say(f"training {point['name']}: {point['steps']} steps, domain rate {point['domain_rate']}")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, env=train_env(), check=False)
    if result.returncode != 0:
        raise errors.TrainingError(f"training {point['name']} failed (exit {result.returncode})")
    return time.perf_counter() - start


class Evaluator:
    """Domain/general validation PPL of checkpoints (and of the random init) on fixed examples."""

    def __init__(self, settings: dict[str, Any], dirs: dict[str, pathlib.Path]):
        from vertjax.data import mixtures

        self.settings = settings
        names = mixtures.domain_general_mixture(
            name="sweep_eval_mixture",
            domain_files=split_files(dirs["domain"]),
            general_files=split_files(dirs["general"]),
            domain_rate=0.5,
            vocab_path=dirs["vocab"],
        )
        self.tasks = {"domain": names[1], "general": names[2]}

    def ppl(self, model: Any, params: Any) -> dict[str, dict[str, float]]:
        from vertjax.eval import ppl

        table = {}
        for role in ROLES:
            examples = ppl.task_examples(
                self.tasks[role],
                task_feature_lengths=self.settings["task_feature_lengths"],
                split="validation",
                seed=self.settings["seed"],
                max_examples=self.settings["eval_examples"],
            )
            batches = ppl.padded_batches(examples, self.settings["eval_batch_size"])
            table[role] = ppl.perplexity(model, params, batches)
        return table

    def checkpoint(self, run_dir: pathlib.Path) -> dict[str, dict[str, float]]:
        from vertjax.models import encoder_decoder
        from vertjax.train import restore

        config, params = restore.load_params(run_dir)
        return self.ppl(encoder_decoder.EncoderDecoderModel(config), params)

    def random_init(self, run_dir: pathlib.Path) -> dict[str, dict[str, float]]:
        """PPL of the trainer's initial params (same seed, same config as `run_dir`)."""
        import jax

        from vertjax.models import encoder_decoder
        from vertjax.train import restore

        model = encoder_decoder.EncoderDecoderModel(restore.load_model_config(run_dir))
        return self.ppl(model, model.init_params(jax.random.key(self.settings["seed"])))


def trained_tokens(run_dir: pathlib.Path) -> float:
    """Target tokens the run trained on (sum of train/target_tokens in metrics.jsonl)."""
    records = io_utils.read_jsonl(run_dir / "metrics.jsonl")
    return sum(r.get("train/target_tokens", 0.0) for r in records)


def run_sweep(*, gin_file: str, out: pathlib.Path, bindings: list[str]) -> dict[str, Any]:
    """Runs every unfinished point, then writes results.json and the report; returns results."""
    from vertjax.eval import sweep_report

    settings = read_settings(gin_file, bindings)
    out.mkdir(parents=True, exist_ok=True)
    dirs = prepare_data(out, settings)
    evaluator = Evaluator(settings, dirs)
    init_ppl: dict[str, Any] | None = None
    points = []
    for point in plan(settings):
        run_dir = out / point["name"]
        done = run_dir / POINT_FILE
        if done.is_file():
            _say(f"{point['name']}: done, skipped")
            points.append(json.loads(done.read_text(encoding="utf-8")))
            continue
        seconds = train_point(point=point, out=out, dirs=dirs, gin_file=gin_file, bindings=bindings)
        if point.get("init"):
            before = next(p for p in points if p["name"] == point["init"])["ppl_after"]
        else:
            init_ppl = init_ppl or evaluator.random_init(run_dir)
            before = init_ppl
        record = {
            **point,
            "train_seconds": seconds,
            "target_tokens": trained_tokens(run_dir),
            "ppl_before": before,
            "ppl_after": evaluator.checkpoint(run_dir),
        }
        io_utils.atomic_write_json(done, record)
        _say(f"{point['name']}: {sweep_report.format_ppl(record)}")
        points.append(record)
    results = {"gin_file": gin_file, "bindings": bindings, "settings": settings, "points": points}
    io_utils.atomic_write_json(out / "results.json", results)
    paths = sweep_report.write_report(results, out_dir=out)
    _say(f"table: {paths['table']}  plot: {paths['plot']}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gin_file", required=True, help="the scale gin: tiny.gin or full.gin")
    parser.add_argument("--out", required=True, help="sweep directory (one run dir per point)")
    parser.add_argument("--gin", dest="bindings", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(gin_utils.normalize_argv(sys.argv[1:] if argv is None else argv))
    try:
        run_sweep(
            gin_file=str(pathlib.Path(args.gin_file).resolve()),
            out=pathlib.Path(args.out).resolve(),
            bindings=args.bindings,
        )
    except errors.VertjaxError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
