"""Tests of vertjax.eval.sweep_report: the mixture-sweep table, PNG and input validation."""

from __future__ import annotations

import copy
import json

import pytest

from vertjax import errors
from vertjax.eval import sweep_report


def _ppl(domain: float, general: float) -> dict[str, dict[str, float]]:
    return {"domain": {"ppl": domain, "loss": 0.0}, "general": {"ppl": general, "loss": 0.0}}


def _points() -> list[dict]:
    general_after = _ppl(40.0, 10.0)
    points = [
        {
            "name": "general",
            "kind": "general",
            "domain_rate": 0.0,
            "steps": 600,
            "ppl_before": _ppl(2000.0, 2100.0),
            "ppl_after": general_after,
        }
    ]
    for rate, domain, general in ((0.0, 38.0, 9.0), (0.5, 20.0, 10.5), (1.0, 15.0, 12.0)):
        points.append(
            {
                "name": f"rate_d{round(rate * 100):03d}",
                "kind": "continued",
                "domain_rate": rate,
                "steps": 150,
                "ppl_before": general_after,
                "ppl_after": _ppl(domain, general),
            }
        )
    points.append(
        {
            "name": "scratch_domain",
            "kind": "scratch",
            "domain_rate": 1.0,
            "steps": 150,
            "ppl_before": _ppl(2000.0, 2100.0),
            "ppl_after": _ppl(60.0, 400.0),
        }
    )
    return points


def test_table_has_one_row_per_point_with_before_after_and_change():
    table = sweep_report.sweep_table(_points())
    rows = [line for line in table.splitlines() if line.startswith("| rate_d")]
    assert len(rows) == 3
    cells = [c.strip() for c in rows[1].strip("|").split("|")]
    assert cells[0] == "rate_d050"
    assert cells[2:] == ["0.50", "150", "40.00", "20.00", "10.00", "10.50", "+5.0%"]
    assert "from scratch, domain only" in table
    assert "| rate_d000 |" in table and "-10.0%" in table


def test_format_ppl_line():
    assert sweep_report.format_ppl(_points()[2]) == "domain 40.00 -> 20.00, general 10.00 -> 10.50"


def test_write_report_writes_table_and_png(tmp_path):
    paths = sweep_report.write_report({"points": _points()}, out_dir=tmp_path / "out")
    assert paths["table"].read_text(encoding="utf-8") == sweep_report.sweep_table(_points())
    png = paths["plot"].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "sweep_ppl.png",
        "sweep_table.md",
    ]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda p: p[1].pop("ppl_after"), "rate_d000: missing ppl_after.domain.ppl"),
        (lambda p: p[4]["ppl_before"].update(general={"loss": 1.0}), "ppl_before.general.ppl"),
        (lambda p: p[2].update(kind="finetune"), "rate_d050: kind must be one of"),
        (lambda p: p[3].update(domain_rate=1.5), "rate_d100: domain_rate must be in"),
        (lambda p: p[0]["ppl_after"]["domain"].update(ppl=float("nan")), "domain.ppl is nan"),
        (lambda p: p.clear(), "no points"),
    ],
)
def test_bad_points_are_data_errors_naming_the_point(mutate, message):
    points = copy.deepcopy(_points())
    mutate(points)
    with pytest.raises(errors.DataError, match=message):
        sweep_report.sweep_table(points)


def test_cli_reports_bad_json_with_its_line(tmp_path, capsys):
    good = tmp_path / "results.json"
    good.write_text(json.dumps({"points": _points()}), encoding="utf-8")
    assert sweep_report.main([str(good)]) == 0
    assert (tmp_path / "sweep_ppl.png").is_file()
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "points": [\n  oops\n]}', encoding="utf-8")
    assert sweep_report.main([str(bad)]) == 2
    assert f"{bad}:3: invalid JSON" in capsys.readouterr().err
    assert sweep_report.main([str(tmp_path / "missing.json")]) == 2
    not_points = tmp_path / "list.json"
    not_points.write_text("[]", encoding="utf-8")
    assert sweep_report.main([str(not_points)]) == 2
    assert "'points' list" in capsys.readouterr().err
