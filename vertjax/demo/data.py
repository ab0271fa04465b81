"""The demo's first stages: the embedded data packs and the SentencePiece vocabulary."""

from __future__ import annotations

import logging
import pathlib

from vertjax import errors
from vertjax.data import packs, vocab
from vertjax.demo.state import DemoState, say

logger = logging.getLogger(__name__)

DOMAIN_PACK = "python-stdlib"
GENERAL_PACKS = ("general-wordnet", "general-shakespeare")  # first one that builds is used


def stage_data(state: DemoState) -> None:
    """Builds the embedded domain pack and the first general pack available here."""
    data = state.results.setdefault("data", {})
    for role, names in (("domain", (DOMAIN_PACK,)), ("general", GENERAL_PACKS)):
        if role in data and pathlib.Path(data[role]["dir"]).is_dir():
            continue
        for name in names:
            pack_dir = state.out / "data" / name
            try:
                manifest = packs.ensure_pack(name, pack_dir, announce=say)
            except errors.VertjaxError as e:
                logger.warning("pack %s unavailable: %s", name, e)
                say(f"pack {name} unavailable here ({e}); trying the next one")
                continue
            data[role] = {"pack": name, "dir": str(pack_dir), "counts": manifest["counts"]}
            break
        else:
            if role == "domain":
                raise errors.DataError(f"the domain pack {DOMAIN_PACK} could not be built")
            say("no general-text pack available: the demo trains on the domain pack only")
    state.save()


def stage_vocab(state: DemoState) -> None:
    """Trains the SentencePiece vocabulary on the training splits of the demo's packs."""
    vocab_dir = state.out / "vocab"
    if (vocab_dir / "spm.model").is_file() and "vocab" in state.results:
        return
    summary = vocab.ensure_vocab(
        out_dir=vocab_dir,
        vocab_size=state.config.vocab_size,
        announce=say,
        inputs=[pathlib.Path(d["dir"]) / "train.jsonl" for d in state.results["data"].values()],
        max_sentences=40_000,
        seed=state.config.seed,
    )
    state.results["vocab"] = {"dir": str(vocab_dir), **summary}
    state.save()
