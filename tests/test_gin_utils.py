"""T5X-style gin flags: `--gin.X=V` rewriting and quoting, search paths, errors, operative config."""

from __future__ import annotations

import argparse
import dataclasses

import gin
import pytest

from vertjax import errors, gin_utils
from vertjax.train import optimizers

BASE_GIN = """\
from __gin__ import dynamic_registration
from vertjax.train import optimizers

LR = 0.5
NAME = %gin.REQUIRED
optimizers.constant_schedule.learning_rate = %LR
"""


@pytest.fixture(autouse=True)
def _clean_gin():
    yield
    gin.clear_config()


@pytest.fixture
def gin_dir(tmp_path):
    sub = tmp_path / "configs" / "nested"
    sub.mkdir(parents=True)
    (sub / "base.gin").write_text(BASE_GIN, encoding="utf-8")
    (sub / "top.gin").write_text("include 'nested/base.gin'\nLR = 0.25\n", encoding="utf-8")
    return tmp_path / "configs"


def test_normalize_argv_rewrites_only_gin_bindings():
    argv = ["train", "--gin.MODEL_DIR=/tmp/x", "--gin_file=a.gin", "--gin.X", "--gin.Y=a=b"]
    assert gin_utils.normalize_argv(argv) == [
        "train",
        "--gin",
        "MODEL_DIR=/tmp/x",
        "--gin_file=a.gin",
        "--gin.X",
        "--gin",
        "Y=a=b",
    ]


@pytest.mark.parametrize(
    "binding, expected",
    [
        ("MODEL_DIR=/tmp/run", "MODEL_DIR = '/tmp/run'"),  # bare path: quoted for the user
        ("MODEL_DIR='/tmp/run'", "MODEL_DIR = '/tmp/run'"),  # T5X-style quoting still works
        ('MODEL_DIR="/tmp/run"', 'MODEL_DIR = "/tmp/run"'),
        ("TRAIN_STEPS=20", "TRAIN_STEPS = 20"),
        ("LR=1e-3", "LR = 1e-3"),
        ("MESH_SHAPE=(-1, 2)", "MESH_SHAPE = (-1, 2)"),
        ("F={'inputs': 64, 'targets': 16}", "F = {'inputs': 64, 'targets': 16}"),
        ("OPT=@optimizers.adamw()", "OPT = @optimizers.adamw()"),
        ("LR=%OTHER", "LR = %OTHER"),
        ("X=None", "X = None"),
        ("X=True", "X = True"),
        ("NAME=hello world", "NAME = 'hello world'"),
        ("Q=it's", 'Q = "it\'s"'),
        ("EQ=a=b", "EQ = 'a=b'"),
        (" trainer.train.seed = 3 ", "trainer.train.seed = 3"),
    ],
)
def test_binding_values_are_quoted_only_when_needed(binding, expected):
    assert gin_utils.binding_strings([binding]) == [expected]


def test_binding_without_equals_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="'MODEL_DIR' is not of the form NAME=VALUE"):
        gin_utils.binding_strings(["MODEL_DIR"])


def test_files_and_includes_are_found_through_search_paths(gin_dir):
    gin_utils.parse_gin(
        gin_files=["nested/top.gin"],
        gin_bindings=["NAME=run one"],
        gin_search_paths=[str(gin_dir)],
    )
    assert gin_utils.query_macro("LR") == 0.25  # the later file overrides the included one
    assert gin_utils.query_macro("NAME") == "run one"
    assert gin.get_configurable(optimizers.constant_schedule)()(0) == pytest.approx(0.25)


def test_bindings_override_files_and_the_builtin_configs_are_searched(gin_dir):
    gin_utils.parse_gin(
        gin_files=[str(gin_dir / "nested" / "base.gin")], gin_bindings=["LR=0.125", "NAME=x"]
    )
    assert gin_utils.query_macro("LR") == 0.125
    assert (gin_utils.BUILTIN_GIN_DIR / "models" / "t5_1_1" / "tiny.gin").is_file()


def test_parse_from_args_reads_the_declared_flags(gin_dir):
    parser = argparse.ArgumentParser()
    gin_utils.add_gin_flags(parser)
    args = parser.parse_args(
        gin_utils.normalize_argv(
            [
                "--gin_file=nested/base.gin",
                f"--gin_search_paths=/nonexistent,{gin_dir}",
                "--gin.NAME=abc",
                "--gin.LR=2.0",
            ]
        )
    )
    gin_utils.parse_from_args(args)
    assert (gin_utils.query_macro("NAME"), gin_utils.query_macro("LR")) == ("abc", 2.0)


@pytest.mark.parametrize(
    "gin_file",
    [
        "system/default.gin",
        "gin_configs/system/default.gin",
        "vertjax/gin_configs/system/default.gin",
    ],
)
def test_shipped_configs_resolve_from_any_folder(gin_file, tmp_path, monkeypatch):
    """`--config`/`--gin_file` name a shipped config as the checkout does, from anywhere."""
    monkeypatch.chdir(tmp_path)
    gin_utils.parse_gin(gin_files=[gin_file], gin_bindings=["INDEX_DIR='x'"])
    assert gin_utils.query_macro("INDEX_DIR") == "x" and gin_utils.query_macro("K") == 4


def test_missing_gin_file_names_it_and_the_search_path(gin_dir):
    with pytest.raises(errors.ConfigError, match=r"gin file 'nope\.gin' not found \(searched: "):
        gin_utils.parse_gin(gin_files=["nope.gin"], gin_search_paths=[str(gin_dir)])


@pytest.mark.parametrize(
    "binding, message",
    [
        (
            "optimizers.constant_schedule.nonexistent=1",
            "doesn't have a parameter named 'nonexistent'",
        ),
        ("optimizers.constant_schedul.learning_rate=1", "No configurable matching"),
        ("LR=@optimizers.nothere()", "No configurable matching reference"),
    ],
)
def test_unknown_bindings_are_one_line_config_errors(gin_dir, binding, message):
    with pytest.raises(errors.ConfigError) as info:
        gin_utils.parse_gin(
            gin_files=[str(gin_dir / "nested" / "base.gin")], gin_bindings=[binding]
        )
    text = str(info.value)
    assert message in text and "--gin bindings" in text and "\n" not in text


@pytest.mark.parametrize(
    "content, message",
    [
        ("x = (\n", "EOF in multi-line statement"),
        ("from __gin__ import dynamic_registration\nfrom vertjax.nothere import m\n", "nothere"),
        ("nothing_here.value = 1\n", "No configurable matching"),
        (
            "from __gin__ import dynamic_registration\nSettings.steps = 3\n",
            "'Settings' was not provided by an import statement",
        ),
    ],
)
def test_broken_gin_file_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "broken.gin"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(errors.ConfigError) as info:
        gin_utils.parse_gin(gin_files=[str(path)])
    text = str(info.value)
    assert message in text and str(path) in text and "\n" not in text


def test_required_and_undefined_macros(gin_dir):
    gin_utils.parse_gin(gin_files=[str(gin_dir / "nested" / "base.gin")])
    with pytest.raises(errors.ConfigError, match=r"NAME is required: pass --gin\.NAME=\.\.\."):
        gin_utils.query_macro("NAME")
    with pytest.raises(errors.ConfigError, match="gin macro MISSING is not defined"):
        gin_utils.query_macro("MISSING")


def test_unset_required_macros_are_all_named(gin_dir):
    gin_utils.parse_gin(
        gin_files=[str(gin_dir / "nested" / "base.gin")], gin_bindings=["LR=%gin.REQUIRED"]
    )
    with pytest.raises(errors.ConfigError) as info:
        gin_utils.check_required_macros()
    assert str(info.value) == (
        "required gin macros not set: LR, NAME (pass --gin.LR=... --gin.NAME=...)"
    )
    gin_utils.parse_gin(
        gin_files=[str(gin_dir / "nested" / "base.gin")], gin_bindings=["NAME='/tmp/x'"]
    )
    gin_utils.check_required_macros()


def _needs_a_rate(rate=gin.REQUIRED):
    return rate


def _fails(message: str):
    raise ValueError(message)


def test_call_configurable_converts_only_gins_missing_bindings():
    with pytest.raises(errors.ConfigError, match=r"^gin: Required bindings for `needs_a_rate`"):
        gin_utils.call_configurable(gin.external_configurable(_needs_a_rate, "needs_a_rate"))
    # A library error whose text happens to contain "gin" (engine, origin) stays what it is.
    for message in ("the engine stalled", "bad origin"):
        with pytest.raises(ValueError, match=message):
            gin_utils.call_configurable(_fails, message=message)


def test_operative_config_is_written_atomically_to_the_model_dir(gin_dir, tmp_path):
    gin_utils.parse_gin(
        gin_files=[str(gin_dir / "nested" / "base.gin")], gin_bindings=["LR=0.75", "NAME=n"]
    )
    gin.get_configurable(optimizers.constant_schedule)()
    run_dir = tmp_path / "run" / "deep"
    path = gin_utils.write_operative_config(run_dir)
    assert path == run_dir / "config.gin"
    text = path.read_text(encoding="utf-8")
    assert "optimizers.constant_schedule.learning_rate = %LR" in text
    assert "LR = 0.75" in text
    assert [p.name for p in run_dir.iterdir()] == ["config.gin"]
    # The written file parses back to the same binding.
    gin_utils.parse_gin(gin_files=[str(path)])
    assert gin_utils.query_macro("LR") == 0.75


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Settings:
    steps: int
    rate: float
    names: list[str]
    source: str | None
    verbose: bool = False


gin.external_configurable(_Settings)
_SETTINGS_GIN = """
_Settings.steps = 3
_Settings.rate = 1
_Settings.names = ['a', 'b']
_Settings.source = None
"""


def test_configured_dataclass_builds_from_bindings_and_checks_each_field():
    gin.clear_config()
    gin.parse_config(_SETTINGS_GIN)
    built = gin_utils.configured_dataclass(_Settings)
    assert built == _Settings(
        steps=3, rate=1, names=["a", "b"], source=None
    )  # int as float; default
    for binding, message in [
        ("_Settings.steps = True", r"_Settings\.steps = True is not of type int"),
        ("_Settings.names = ['a', 2]", r"_Settings\.names = \['a', 2\] is not of type list\[str\]"),
        ("_Settings.source = 4", r"_Settings\.source = 4 is not of type str \| None"),
        ("_Settings.steps = %gin.REQUIRED", r"_Settings\.steps is required"),
    ]:
        gin.parse_config(_SETTINGS_GIN + binding)
        with pytest.raises(errors.ConfigError, match=message):
            gin_utils.configured_dataclass(_Settings)
    gin.clear_config()
    with pytest.raises(errors.ConfigError, match=r"_Settings\.steps is required"):
        gin_utils.configured_dataclass(_Settings)
