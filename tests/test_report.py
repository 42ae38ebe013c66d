"""The typed tune report: its committed JSON schema, a real report validating, and the renderers reading it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inc_transformer_mt.report.tune_report import (
    TuneReport,
    load_report,
    render_markdown,
    render_summary,
    report_json_schema,
)

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "docs" / "report.schema.json"
COMMITTED = ROOT / "inc_transformer_mt" / "reference_int8" / "report.json"

pytestmark = pytest.mark.unit


def test_committed_schema_matches_the_models():
    assert SCHEMA.read_text() == report_json_schema(), "regenerate: python -c 'from inc_transformer_mt.report." \
        "tune_report import report_json_schema as s; print(s(), end=\"\")' > docs/report.schema.json"


def test_committed_model_report_validates_and_renders():
    report = load_report(COMMITTED)
    assert report.passed and report.int8 is not None and report.int8.matmuls_total == 49
    md = render_markdown(report)
    assert "# INT8 tuning report: PASSED" in md and f"{report.int8.tuning_bleu:.2f}" in md
    summary = render_summary(report, Path("out/x"))
    assert f"{report.int8.matmuls_int8}/49" in summary and "out/x/report.md" in summary


def test_unknown_key_is_an_error_naming_it(tmp_path):
    data = json.loads(COMMITTED.read_text())
    data["int8"]["surprise"] = 1
    (tmp_path / "report.json").write_text(json.dumps(data))
    from inc_transformer_mt.errors import UserError

    with pytest.raises(UserError, match=r"int8\.surprise"):
        load_report(tmp_path / "report.json")


def test_failed_report_renders_the_closest_trial():
    data = json.loads(COMMITTED.read_text())
    data["status"], data["closest_trial"] = "failed", data.pop("int8")
    report = TuneReport.model_validate(data)
    md = render_markdown(report)
    assert "No configuration met the criterion" in md and "closest trial" in md
    assert "FAILED" in render_summary(report, Path("o"))
