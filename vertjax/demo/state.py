"""The demo's configuration and its resumable state (`results.json` under `--out`)."""

from __future__ import annotations

import dataclasses
import importlib.resources
import pathlib
from typing import Any

from vertjax import io_utils


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
    # `vertjax demo --llm`: the optional stage answering with the local LLM (`make llm`).
    llm: bool = False
    llm_max_tokens: int = 96


@dataclasses.dataclass
class DemoState:
    """The config and every finished stage's figures; each stage saves it when done."""

    config: DemoConfig
    results: dict[str, Any]

    @property
    def out(self) -> pathlib.Path:
        return self.config.out

    def save(self) -> None:
        io_utils.atomic_write_json(self.out / "results.json", self.results)


def say(message: str) -> None:
    """A progress line on stdout, flushed (the demo is watched while it runs)."""
    print(f"[demo] {message}", flush=True)


# Hand-written data the demo evaluates on (claims, lay-language questions), shipped as package data.
RESOURCES = pathlib.Path(str(importlib.resources.files("vertjax") / "resources" / "demo"))
