"""The demo's reference (copy) decoding stage: speed against greedy with the pretrained tiny T5."""

from __future__ import annotations

from vertjax.data import packs
from vertjax.demo.state import DemoState, say
from vertjax.models import reference_decoding
from vertjax.train import restore


def stage_decoding(state: DemoState) -> None:
    """Reference (copy) decoding vs greedy with the demo's pretrained T5 on domain passages."""
    if "decoding" in state.results:
        return
    say("timing reference (copy) decoding against greedy")
    t5 = restore.load_pretrained(state.results["pretrain"]["run_dir"], state.out / "vocab")
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
