"""Several studies in one ``analyze_many`` are drafted by the report agent in one batch, and a study
the batch did not draft is drafted alone, or gets the template draft with the error."""

from __future__ import annotations

import pydicom
import pytest

from ml.agents.pipeline import Pipeline
from ml.agents.report.agent import ReportAgent
from ml.data.dicom_adapter import study_from_datasets


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline_dir) -> Pipeline:
    return Pipeline.load(tiny_pipeline_dir)


@pytest.fixture(scope="module")
def studies(agents_synth_dir, pipeline):
    """Two generated studies as the drafting service has them after a DICOMweb fetch."""
    out = []
    for folder in sorted((agents_synth_dir / "studies").iterdir())[:2]:
        series: dict[str, list[pydicom.Dataset]] = {}
        for f in sorted(folder.glob("*/*.dcm")):
            ds = pydicom.dcmread(f)
            series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
        uid = str(next(iter(series.values()))[0].StudyInstanceUID)
        out.append(study_from_datasets(uid, series, pipeline.preprocess)[0])
    assert len(out) == 2
    return out


def test_the_report_agent_drafts_a_batch_of_studies_in_one_call(pipeline, studies, monkeypatch):
    calls: list[tuple[str, int]] = []
    many, one = ReportAgent.generate_many, ReportAgent.generate

    def spy_many(self, items, max_new_tokens=None):  # type: ignore[no-untyped-def]
        calls.append(("many", len(items)))
        return many(self, items, max_new_tokens)

    def spy_one(self, inputs, max_new_tokens=None):  # type: ignore[no-untyped-def]
        calls.append(("one", 1))
        return one(self, inputs, max_new_tokens)

    monkeypatch.setattr(ReportAgent, "generate_many", spy_many)
    monkeypatch.setattr(ReportAgent, "generate", spy_one)
    results = pipeline.analyze_many(studies)
    assert calls == [("many", 2)]  # one batch; generate() of one study goes through generate_many itself
    for r in results:
        assert r.report_source == "report_agent", r.errors
        assert r.report_text.strip()
        assert [a.name for a in r.agents][-1] == "report"
        assert "report" not in r.errors
    # one study alone keeps its own path (prompt lookup)
    calls.clear()
    single = pipeline.analyze_many(studies[:1])
    assert calls[0] == ("one", 1)
    assert single[0].report_source == "report_agent"


class HalfWriter:
    """A report family that drafts batches: writes only the first study of a batch and then
    raises (as an empty draft does), and fails every study offered alone after that."""

    version = "half"
    per_study = False

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, results, feats, context) -> None:  # type: ignore[no-untyped-def]
        self.batches.append(len(results))
        if len(results) > 1:
            results[0].report_text, results[0].report_sections = "FINDINGS: written.", {"FINDINGS": "written."}
            results[0].report_source = "report_agent"
        raise RuntimeError("the report agent returned an empty draft (1 of 2 studies)")


def test_a_study_the_batch_did_not_draft_is_tried_alone_then_gets_the_template(pipeline, studies):
    writer = HalfWriter()
    saved = pipeline.agents.get("report")
    pipeline.agents["report"] = writer
    try:
        first, second = pipeline.analyze_many(studies)
    finally:
        pipeline.agents["report"] = saved
    assert writer.batches == [2, 1]  # the batch, then the second study alone
    assert first.report_source == "report_agent"
    assert first.report_check.get("written", "").startswith("FINDINGS: written.")  # what the writer wrote
    assert "report" not in first.errors
    assert second.report_source == "template"
    assert "empty draft" in second.errors["report"]
    assert second.report_text.startswith("AI DRAFT")
