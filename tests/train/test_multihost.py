"""Two local processes joined by `jax.distributed.initialize` on 127.0.0.1 train one sharded model.

Each process has 2 fake CPU devices (a 4-device global mesh), reads its half of every global batch,
and both write one checkpoint together. The losses must match a one-process run on the same data,
and the checkpoint must restore in a plain single process.
"""

from __future__ import annotations

import json
import os
import pathlib
import shlex
import socket
import subprocess
import sys

import numpy as np
import optax
import pytest
from synthetic_source import SyntheticSource, tiny_model

from vertjax.train import checkpoints, restore, trainer

HERE = pathlib.Path(__file__).resolve().parent
STEPS = 3

WORKER = """
import json, sys
sys.path.insert(0, {here!r})
import optax
from synthetic_source import SyntheticSource, tiny_model
from vertjax.train import partitioning, trainer

port, process_id, model_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
partitioning.initialize_distributed(
    coordinator_address=f"127.0.0.1:{{port}}", num_processes=2, process_id=process_id
)
import jax
assert jax.process_count() == 2 and jax.device_count() == 4, (jax.process_count(), jax.devices())
result = trainer.train(
    model_dir=model_dir, model=tiny_model(), train_data=SyntheticSource(batch_size=8),
    optimizer=optax.adam(1e-2), total_steps={steps}, checkpoint_period={steps},
    mesh_shape=(2, 2), progress=False,
)
print("RESULT " + json.dumps({{"process": process_id, "losses": result.losses}}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_and_checkpoint_together(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(here=str(HERE), steps=STEPS), encoding="utf-8")
    model_dir = tmp_path / "run"
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu"
    )
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), port, str(i), str(model_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=300)
            outputs.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for rc, _, err in outputs:
        assert rc == 0, err[-3000:]
    results = [
        json.loads(line[len("RESULT ") :])
        for _, out, _ in outputs
        for line in out.splitlines()
        if line.startswith("RESULT ")
    ]
    assert sorted(r["process"] for r in results) == [0, 1]
    losses = [np.array([r["losses"][str(s)] for s in range(1, STEPS + 1)]) for r in results]
    np.testing.assert_array_equal(losses[0], losses[1])

    assert checkpoints.CheckpointManager(model_dir, read_only=True).all_steps() == [STEPS]
    config, params = restore.load_params(model_dir)
    assert config.emb_dim == 32
    query = params["encoder"]["layers_0"]["attention"]["query"]["kernel"]
    assert query.shape == (32, 32) and np.all(np.isfinite(np.asarray(query)))

    # The same global batches on one process give the same losses.
    single = trainer.train(
        model_dir=str(tmp_path / "single"),
        model=tiny_model(),
        train_data=SyntheticSource(batch_size=8),
        optimizer=optax.adam(1e-2),
        total_steps=STEPS,
        checkpoint_period=STEPS,
        progress=False,
    )
    np.testing.assert_allclose(
        losses[0], [single.losses[s] for s in range(1, STEPS + 1)], rtol=0, atol=1e-5
    )


SCRIPTS = HERE.parent.parent / "scripts"


def _dry_run(script: str, *args: str) -> list[str]:
    proc = subprocess.run(
        ["bash", str(SCRIPTS / script), "--dry_run", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_gpu_launcher_passes_the_multihost_flags_and_the_gin_flags_through():
    flags = ["--gin_file=runs/pretrain.gin", "--gin.TASK_FEATURE_LENGTHS={'inputs': 64}"]
    (line,) = _dry_run(
        "launch_gpu_multihost.sh",
        "--coordinator",
        "10.0.0.1:1234",
        "--num_hosts",
        "4",
        "--host_id",
        "3",
        "--vertjax",
        "vertjax",
        "--",
        *flags,
    )
    argv = shlex.split(line)
    assert argv[:2] == ["vertjax", "train"]
    assert argv[2:8] == [
        "--coordinator_address",
        "10.0.0.1:1234",
        "--num_processes",
        "4",
        "--process_id",
        "3",
    ]
    assert argv[-2:] == flags
    (slurm,) = _dry_run("launch_gpu_multihost.sh", "--slurm", "--vertjax", "vertjax", "--", "-x")
    assert shlex.split(slurm) == ["vertjax", "train", "--multihost", "--no_progress", "-x"]


def test_tpu_launcher_runs_one_command_on_all_workers():
    flags = ["--gin_file=runs/pretrain.gin", "--gin.MODEL_DIR=gs://b/run", "--gin.X={'a': 1}"]
    (line,) = _dry_run("launch_tpu_pod.sh", "--tpu", "pod", "--zone", "z1", "--", *flags)
    argv = shlex.split(line)
    assert argv[:9] == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "ssh",
        "pod",
        "--zone",
        "z1",
        "--worker=all",
    ]
    remote = shlex.split(argv[argv.index("--command") + 1])
    assert remote[:4] == ["cd", "~/vertjax", "&&", ".venv/bin/vertjax"]
    assert remote[4:7] == ["train", "--multihost", "--no_progress"] and remote[7:] == flags


def test_launchers_refuse_missing_options():
    for script, args, message in [
        ("launch_gpu_multihost.sh", ["--num_hosts", "2", "--", "-x"], "need --coordinator"),
        ("launch_tpu_pod.sh", ["--tpu", "pod", "--", "-x"], "need --tpu and --zone"),
        ("launch_tpu_pod.sh", ["--tpu", "pod", "--zone", "z"], "no vertjax train flags"),
    ]:
        proc = subprocess.run(
            ["bash", str(SCRIPTS / script), *args], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
