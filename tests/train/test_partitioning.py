"""Meshes, logical axis rules and shardings: one device vs 8 fake CPU devices give the same training.

The 8-device runs happen in one subprocess (`XLA_FLAGS` must be set before jax is imported); the
one-device baseline runs in the test process. Adafactor with a small factoring threshold exercises
both optimizer-state paths: moments sharded like their parameter, factored statistics replicated.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P
from synthetic_source import SyntheticSource, tiny_config, tiny_model

from vertjax import errors
from vertjax.models import encoder_decoder
from vertjax.train import optimizers, partitioning, restore, trainer

HERE = pathlib.Path(__file__).resolve().parent
STEPS = 3
MESHES = {"8x1": ((8, 1), 1), "4x2": ((4, 2), 1), "2x4": ((2, 4), 1), "2x4_dims2": ((2, 4), 2)}

SCRIPT = """
import json, sys
sys.path.insert(0, {here!r})
import jax
from synthetic_source import SyntheticSource, tiny_model
from vertjax.train import optimizers, partitioning, trainer

assert jax.device_count() == 8, jax.devices()
root = sys.argv[1]
out = {{"losses": {{}}, "specs": {{}}}}


def optimizer():
    return optimizers.adafactor(learning_rate=1e-2, min_dim_size_to_factor=16)


def run(name, mesh_shape, dims, steps):
    result = trainer.train(
        model_dir=f"{{root}}/{{name}}", model=tiny_model(),
        train_data=SyntheticSource(batch_size=8), optimizer=optimizer(), total_steps=steps,
        checkpoint_period=steps, mesh_shape=mesh_shape, parameter_partitioning_dims=dims,
        progress=False,
    )
    return result.losses


for name, (mesh_shape, dims) in {meshes!r}.items():
    out["losses"][name] = run(name, mesh_shape, dims, {steps})
    if mesh_shape != (2, 4):
        continue
    mesh = partitioning.create_mesh(mesh_shape)
    rules = partitioning.standard_logical_axis_rules(parameter_partitioning_dims=dims)
    with jax.set_mesh(mesh):
        steps = trainer.build_steps(
            model=tiny_model(), optimizer=optimizer(), mesh=mesh, rules=rules, dropout_seed=1
        )
        params = jax.jit(tiny_model().init_params, out_shardings=steps.param_shardings)(
            jax.random.key(0)
        )
        opt_state = jax.jit(optimizer().init, out_shardings=steps.opt_shardings)(params)
        batch = partitioning.global_batch(next(SyntheticSource(batch_size=8).iterator()), mesh)
        params, opt_state, _ = steps.train(params, opt_state, batch, 0)
    layer = params["encoder"]["layers_0"]
    leaves = jax.tree_util.tree_leaves_with_path(opt_state)
    out["specs"][name] = {{
        "query": list(layer["attention"]["query"]["kernel"].sharding.spec),
        "out": list(layer["attention"]["out"]["kernel"].sharding.spec),
        "wi_0": list(layer["mlp"]["wi_0"]["kernel"].sharding.spec),
        "wo": list(layer["mlp"]["wo"]["kernel"].sharding.spec),
        "embedding": list(params["token_embedder"]["embedding"].sharding.spec),
        "query_shard_shape": list(
            layer["attention"]["query"]["kernel"].addressable_shards[0].data.shape
        ),
        "opt_specs": {{
            jax.tree_util.keystr(path): list(leaf.sharding.spec) for path, leaf in leaves
        }},
    }}

# Resume a (2, 4) checkpoint on a (4, 2) mesh: orbax reshards on restore.
out["losses"]["reshard"] = {{
    **run("reshard", (2, 4), 1, 1), **run("reshard", (4, 2), 1, {steps})
}}
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory):
    """Runs every 8-device case once; returns {'losses': {mesh: {step: loss}}, 'specs': ...}."""
    root = tmp_path_factory.mktemp("meshes")
    script = root / "meshes.py"
    script.write_text(SCRIPT.format(here=str(HERE), meshes=MESHES, steps=STEPS), encoding="utf-8")
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(root)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.fixture(scope="module")
def one_device_losses(tmp_path_factory):
    assert jax.device_count() == 1, "the baseline needs a single-device test process"
    result = trainer.train(
        model_dir=str(tmp_path_factory.mktemp("one_device")),
        model=tiny_model(),
        train_data=SyntheticSource(batch_size=8),
        optimizer=optimizers.adafactor(learning_rate=1e-2, min_dim_size_to_factor=16),
        total_steps=STEPS,
        checkpoint_period=STEPS,
        mesh_shape=(1, 1),
        progress=False,
    )
    return np.array([result.losses[s] for s in range(1, STEPS + 1)])


@pytest.mark.slow
@pytest.mark.parametrize("name", [*MESHES, "reshard"])
def test_mesh_gives_the_one_device_loss(name, eight_devices, one_device_losses):
    losses = eight_devices["losses"][name]
    got = np.array([losses[str(s)] for s in range(1, STEPS + 1)])
    np.testing.assert_allclose(got, one_device_losses, rtol=0, atol=1e-5)
    assert got[-1] < got[0]  # it trains


@pytest.mark.slow
def test_params_are_sharded_as_the_rules_say(eight_devices):
    specs = eight_devices["specs"]
    # T5X rules with parameter_partitioning_dims=1: embed replicated; heads/mlp/vocab on `model`.
    assert specs["2x4"]["query"] == [None, "model"]
    assert specs["2x4"]["out"] == ["model", None]
    assert specs["2x4"]["wi_0"] == [None, "model"]
    assert specs["2x4"]["wo"] == ["model", None]
    assert specs["2x4"]["embedding"] == ["model", None]
    assert specs["2x4"]["query_shard_shape"] == [32, 8]  # joined_kv 32 split over 4 devices
    # parameter_partitioning_dims=2: embed also split over `data` (fully sharded parameters).
    assert specs["2x4_dims2"]["query"] == ["data", "model"]
    assert specs["2x4_dims2"]["wo"] == ["model", "data"]
    assert specs["2x4_dims2"]["query_shard_shape"] == [16, 8]
    # Optimizer state: Adafactor's unfactored second moment of the (heads, buckets) relative
    # position bias is sharded like the bias; factored row/column statistics are replicated.
    opt = specs["2x4"]["opt_specs"]
    relpos = [spec for key, spec in opt.items() if "relpos_bias" in key]
    query = [spec for key, spec in opt.items() if "['attention']['query']" in key]
    assert ["model", None] in relpos
    assert query and all(set(spec) <= {None} for spec in query)


def test_create_mesh_shapes_and_errors():
    devices = jax.devices()[:1] * 8  # shapes only; the mesh is never used to compute
    assert partitioning.create_mesh((-1, 1), devices=devices).shape == {"data": 8, "model": 1}
    assert partitioning.create_mesh((2, -1), devices=devices).shape == {"data": 2, "model": 4}
    with pytest.raises(errors.ConfigError, match="needs 6 devices, but 8"):
        partitioning.create_mesh((3, 2), devices=devices)
    with pytest.raises(errors.ConfigError, match="more than one -1"):
        partitioning.create_mesh((-1, -1), devices=devices)
    with pytest.raises(errors.ConfigError, match=r"\(data, model\)"):
        partitioning.create_mesh((8,), devices=devices)


def test_logical_rules_and_opt_state_shardings_on_one_device():
    rules = dict(partitioning.standard_logical_axis_rules())
    assert rules["batch"] == "data" and rules["embed"] is None
    assert (
        dict(partitioning.standard_logical_axis_rules(parameter_partitioning_dims=2))["embed"]
        == "data"
    )

    config = tiny_config()
    mesh = partitioning.create_mesh((1, 1))
    shardings = partitioning.logical_to_shardings(
        encoder_decoder.logical_param_axes(config), mesh, tuple(rules.items())
    )
    abstract = encoder_decoder.abstract_params(config)
    adam = jax.eval_shape(optax.adam(1e-3).init, abstract)
    opt = partitioning.opt_state_shardings(adam, abstract, shardings, mesh)
    mu_query = opt[0].mu["decoder"]["layers_1"]["self_attention"]["query"]["kernel"]
    assert mu_query.spec == P(None, "model")
    assert opt[0].count.spec == P()


def test_global_batch_is_sharded_over_data():
    mesh = partitioning.create_mesh((1, 1))
    batch = partitioning.global_batch(next(SyntheticSource(batch_size=4).iterator()), mesh)
    assert batch["encoder_input_tokens"].shape == (4, 16)
    assert batch["encoder_input_tokens"].sharding.spec == P("data")


SCAN_SCRIPT = """
import json, sys
sys.path.insert(0, {here!r})
import jax
from synthetic_source import SyntheticSource, tiny_model
from vertjax.train import optimizers, restore, trainer

assert jax.device_count() == 8, jax.devices()
root, start = sys.argv[1], sys.argv[2]
out = {{"losses": {{}}, "specs": {{}}}}
for name, mesh_shape, dims in (("2x4", (2, 4), 1), ("4x2_dims2", (4, 2), 2)):
    result = trainer.train(
        model_dir=f"{{root}}/{{name}}", model=tiny_model(scan_layers=True),
        train_data=SyntheticSource(batch_size=8),
        optimizer=optimizers.adafactor(learning_rate=1e-2, min_dim_size_to_factor=16),
        total_steps={steps}, checkpoint_period={steps}, mesh_shape=mesh_shape,
        parameter_partitioning_dims=dims, initial_checkpoint_path=start, progress=False,
    )
    out["losses"][name] = result.losses
print("RESULT " + json.dumps(out))
"""


def _scanned_run(model_dir, start, mesh_shape=(1, 1)):
    return trainer.train(
        model_dir=str(model_dir),
        model=tiny_model(scan_layers=True),
        train_data=SyntheticSource(batch_size=8),
        optimizer=optimizers.adafactor(learning_rate=1e-2, min_dim_size_to_factor=16),
        total_steps=STEPS,
        checkpoint_period=STEPS,
        mesh_shape=mesh_shape,
        initial_checkpoint_path=str(start),
        progress=False,
    )


@pytest.mark.slow
def test_scanned_training_on_8_devices_equals_one_device(tmp_path):
    """scan_layers on a (data, model) mesh: the stacked 'layers' axis is replicated and the rest
    sharded as unscanned; started from an unscanned checkpoint (converted into the mesh's
    shardings on restore), 8 fake devices train exactly as one."""
    start = tmp_path / "start"
    plain = tiny_model()
    restore.save_params(start, config=plain.config, params=plain.init_params(jax.random.key(5)))
    want = _scanned_run(tmp_path / "one", start).losses
    script = tmp_path / "scan.py"
    script.write_text(SCAN_SCRIPT.format(here=str(HERE), steps=STEPS), encoding="utf-8")
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
    )
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(start)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    losses = json.loads(line[len("RESULT ") :])["losses"]
    for name in ("2x4", "4x2_dims2"):
        got = [losses[name][str(s)] for s in range(1, STEPS + 1)]
        np.testing.assert_allclose(got, [want[s] for s in range(1, STEPS + 1)], atol=1e-5)


def test_stacked_layer_params_shard_like_one_layer():
    """The 'layers' logical axis maps to no mesh axis: a scanned kernel's spec is the unscanned
    kernel's with a leading None, so every mesh gin shards the two layouts alike."""
    rules = partitioning.standard_logical_axis_rules(parameter_partitioning_dims=2)
    assert dict(rules)["layers"] is None
    mesh = partitioning.create_mesh((1, 1))
    plain = partitioning.logical_to_shardings(
        encoder_decoder.logical_param_axes(tiny_config()), mesh, rules
    )
    scanned = partitioning.logical_to_shardings(
        encoder_decoder.logical_param_axes(tiny_config(scan_layers=True)), mesh, rules
    )
    one = plain["encoder"]["layers_0"]["mlp"]["wo"]["kernel"].spec
    stacked = scanned["encoder"]["layers"]["mlp"]["wo"]["kernel"].spec
    assert one == P("model", "data") and stacked == P(None, *one)
