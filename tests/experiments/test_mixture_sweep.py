"""The mixture sweep's settings: bound through gin, checked, and seen by each point's training."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

import pytest

from vertjax import errors

EXPERIMENT = pathlib.Path(__file__).resolve().parents[2] / "experiments" / "mixture_sweep"
TINY_GIN = str(EXPERIMENT / "tiny.gin")

_spec = importlib.util.spec_from_file_location("mixture_sweep_run", EXPERIMENT / "run.py")
run = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = run
_spec.loader.exec_module(run)


def test_command_line_settings_reach_the_plan():
    base = run.read_settings(TINY_GIN, [])
    settings = run.read_settings(
        TINY_GIN, ["SweepSettings.point_steps=7", "SweepSettings.rates=[0.5]"]
    )
    assert (settings["point_steps"], settings["rates"]) == (7, [0.5])
    assert settings["general_steps"] == base["general_steps"]
    continued = [p for p in run.plan(settings) if p["kind"] == "continued"]
    assert [(p["domain_rate"], p["steps"]) for p in continued] == [(0.5, 7)]


@pytest.mark.parametrize(
    "binding, match",
    [
        ("SweepSettings.point_step=7", "point_step"),
        ("SWEEP_POINT_STEPS=7", "SWEEP_POINT_STEPS"),
        ("SweepSettings.rates=0.5", r"SweepSettings\.rates = 0\.5 is not of type list\[float\]"),
        ("SweepSettings.rates=[0.5, 2.0]", r"SweepSettings\.rates .* in \[0, 1\]"),
        (
            "SweepSettings.scratch_domain=1",
            r"SweepSettings\.scratch_domain = 1 is not of type bool",
        ),
        ("SweepSettings.staged_rate='half'", r"SweepSettings\.staged_rate"),
    ],
)
def test_a_bad_setting_is_a_config_error_naming_it(binding, match):
    with pytest.raises(errors.ConfigError, match=match):
        run.read_settings(TINY_GIN, [binding])


def test_main_reports_a_misspelt_setting_on_one_line(tmp_path, capsys):
    code = run.main(
        [f"--gin_file={TINY_GIN}", f"--out={tmp_path}", "--gin.SweepSettings.point_step=7"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "point_step" in err, err


def test_each_points_training_parses_the_scale_gin_and_its_overrides():
    """A point's `vertjax train` runs in a fresh process: train_env() lets its gin find the
    settings module, so the scale gin and the user's settings bindings parse there too."""
    script = (
        "import sys; from vertjax import gin_utils; import sweep_settings; "
        "gin_utils.parse_gin(gin_files=[sys.argv[1]], gin_bindings=[sys.argv[2]]); "
        "print(sweep_settings.settings().point_steps)"
    )
    # `python -c` puts only the working directory on sys.path: the module comes from PYTHONPATH.
    result = subprocess.run(
        [sys.executable, "-c", script, TINY_GIN, "SweepSettings.point_steps=9"],
        env=run.train_env(),
        cwd=run.REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "9"
