"""Issue 15 finding 10: TensorBoard event files repeated the steps a killed run had logged after
its last checkpoint once the resumed run logged them again."""

from __future__ import annotations

import json

from vertjax.train import metrics_writer


def _logged_steps(model_dir, tag: str) -> list[int]:
    import tensorflow as tf

    steps = []
    for path in sorted(model_dir.glob("events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            event = tf.compat.v1.Event.FromString(record)
            steps += [event.step for value in event.summary.value if value.tag == tag]
    return sorted(steps)


def test_resumed_run_does_not_repeat_steps_in_tensorboard(tmp_path):
    killed = metrics_writer.MetricsWriter(tmp_path)
    for step in range(1, 6):  # checkpoint at 3; steps 4-5 logged, then the kill
        killed.write(step, {"loss": 1.0 / step})
    killed.close()
    resumed = metrics_writer.MetricsWriter(tmp_path, resume_step=3)
    for step in (4, 5, 6):
        resumed.write(step, {"loss": 1.0 / step})
    resumed.close()
    assert _logged_steps(tmp_path, "loss") == [1, 2, 3, 4, 5, 6]
    records = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in records] == [1, 2, 3, 4, 5, 6]
