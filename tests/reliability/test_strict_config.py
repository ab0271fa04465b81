"""Issue 15 finding 7: a misspelt `--gin.MACRO` was silently ignored (BM25 ran instead of the
dense retriever asked for), and `--gin.K=abc` ended in a TypeError traceback (exit 1)."""

from __future__ import annotations

import gin
import pytest

from vertjax import cli, errors, gin_utils
from vertjax.train import optimizers

SYSTEM_GIN = str(gin_utils.BUILTIN_GIN_DIR / "system" / "default.gin")


@pytest.fixture(autouse=True)
def _clean_gin():
    yield
    gin.clear_config()


def test_unknown_macro_is_a_config_error_with_a_did_you_mean():
    with pytest.raises(errors.ConfigError, match=r"RETREIVER.*did you mean RETRIEVER\?"):
        gin_utils.parse_gin(gin_files=[SYSTEM_GIN], gin_bindings=["RETREIVER='dense'"])


def test_macros_only_referenced_by_a_file_may_be_defined_on_the_command_line(tmp_path):
    path = tmp_path / "uses.gin"
    path.write_text(
        "from __gin__ import dynamic_registration\n"
        "from vertjax.train import optimizers\n"
        "ALIAS = [%RATE, {'unused': %OTHER}]\n"
        "optimizers.constant_schedule.learning_rate = %RATE\n",
        encoding="utf-8",
    )
    gin_utils.parse_gin(gin_files=[str(path)], gin_bindings=["RATE=0.5", "OTHER=1"])
    assert gin.get_configurable(optimizers.constant_schedule)()(0) == 0.5
    with pytest.raises(errors.ConfigError, match="did you mean RATE"):
        gin_utils.parse_gin(gin_files=[str(path)], gin_bindings=["RATES=0.5"])


@pytest.mark.parametrize(
    "binding, ok",
    [
        ("K=abc", False),
        ("K=2.5", False),
        ("K=True", False),
        ("K=8", True),
        ("K=None", True),
        ("MIN_TOP_SCORE=0.5", True),  # the file's None takes anything
        ("DOMAIN=3", False),
        ("DOMAIN=databases", True),
    ],
)
def test_macro_values_must_match_the_files_type(binding, ok):
    if ok:
        gin_utils.parse_gin(gin_files=[SYSTEM_GIN], gin_bindings=[binding])
        return
    with pytest.raises(errors.ConfigError) as info:
        gin_utils.parse_gin(gin_files=[SYSTEM_GIN], gin_bindings=[binding])
    assert f"--gin.{binding.split('=')[0]}=" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "binding, message",
    [("--gin.RETREIVER='dense'", "did you mean RETRIEVER"), ("--gin.K=abc", "--gin.K='abc'")],
)
def test_cli_reports_config_typos_in_one_line_with_exit_2(tmp_path, capsys, binding, message):
    argv = ["answer", "--config", SYSTEM_GIN, f"--gin.INDEX_DIR={tmp_path}", binding, "q?"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
