"""The bootstrap pipeline analyses a generated study end to end, and degrades instead of raising."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ml.agents.analysis import StudyAnalysis
from ml.agents.pipeline import Pipeline, analyze_study
from ml.conditions import CONDITION_KEYS, REPORT_SECTIONS
from ml.data.dicom_adapter import study_from_datasets


def _fetched(folder: Path) -> tuple[str, dict[str, list[pydicom.Dataset]]]:
    """What the drafting service has after a DICOMweb fetch: datasets keyed by series UID."""
    series: dict[str, list[pydicom.Dataset]] = {}
    for f in sorted(folder.glob("*/*.dcm")):
        ds = pydicom.dcmread(f)
        series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    first = next(iter(series.values()))[0]
    return str(first.StudyInstanceUID), series


@pytest.fixture(scope="module")
def pipeline(tiny_pipeline_dir) -> Pipeline:
    return Pipeline.load(tiny_pipeline_dir)


@pytest.fixture(scope="module")
def study(agents_synth_dir, pipeline):
    uid, series = _fetched(agents_synth_dir / "studies" / "SYN-0001")
    return study_from_datasets(uid, series, pipeline.preprocess)


def test_bootstrap_folder_is_complete(tiny_pipeline_dir):
    doc = json.loads((tiny_pipeline_dir / "pipeline.json").read_text())
    assert doc["version"].startswith(doc["code_version"])
    for name in ("spinefm", "diagnosis", "localization", "retrieval"):
        assert (tiny_pipeline_dir / doc["components"][name]["path"]).is_dir()
        assert doc["components"][name]["version"].startswith(name)
    # the report agent is either there or skipped with a reason
    assert doc["components"]["report"].get("path") or doc["components"]["report"]["skipped"]


def test_the_tiny_pipelines_head_learnt_where_its_boxes_may_be_placed(pipeline):
    """Training counted, per condition, the boxes the canal tiles held whole (the tiny pipeline
    has canal tiles): shares in [0, 1], and a condition of the canal among those shown on them."""
    diagnosis = pipeline.agents["diagnosis"]
    assert diagnosis.cfg.dense_canal_mm > 0
    fit = diagnosis.a["box_canal_fit"]
    assert fit.shape == (len(CONDITION_KEYS),)
    assert ((fit >= 0) & (fit <= 1)).all()
    assert fit.max() > 0  # some training box lay on a canal tile


def test_pipeline_analyzes_a_generated_study_and_json_round_trips(pipeline, study):
    data, skipped = study
    result = analyze_study(data, pipeline, skipped)
    # the bootstrap report agent starts from the cached 500-step text LM: it writes a report in
    # the template's sections (the fallback to the template is tested below)
    assert not result.errors, result.errors
    assert result.report_source == "report_agent"
    assert len(set(result.report_sections) & set(REPORT_SECTIONS)) >= 3, result.report_text[:500]
    assert [a.name for a in result.agents] == ["embedding", "diagnosis", "localization", "retrieval", "report"]
    assert all(a.seconds >= 0 for a in result.agents)
    assert len(result.conditions) == 17
    assert {s.series_uid for s in result.series} == {s.series_uid for s in data.series}
    assert result.similar_cases
    assert result.report_text.strip()
    assert result.model_versions["spinefm"].startswith("spinefm-")
    sops = {s.series_uid: s.sop_uids for s in data.series}
    for c in result.conditions:
        for b in c.boxes:
            assert b.sop_uid == sops[b.series_uid][b.index]
            assert len(b.patient_mm) == 4
    back = StudyAnalysis.from_dict(json.loads(json.dumps(result.to_dict())))
    assert back == result


def test_a_failing_agent_degrades_the_result_instead_of_raising(pipeline, study):
    data, _ = study

    class Broken:
        """An agent family (``ml.agents.protocol.AgentFamily``) whose every entry point raises."""

        version = "broken"
        per_study = True

        def __init__(self, message: str) -> None:
            self.message = message

        def run(self, *_args, **_kwargs):
            raise RuntimeError(self.message)

        localize = generate = run

    saved = pipeline.localization, pipeline.report, pipeline.cfg.report
    broken = Broken("localization exploded"), Broken("decoder exploded")
    (pipeline.localization, pipeline.report), pipeline.cfg.report = broken, True
    try:
        result = pipeline.analyze(data)
    finally:
        pipeline.localization, pipeline.report, pipeline.cfg.report = saved
    errors = result.errors
    assert [a.name for a in result.agents] == ["embedding", "diagnosis", "localization", "retrieval", "report"]
    assert "localization exploded" in errors["localization"]
    assert "decoder exploded" in errors["report"]
    assert "diagnosis" not in errors
    assert "retrieval" not in errors
    assert len(result.conditions) == 17  # diagnosis still there
    assert all(not c.boxes for c in result.conditions)
    assert result.report_source == "template"  # a study still gets a draft
    assert "IMPRESSION" in result.report_sections
    assert result.report_text.startswith("AI DRAFT")


def test_disabled_agents_are_not_run(tiny_pipeline_dir, study):
    data, _ = study
    pipe = Pipeline.load(tiny_pipeline_dir, overrides={"localization": False, "report": False, "retrieval": False})
    result = pipe.analyze(data)
    assert [a.name for a in result.agents] == ["embedding", "diagnosis", "report"]
    assert result.ok
    assert result.report_source == "template"
    assert not result.similar_cases


def test_a_dense_diagnosis_head_gets_pixels_at_its_own_size(tiny_pipeline_dir, agents_synth_dir):
    """A served dense head must see the slices at its size, not SpineFM's (96 px here): the
    pipeline's preprocessing follows the larger of the two, and the study still analyses."""
    from dataclasses import replace

    from ml.agents.dense import DenseDiagnosisAgents, dense_cells
    from ml.agents.diagnosis import DiagnosisConfig
    from ml.agents.features import StudyFeatures

    p = Pipeline.load(tiny_pipeline_dir, {"report": False})
    shipped = p.diagnosis.cfg.dense_size  # the bootstrap pipeline's dense head: 256 px over SpineFM's 96
    assert p.preprocess.size == max(p.model.img_size, shipped)
    size = shipped + 64
    cfg = DiagnosisConfig(
        head="dense", dense_size=size, dense_hidden=4, dense_sag_slices=3, dense_max_axial=4,
        dense_stride=32, dense_box_stride=32,  # the 322 inputs below: stride-32 cells (320) + plane (2)
    )  # fmt: skip
    rng = np.random.default_rng(0)
    k = 17
    arrays = {
        "w1": rng.normal(size=(322, 4)),
        "b1": np.zeros(4),
        "w2": rng.normal(size=(4, k)),
        "b2": np.zeros(k),
        "mean": np.zeros(322),
        "std": np.ones(322),
        "temperature": np.ones(k),
        "threshold": np.full(k, 0.5),
        "trained": np.ones(k, np.uint8),
        "prior": np.full(k, 0.1),
    }
    p.diagnosis = DenseDiagnosisAgents(replace(cfg), arrays)
    assert p.preprocess.size == size
    uid, series = _fetched(agents_synth_dir / "studies" / "SYN-0001")
    data, skipped = study_from_datasets(uid, series, p.preprocess)
    assert {s.pixels.shape[-1] for s in data.series} == {size}
    d = dense_cells(StudyFeatures(data, None), cfg)  # type: ignore[arg-type]
    assert d["cells"].shape[1:3] == (size // 32, size // 32)
    result = analyze_study(data, p, skipped)
    assert not result.errors, result.errors
    assert len(result.conditions) == 17
    assert len({round(c.probability, 6) for c in result.conditions}) > 1  # the head ran, not the prior


def test_a_cached_pipeline_is_not_reused_across_generator_versions(monkeypatch):
    """The demo and tiny pipelines are cached by key; a generator change makes other training
    studies, so it must make another key (and the same code and version the same key)."""
    from ml.agents.bootstrap import DEMO, TINY
    from ml.data.synthetic import dicom_writer

    before = (TINY.key(), DEMO.key())
    assert TINY.key() == before[0]
    assert before[0] != before[1]
    monkeypatch.setattr(dicom_writer, "GENERATOR_VERSION", dicom_writer.GENERATOR_VERSION + "-next")
    assert TINY.key() != before[0]
    assert DEMO.key() != before[1]
