"""`vertjax ood train`: the refusal folder of an assistant, trained and measured on held-out questions.

`train_ood_dir` builds the in-domain / out-of-domain question sets the way the demo does
(`ood.training_questions`: template questions about the domain pack's passages vs a general pack's
passages plus the hand-written questions of `vertjax.synth.refusals`), holds out a share of the
documents of both packs and of the hand-written questions by a stable hash (`ood.split_by_hash`),
trains `ood.train_classifier` on the rest, and measures refusal precision / recall on the held-out
questions. The classifier's lexicon feature (which words the corpus uses) is the whole pack's, as
in use, where questions are about documents of the index: the held-out documents' words are known,
no question about them was trained on. With an index it also calibrates retrieval confidence: each retriever of the index
answers the held-out in-domain questions and their top scores are kept
(`calibration.RetrievalCalibration`), so `MIN_TOP_SCORE_PERCENTILE` means the same on BM25, dense
and hybrid scores; the report says how well each percentile separates the held-out mix.

The folder (`ood.json`, `ood_weights.npz`, `report.json`, `retrieval_calibration.json` with an
index) is written whole through `io_utils.atomic_dir`; it is what `--gin.OOD_DIR=DIR` loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from vertjax import errors, io_utils
from vertjax.data import packs
from vertjax.synth import refusals
from vertjax.system import build, calibration, ood

PathLike = str | os.PathLike
REPORT_FILE = "report.json"
REPORT_FORMAT = "vertjax-ood-report"
PACKS_SUBDIR = "packs"


def resolve_pack(
    value: str, *, flag: str, announce: Callable[[str], None] | None = None
) -> pathlib.Path:
    """A built pack folder, or a registered pack name built (once) into the cache's `packs/`.

    `DataError` naming `flag` when `value` is neither.
    """
    path = pathlib.Path(value)
    if path.is_dir():
        packs.read_manifest(path)
        return path
    if value not in {p["name"] for p in packs.list_packs()}:
        raise errors.DataError(
            f"{flag} {value}: neither a built pack folder (`vertjax data build`) nor a pack name"
            " (`vertjax data list`)"
        )
    out = packs.cache_dir() / PACKS_SUBDIR / value
    packs.ensure_pack(value, out, announce=announce)
    return out


def _split_documents(
    passages: Sequence[Mapping[str, str]], *, test_fraction: float, salt: str
) -> tuple[list[Mapping[str, str]], list[Mapping[str, str]]]:
    """(train, held-out) passages, whole documents to one side by a hash of their doc_id."""
    doc_ids = list(dict.fromkeys(p["doc_id"] for p in passages))
    _, held = ood.split_by_hash(doc_ids, test_fraction=test_fraction, salt=salt)
    held_out = set(held)
    return (
        [p for p in passages if p["doc_id"] not in held_out],
        [p for p in passages if p["doc_id"] in held_out],
    )


def _manifest_digest(pack_dir: pathlib.Path | None) -> str | None:
    if pack_dir is None:
        return None
    return hashlib.sha256((pack_dir / packs.MANIFEST).read_bytes()).hexdigest()


def _check_out(out: pathlib.Path, settings: Mapping[str, Any], *, overwrite: bool) -> dict | None:
    """The report of a complete earlier run with the same settings (to reuse), else None when
    `out` may be written; `ConfigError` when it holds another run (without `overwrite`) or
    anything that is not an OOD folder."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return None
    if not out.is_dir():
        raise errors.ConfigError(f"--out {out}: exists and is not a folder")
    report_path = out / REPORT_FILE
    if not report_path.is_file() and not (out / ood.CONFIG_FILE).is_file():
        raise errors.ConfigError(
            f"--out {out}: not empty and holds no OOD classifier; choose another --out"
        )
    if overwrite:
        return None
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
        earlier = report["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise errors.ConfigError(
            f"--out {out}: holds an OOD classifier without a {REPORT_FILE} (not from"
            " `vertjax ood train`, or interrupted); pass --overwrite to replace it"
        ) from None
    changed = sorted(k for k in {*settings, *earlier} if settings.get(k) != earlier.get(k))
    if changed:
        raise errors.ConfigError(
            f"--out {out}: trained with other settings ({', '.join(changed)} differ); pass"
            " --overwrite to retrain, or choose another --out"
        )
    return report


def _retrieval_rows(
    retrievers: Mapping[str, Any],
    table: calibration.RetrievalCalibration,
    in_domain: Sequence[str],
    out_of_domain: Sequence[str],
) -> dict[str, Any]:
    """Per retriever: the quantiles, and refusal metrics on the held-out mix of refusing below
    each reported percentile (retrieval alone, without the classifier)."""
    rows: dict[str, Any] = {}
    truth = [False] * len(in_domain) + [True] * len(out_of_domain)
    for kind, retriever in retrievers.items():
        hits = retriever.search([*in_domain, *out_of_domain], 10)
        tops = [max((h.score for h in hs), default=None) for hs in hits]
        by_percentile = {}
        for p in calibration.REPORTED_PERCENTILES:
            value = table.threshold(kind, p)
            refused = [t is None or t < value for t in tops]
            by_percentile[f"p{p}"] = {"threshold": value, **ood.refusal_metrics(truth, refused)}
        rows[kind] = {
            "questions": len(table.scores[kind]),
            "quantiles": table.quantiles(kind),
            "refusal_by_percentile": by_percentile,
        }
    return rows


def train_ood_dir(
    *,
    pack_dir: PathLike,
    general_dir: PathLike | None,
    out_dir: PathLike,
    index_dir: PathLike | None = None,
    seed: int = 0,
    test_fraction: float = 0.2,
    max_passages: int = 2000,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Trains, measures and writes the OOD folder; returns the report (`reused` when an identical
    earlier run was complete and nothing was retrained).

    Args:
      pack_dir: the built domain pack; general_dir: a built general pack, or None to train
        against the hand-written out-of-domain questions only.
      out_dir: the folder to write (replaced whole with `overwrite`).
      index_dir: an index of the domain pack to calibrate retrieval confidence on (optional).
      seed: question templates and the hash split; test_fraction: share held out.
      max_passages: passages per pack that training questions are written from.
    """
    if not 0.0 < test_fraction < 1.0:
        raise errors.ConfigError(f"--test_fraction {test_fraction}: must lie in (0, 1)")
    if max_passages < 1:
        raise errors.ConfigError(f"--max_passages {max_passages}: must be at least 1")
    pack_dir, out = pathlib.Path(pack_dir), pathlib.Path(out_dir)
    general = pathlib.Path(general_dir) if general_dir is not None else None
    manifest = packs.read_manifest(pack_dir)
    if general is not None:
        packs.read_manifest(general)
    kinds = calibration.index_kinds(index_dir) if index_dir is not None else []
    settings = {
        "pack": str(pack_dir.resolve()),
        "pack_manifest_sha256": _manifest_digest(pack_dir),
        "general": str(general.resolve()) if general is not None else None,
        "general_manifest_sha256": _manifest_digest(general),
        "index": str(pathlib.Path(index_dir).resolve()) if index_dir is not None else None,
        "seed": seed,
        "test_fraction": test_fraction,
        "max_passages": max_passages,
    }
    earlier = _check_out(out, settings, overwrite=overwrite)
    if earlier is not None:
        return {**earlier, "reused": True}

    salt = f"ood-{seed}"
    domain_passages = packs.load_passages(pack_dir)
    domain_train, domain_held = _split_documents(
        domain_passages, test_fraction=test_fraction, salt=salt
    )
    general_train, general_held = (
        _split_documents(packs.load_passages(general), test_fraction=test_fraction, salt=salt)
        if general is not None
        else ([], [])
    )
    refusal_train, refusal_held = ood.split_by_hash(
        refusals.OUT_OF_DOMAIN_QUESTIONS, test_fraction=test_fraction, salt=salt
    )
    domain_name = (manifest.get("domain") or {}).get("name") or manifest.get("pack", "")
    classifier = ood.train_classifier(
        domain_train,
        general_train,
        refusal_questions=refusal_train,
        seed=seed,
        max_passages=max_passages,
        lexicon=ood.domain_lexicon(domain_passages),
        meta={"domain": domain_name, "pack": settings["pack"]},
    )
    trained_on = ood.training_questions(
        domain_train,
        general_train,
        refusal_questions=refusal_train,
        seed=seed,
        max_passages=max_passages,
    )
    seen = {q for side in trained_on for q in side}
    held_domain, held_general = ood.training_questions(
        domain_held,
        general_held,
        refusal_questions=refusal_held,
        seed=seed + 2,
        max_passages=max_passages,
    )
    held_domain = [q for q in dict.fromkeys(held_domain) if q not in seen]
    held_general = [q for q in dict.fromkeys(held_general) if q not in seen]
    if not held_domain or not held_general:
        raise errors.DataError(
            f"the held-out split has {len(held_domain)} in-domain and {len(held_general)}"
            " out-of-domain questions; a bigger pack or --test_fraction is needed"
        )
    truth = [False] * len(held_domain) + [True] * len(held_general)
    p_in = classifier.probabilities([*held_domain, *held_general])
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "settings": settings,
        "domain": domain_name,
        "train": {
            "domain_questions": classifier.meta["domain_questions"],
            "general_questions": classifier.meta["general_questions"],
        },
        "held_out": {"domain_questions": len(held_domain), "general_questions": len(held_general)},
        "classifier": {
            "threshold": classifier.threshold,
            **ood.refusal_metrics(truth, [p < classifier.threshold for p in p_in]),
        },
    }
    table = None
    if index_dir is not None:
        retrievers = {kind: build.load_retriever(index_dir, kind=kind) for kind in kinds}
        table = calibration.RetrievalCalibration.measure(
            retrievers, held_domain, index_dir=index_dir
        )
        report["retrieval"] = _retrieval_rows(retrievers, table, held_domain, held_general)
    with io_utils.atomic_dir(out) as tmp:
        classifier.save(tmp)
        if table is not None:
            table.save(tmp)
        io_utils.atomic_write_json(tmp / REPORT_FILE, report)
    return {**report, "reused": False}


def report_table(report: Mapping[str, Any]) -> str:
    """The report as a small markdown table: refusal on the held-out mix, by the classifier and
    by each retriever's calibrated threshold at percentile 5."""
    held = report["held_out"]
    lines = [
        f"Held-out refusal ({held['domain_questions']} in-domain, {held['general_questions']}"
        " out-of-domain questions; positive class: out of domain):",
        "",
        "| refusal by | threshold | precision | recall | F1 | false refusals | missed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, threshold: float, m: Mapping[str, Any]) -> str:
        return (
            f"| {name} | {threshold:.4g} | {m['precision']:.3f} | {m['recall']:.3f} |"
            f" {m['f1']:.3f} | {m['false_refusals']} | {m['missed_refusals']} |"
        )

    lines.append(
        row("classifier P(in-domain)", report["classifier"]["threshold"], report["classifier"])
    )
    for kind, entry in report.get("retrieval", {}).items():
        m = entry["refusal_by_percentile"]["p5"]
        lines.append(row(f"{kind} top score < percentile 5", m["threshold"], m))
    return "\n".join(lines)
