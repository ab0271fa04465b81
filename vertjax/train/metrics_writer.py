"""Metrics to TensorBoard (clu metric writers) and to `MODEL_DIR/metrics.jsonl`.

On resume, records past the restored step (written after the last checkpoint by a run that was
killed) are dropped from `metrics.jsonl` and from the TensorBoard event files, so both read as one
clean history instead of repeating those steps.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Mapping

import jax


class MetricsWriter:
    """Writes scalars per step; only process 0 writes in multi-host runs."""

    def __init__(self, model_dir: str | os.PathLike, *, resume_step: int = 0):
        from clu import metric_writers

        self.path = pathlib.Path(model_dir) / "metrics.jsonl"
        self._active = jax.process_index() == 0
        if self._active:  # before this run's event file exists
            truncate_events_after(pathlib.Path(model_dir), resume_step)
        self._tb = metric_writers.create_default_writer(
            str(model_dir), just_logging=not self._active, asynchronous=False
        )
        if self._active:
            self._truncate_after(resume_step)
            self._jsonl = self.path.open("a", encoding="utf-8")

    def _truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a kill
            if int(record.get("step", 0)) <= step:
                kept.append(line)
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, step: int, scalars: Mapping[str, float]) -> None:
        self._tb.write_scalars(step, dict(scalars))
        if self._active:
            self._jsonl.write(json.dumps({"step": int(step), **scalars}) + "\n")
            self._jsonl.flush()

    def close(self) -> None:
        self._tb.flush()
        self._tb.close()
        if self._active:
            self._jsonl.close()


def truncate_events_after(model_dir: pathlib.Path, step: int) -> None:
    """Rewrites `model_dir`'s TensorBoard event files without the events past `step`.

    A run killed after its last checkpoint logged steps that the resumed run logs again; left in
    place, TensorBoard plots both. A torn last record (the kill) ends the file's read there.
    """
    import tensorflow as tf

    for path in sorted(model_dir.glob("events.out.tfevents.*")):
        kept, dropped = [], 0
        try:
            for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
                event = tf.compat.v1.Event.FromString(record)
                if event.step > step:
                    dropped += 1
                else:
                    kept.append(record)
        except tf.errors.DataLossError:
            dropped += 1  # a torn last record
        if not dropped:
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        with tf.io.TFRecordWriter(str(tmp)) as writer:
            for record in kept:
                writer.write(record)
        os.replace(tmp, path)
