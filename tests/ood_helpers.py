"""A tiny general-text pack for the OOD tests: everyday sentences far from the tiny corpus."""

from __future__ import annotations

import pathlib
import random

from vertjax import io_utils

_SUBJECTS = "the gardener|my grandmother|a baker|the chef|our neighbour|a tourist|the farmer".split(
    "|"
)
_VERBS = "plants|bakes|paints|cooks|harvests|waters|visits|knits|sings about".split("|")
_OBJECTS = (
    "tulip bulbs|sourdough bread|the mountains|roast chicken|ripe tomatoes|the old cathedral|"
    "a woollen scarf|the autumn leaves|wild strawberries|the river valley|fresh basil"
).split("|")
_TAILS = "in early spring|before breakfast|with cinnamon|near the lake|every summer".split("|")


def write_general_pack(root: pathlib.Path, *, documents: int = 40) -> pathlib.Path:
    """A built-pack folder (manifest + splits) of `documents` two-passage everyday documents."""
    rng = random.Random(1)
    rows = []
    for d in range(documents):
        for p in range(2):
            text = ". ".join(
                f"{rng.choice(_SUBJECTS).capitalize()} {rng.choice(_VERBS)} "
                f"{rng.choice(_OBJECTS)} {rng.choice(_TAILS)}"
                for _ in range(4)
            )
            rows.append({"id": f"g{d}-{p}", "doc_id": f"g{d}", "title": "Everyday", "text": text})
    root.mkdir(parents=True, exist_ok=True)
    io_utils.write_jsonl(root / "train.jsonl", rows)
    for split in ("validation", "test"):
        io_utils.write_jsonl(root / f"{split}.jsonl", [])
    io_utils.atomic_write_json(root / "manifest.json", {"pack": "tiny-general"})
    return root
