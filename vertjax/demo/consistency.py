"""The demo's NLI consistency stage: synthesise NLI pairs from the domain pack, train a tiny T5
judge, and measure ROC AUC on held-out pairs and on the hand-written claim sets, beside word
overlap; `consistency_judge` decides whether the answering stage uses it.
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

from vertjax import io_utils
from vertjax.consistency import classifier_data, metrics, nli, nli_data
from vertjax.data import packs, pipeline, tasks
from vertjax.data import vocab as vocab_lib
from vertjax.demo.state import RESOURCES, DemoState, say
from vertjax.models import encoder_decoder, nli_classifier, t5
from vertjax.train import checkpoints, data_config, optimizers, trainer

# Hand-written claim sets (not produced by the synthesizer): an older 48-pair set used while
# developing the recipe, and an 80-pair held-out set, half adversarial to word overlap.
CLAIM_SETS = {
    "domain_claims": RESOURCES / "nli_domain_claims.jsonl",
    "heldout_claims": RESOURCES / "nli_claims_heldout.jsonl",
}


def _slice_summary(records: list[dict[str, Any]], scores: list[float]) -> dict[str, Any]:
    """Model and word-overlap ROC AUC on the adversarial / ordinary slices of a labelled set."""
    out = {}
    for name, keep in (("adversarial", True), ("ordinary", False)):
        rows = [i for i, r in enumerate(records) if bool(r.get("adversarial")) == keep]
        positives = [nli_data.is_positive(records[i]["label"]) for i in rows]
        if not rows or all(positives) or not any(positives):
            continue
        overlap = [
            metrics.lexical_overlap(records[i]["premise"], records[i]["hypothesis"]) for i in rows
        ]
        out[name] = {
            "pairs": len(rows),
            "roc_auc": metrics.roc_auc([scores[i] for i in rows], positives),
            "lexical_overlap_roc_auc": metrics.roc_auc(overlap, positives),
        }
    return out


def run(
    *,
    out_dir: str | pathlib.Path,
    pack_dir: str | pathlib.Path,
    vocab_dir: str | pathlib.Path,
    mode: str = "classifier",
    train_steps: int = 400,
    batch_size: int = 32,
    inputs_length: int = 160,
    premise_sentences: int = 2,
    per_passage: int = 2,
    learning_rate: float | None = None,
    seed: int = 0,
    initial_checkpoint_path: str | None = None,
) -> dict[str, Any]:
    """Synthesises NLI data, trains the tiny NLI T5 and evaluates it; resumes on a rerun.

    `mode` is "classifier" (T5 encoder + alignment head, `models.nli_classifier`: learns at this
    scale) or "seq2seq" (TRUE's text-to-text label scoring: stays near chance at this budget).
    `initial_checkpoint_path` starts from a pretrained tiny T5 of the same shape (the demo's
    continued-pretraining run). In seq2seq mode the targets length is the longest label's token
    count under this vocab (checked, never trimmed); `inputs_length` is the premise + hypothesis
    budget in tokens either way.

    Returns `{run_dir, vocab_dir, data_dir, train_seconds, eval: {name: metrics summary}}`. Build
    a `nli.Scorer.from_run_dir(run_dir, vocab_dir)` from it to check the demo's answers
    (`postprocess.postprocess_answer(..., predict=scorer.predict)`).
    """
    if mode not in ("classifier", "seq2seq"):
        raise ValueError(f"mode must be 'classifier' or 'seq2seq', got {mode!r}")
    out_dir = pathlib.Path(out_dir)
    data_dir, run_dir = out_dir / "data", out_dir / "model"
    if not (data_dir / "test.jsonl").is_file():
        splits = nli_data.synthesize(
            packs.load_passages(pack_dir),
            seed=seed,
            premise_sentences=premise_sentences,
            per_passage=per_passage,
        )
        nli_data.write_splits(splits, data_dir)
    hypothesis_tokens = inputs_length // 4
    premise_tokens = inputs_length - hypothesis_tokens
    if mode == "classifier":
        vocabulary = vocab_lib.load_vocab(vocab_dir)
        model: Any = nli_classifier.NLIClassifierModel(
            t5.tiny_config(vocabulary.vocab_size),
            hypothesis_tokens=hypothesis_tokens,
            premise_tokens=premise_tokens,
        )
        train_data: Any = classifier_data.NLIPairsDataSource(
            files=[data_dir / "train.jsonl"],
            vocab=vocab_dir,
            batch_size=batch_size,
            hypothesis_length=hypothesis_tokens + 1,
            premise_length=premise_tokens + 1,
            seed=seed,
        )
        learning_rate = 0.001 if learning_rate is None else learning_rate
    else:
        task = tasks.register_jsonl_task(
            "demo_nli_consistency",
            split_files={s: data_dir / f"{s}.jsonl" for s in ("train", "validation")},
            vocab_path=vocab_dir,
            kind="seq2seq",
        )
        vocabulary = pipeline.get_vocabulary(task.name)
        targets_length = nli.check_label_length(
            vocabulary, nli_data.NLI_LABELS, 8, vocab_path=vocab_dir
        )
        model = encoder_decoder.EncoderDecoderModel(t5.tiny_config(vocabulary.vocab_size))
        train_data = data_config.DatasetConfig(
            mixture_or_task_name=task.name,
            task_feature_lengths={"inputs": inputs_length, "targets": targets_length},
            batch_size=batch_size,
            seed=seed,
            targets_must_fit=True,
        )
        learning_rate = 0.003 if learning_rate is None else learning_rate
    schedule = optimizers.warmup_cosine_schedule(
        peak_learning_rate=learning_rate,
        warmup_steps=max(1, train_steps // 10),
        total_steps=train_steps,
    )
    start = time.perf_counter()
    trainer.train(
        model_dir=str(run_dir),
        model=model,
        train_data=train_data,
        optimizer=optimizers.adamw(learning_rate=schedule, weight_decay=0.0),
        learning_rate_fn=schedule,
        total_steps=train_steps,
        checkpoint_period=max(1, train_steps // 2),
        seed=seed,
        initial_checkpoint_path=initial_checkpoint_path,
        progress=False,
    )
    seconds = time.perf_counter() - start
    checkpoints.resolve_checkpoint(run_dir)
    scorer = nli.Scorer.from_run_dir(
        run_dir,
        vocab_dir,
        max_premise_tokens=premise_tokens,
        window_stride=premise_tokens // 2,
        max_hypothesis_tokens=hypothesis_tokens,
    )
    summary = {}
    for name, path in (("synth_test", data_dir / "test.jsonl"), *CLAIM_SETS.items()):
        if not path.is_file():
            continue
        records = io_utils.load_jsonl(path, required_keys=("premise", "hypothesis", "label"))
        predictions = scorer.predict(
            [r["premise"] for r in records], [r["hypothesis"] for r in records]
        )
        result = metrics.evaluate(records, predictions)
        metrics.plot_calibration(
            {"T5 NLI": result["model"]["calibration"]},
            out_dir / f"calibration_{name}.png",
            title=f"calibration: {name}",
        )
        summary[name] = {
            "pairs": result["pairs"],
            "roc_auc": result["model"]["roc_auc"],
            "accuracy": result["model"]["accuracy"],
            "lexical_overlap_roc_auc": result["lexical_overlap"]["roc_auc"],
            "slices": _slice_summary(records, [p.p_entailment for p in predictions]),
        }
    results = {
        "run_dir": str(run_dir),
        "vocab_dir": str(vocab_dir),
        "data_dir": str(data_dir),
        "mode": mode,
        "train_steps": train_steps,
        "train_seconds": seconds,
        "eval": summary,
    }
    io_utils.atomic_write_json(out_dir / "results.json", results)
    return results


def stage_consistency(state: DemoState) -> None:
    """NLI consistency model: synthesised pairs (adversarial to word overlap), a T5-encoder
    classifier warm-started from the pretrained tiny T5, ROC AUC beside word overlap."""
    if "consistency" in state.results:
        return
    say(f"training the NLI consistency model for {state.config.nli_steps} steps")
    state.results["consistency"] = run(
        out_dir=state.out / "consistency",
        pack_dir=state.results["data"]["domain"]["dir"],
        vocab_dir=state.out / "vocab",
        train_steps=state.config.nli_steps,
        seed=state.config.seed,
        initial_checkpoint_path=state.results["pretrain"]["run_dir"],
    )
    state.save()


def consistency_judge(state: DemoState) -> tuple[str | None, str]:
    """The NLI run to judge answers with, if it beats the lexical baseline on held-out pairs.

    A judge is a model choice like any other: the tiny demo NLI model is used only when its
    held-out ROC AUC is higher than lexical overlap's; otherwise the lexical check is used and
    the report says so.
    """
    nli_results = state.results.get("consistency")
    held_out = (nli_results or {}).get("eval", {}).get("synth_test")
    if not held_out:
        return None, "lexical overlap (no NLI model trained)"
    model_auc, lexical_auc = held_out["roc_auc"], held_out["lexical_overlap_roc_auc"]
    if model_auc > lexical_auc:
        return nli_results[
            "run_dir"
        ], f"T5 NLI (held-out ROC AUC {model_auc:.3f} > lexical {lexical_auc:.3f})"
    return None, (
        f"lexical overlap (held-out ROC AUC {lexical_auc:.3f}; the tiny T5 NLI model's "
        f"{model_auc:.3f} is lower, so it does not judge the answers)"
    )
