"""Drafts are grounded: facts from the DICOM or a placeholder, findings only as the agents called them.

The decoder outputs below are written the way the demo's decoder wrote them (the corpus's
average report: findings the study does not have, levels the agents did not give, an impression
cut mid-sentence); the consistency check must correct them whatever the writer does.
"""

from __future__ import annotations

import re
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from ml.agents.labels import extract_labels
from ml.agents.report.consistency import check_draft, level_spans
from ml.agents.report.facts import (
    NO_HISTORY,
    NO_PRIORS,
    PriorStudy,
    StudyFacts,
    clinical_history,
    comparison,
    request_facts,
    study_facts_from_datasets,
)
from ml.agents.report.grounding import ground_draft
from ml.agents.report.prompt import split_sections
from tests.report_drafts import calls, finding_sentences

AVERAGE_REPORT = """CLINICAL HISTORY: Radiculopathy; 71 F.
TECHNIQUE: Multiplanar multisequence MRI of the lumbar spine without contrast (SAG T1 FSE, SAG T2 FSE).
COMPARISON: None.
ALIGNMENT: Grade 1 degenerative anterolisthesis of L4 on L5 (4 mm).
VERTEBRAL BODIES/MARROW: No fracture or suspicious marrow lesion.
DISCS:
  L1-2: No significant abnormality.
  L2-3: No significant abnormality.
  L3-4: Disc desiccation with preserved height.
  L4-5: Left paracentral disc protrusion contacting the traversing L5 nerve root. Moderate canal stenosis.
  L5-S1: Slight disc height loss with desiccation; mild broad disc bulge.
SPINAL CANAL: Moderate spinal canal stenosis at L4-5.
NEURAL FORAMINA: Moderate bilateral foraminal narrowing at L4-5. Moderate bilateral foraminal narrowing at L4-5.
CORD/CONUS/CAUDA EQUINA: Conus medullaris normal in position and signal.
PARASPINAL/OTHER: Paraspinal soft tissues unremarkable.
IMPRESSION:
1. Disc herniation at L4-5, L5-S1.
2. Grade 1 degenerative anterolisthesis of L4 on L5.
3. Neural foraminal narrowing at"""


def test_a_draft_never_states_a_condition_the_agents_called_absent() -> None:
    conds = calls({"disc_herniation": ("L2-3", "left")})
    g = ground_draft(AVERAGE_REPORT, conds, "lumbar")

    labels = extract_labels(g.text).labels
    assert {k for k, v in labels.items() if v != 0} == {"disc_herniation"}, g.text
    assert g.check["residual"] == []
    for s in finding_sentences(g.text):  # and no single sentence does, either
        said = {k for k, v in extract_labels(s).labels.items() if v != 0}
        assert said <= {"disc_herniation"}, s
        if "disc_herniation" in said:
            assert {lv for *_, lv in level_spans(s)} == {"L2-3"}, s
    removed = {c["condition"] for c in g.check["changes"] if c["action"] == "removed"}
    assert {"spondylolisthesis", "canal_stenosis", "foraminal_narrowing", "disc_height_loss"} <= removed
    listhesis = next(c for c in g.check["changes"] if c["condition"] == "spondylolisthesis")
    assert listhesis["sentence"].startswith("Grade 1 degenerative anterolisthesis")
    assert "absent" in listhesis["reason"]
    assert "0.10" in listhesis["reason"]
    assert any(c["action"] == "removed" and "repeats" in c["reason"] for c in g.check["changes"])


def test_every_present_finding_is_stated_with_the_localization_agents_level_and_side() -> None:
    conds = calls(
        {"disc_herniation": ("L2-3", "left"), "canal_stenosis": ("L3-4", "central"), "hemangioma": ("L1", "")}
    )
    g = ground_draft(AVERAGE_REPORT, conds, "lumbar")

    labels = extract_labels(g.text).labels
    assert {k for k, v in labels.items() if v == 1} == {"disc_herniation", "canal_stenosis", "hemangioma"}
    imp = g.sections["IMPRESSION"]
    assert [ln.split(".")[0] for ln in imp.splitlines()] == ["1", "2", "3"]  # renumbered
    for key, level in (("disc_herniation", "L2-3"), ("canal_stenosis", "L3-4"), ("hemangioma", "L1")):
        stating = [s for s in finding_sentences(g.text) if extract_labels(s).labels[key] == 1]
        assert len(stating) >= 2, (key, g.text)  # in its section and in the impression
        assert all({lv for *_, lv in level_spans(s)} == {level} for s in stating), stating
    assert all(", left" in s or "Left" in s for s in finding_sentences(g.text) if "herniation" in s)
    added = [c for c in g.check["changes"] if c["action"] == "added"]
    assert {c["condition"] for c in added} == {"disc_herniation", "canal_stenosis", "hemangioma"}
    assert all(c["reason"] and c["sentence"] for c in added)


def test_a_single_finding_at_the_wrong_level_or_side_gets_the_agents_level_and_side() -> None:
    text = "DISCS: Left paracentral disc protrusion at L4-5.\nIMPRESSION:\n1. Left disc protrusion at L4/5."
    conds = calls({"disc_herniation": ("L2-3", "right")})
    r = check_draft(split_sections(text), conds, region="lumbar")

    assert r.sections["DISCS"] == "Right paracentral disc protrusion at L2-3."
    assert r.sections["IMPRESSION"] == "1. Right disc protrusion at L2-3."
    actions = sorted((c.action, c.section) for c in r.changes)
    assert actions == [("fixed_level", "DISCS"), ("fixed_level", "IMPRESSION"),
                       ("fixed_side", "DISCS"), ("fixed_side", "IMPRESSION")]  # fmt: skip
    level_fix = next(c for c in r.changes if c.action == "fixed_level" and c.section == "IMPRESSION")
    assert level_fix.sentence == "Left disc protrusion at L4/5."
    assert "L2-3" in level_fix.reason
    assert r.residual == []


def test_a_present_finding_the_draft_calls_absent_is_removed_and_stated() -> None:
    text = (
        "ALIGNMENT: Normal alignment. No spondylolisthesis.\nDISCS:\n  L3-4: Normal.\n  L4-5: No significant "
        "abnormality.\nIMPRESSION:\n1. No acute abnormality."
    )
    conds = calls({"spondylolisthesis": ("L4-5", ""), "disc_herniation": ("L4-5", "")})
    r = check_draft(split_sections(text), conds, region="lumbar")

    removed = [c.sentence for c in r.changes if c.action == "removed"]
    assert "No spondylolisthesis." in removed
    assert "L4-5: No significant abnormality." in removed
    assert "L3-4: Normal." not in removed  # nothing was found at L3-4
    assert "No spondylolisthesis" not in r.sections["ALIGNMENT"]
    assert r.sections["DISCS"].splitlines()[3].startswith("L4-5: Disc herniation")
    assert r.residual == []


def test_a_truncated_generation_is_cut_at_a_sentence_boundary() -> None:
    # the impression stopped inside item 3; foraminal narrowing is absent: the item goes
    g = ground_draft(AVERAGE_REPORT, calls({}), "lumbar")
    cut = [c for c in g.check["changes"] if c["action"] == "cut"]
    assert [c["sentence"] for c in cut] == ["Neural foraminal narrowing at"]
    assert all(s.rstrip()[-1] in ".!?)" for s in finding_sentences(g.text)), g.text
    assert not re.search(r"\b(at|of|and|with)\s*$", g.text, re.MULTILINE)

    # present at L4-5 on the left: the cut item is completed in the template's wording
    g = ground_draft(AVERAGE_REPORT, calls({"foraminal_narrowing": ("L4-5", "left")}), "lumbar")
    items = g.sections["IMPRESSION"].splitlines()
    assert any(
        re.fullmatch(r"\d\. Neural foraminal narrowing at L4-5, left \(AI probability 0\.90\)\.", i) for i in items
    )

    # a findings section cut mid-sentence (generation ended there: no impression at all)
    text = "ALIGNMENT: Normal alignment.\nDISCS:\n  L4-5: Broad disc bulge with moderate"
    r = check_draft(split_sections(text), calls({}), last_section="DISCS", region="lumbar")
    assert "moderate" not in r.sections["DISCS"]
    assert r.sections["IMPRESSION"] == "1. No abnormality detected by the AI agents."


def _request(reason: str = "", history: str = "", age: str = "073Y", sex: str = "F") -> Dataset:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    ds.PatientID = "P1"
    ds.PatientAge, ds.PatientSex = age, sex
    ds.StudyDate, ds.StudyTime = "20240310", "101500"
    item = Dataset()
    item.RequestedProcedureDescription = "MRI LUMBAR SPINE"
    if reason:
        item.ReasonForTheRequestedProcedure = reason
    ds.RequestAttributesSequence = [item]
    if history:
        ds.AdditionalPatientHistory = history
    return ds


def test_clinical_history_comes_from_the_request_attributes_and_nothing_else() -> None:
    with_reason = StudyFacts(
        **request_facts(_request("Low back pain radiating to the left leg", "Symptoms for 6 weeks."))
    )
    assert (
        clinical_history(with_reason)
        == "Low back pain radiating to the left leg. Symptoms for 6 weeks. 73-year-old female."
    )

    g = ground_draft(AVERAGE_REPORT, calls({}), "lumbar", with_reason)
    assert g.sections["CLINICAL HISTORY"] == clinical_history(with_reason)
    assert "71" not in g.text
    assert "Radiculopathy" not in g.text
    replaced = next(c for c in g.check["changes"] if c["section"] == "CLINICAL HISTORY")
    assert replaced["action"] == "replaced"
    assert replaced["sentence"] == "Radiculopathy; 71 F."
    assert g.facts["history_sources"] == [
        "ReasonForTheRequestedProcedure", "AdditionalPatientHistory", "PatientAge", "PatientSex"
    ]  # fmt: skip


def test_a_study_without_an_indication_gets_the_placeholder_not_a_history() -> None:
    facts = StudyFacts(**request_facts(_request()))
    g = ground_draft(AVERAGE_REPORT, calls({}), "lumbar", facts)
    assert g.sections["CLINICAL HISTORY"] == f"{NO_HISTORY} Patient: 73-year-old female."
    assert "Radiculopathy" not in g.text
    assert "pain" not in g.sections["CLINICAL HISTORY"].lower()
    assert ground_draft(AVERAGE_REPORT, calls({}), "lumbar").sections["CLINICAL HISTORY"] == NO_HISTORY


def test_comparison_lists_only_the_patients_earlier_studies() -> None:
    ds = _request()
    archive = [
        PriorStudy("1.2.3", "20240310", "MRI LUMBAR SPINE", "101500"),  # this study
        PriorStudy("1.2.9", "20240310", "MRI LUMBAR SPINE", "090000"),  # same morning, earlier
        PriorStudy("1.2.7", "20220114", "MRI LUMBAR SPINE", "120000"),
        PriorStudy("1.2.8", "20240311", "CT LUMBAR SPINE", "080000"),  # later: not a prior
    ]
    facts = study_facts_from_datasets({"s": [ds]}, archive)
    assert [p.study_uid for p in facts.priors] == ["1.2.9", "1.2.7"]
    assert comparison(facts) == "MRI LUMBAR SPINE of 2024-03-10; MRI LUMBAR SPINE of 2022-01-14."
    assert comparison(study_facts_from_datasets({"s": [ds]}, [])) == NO_PRIORS
    assert comparison(study_facts_from_datasets({"s": [ds]}, None)).startswith("[Prior studies could not be searched")


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """One fast generated study with a sagittal T1 and an axial T2 series."""
    from ml.data.synthetic.study import StudyConfig, generate_study

    out = tmp_path_factory.mktemp("grounding_synth")
    generate_study(StudyConfig(seed=11, index=0, fast=True, series=("sag_t1", "ax_t2")), out)
    return out


def _series(folder: Path) -> dict[str, list[Dataset]]:
    series: dict[str, list[Dataset]] = {}
    for f in sorted(folder.glob("studies/*/*/*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    return series


def test_generated_studies_carry_the_request_as_a_worklist_would(generated: Path) -> None:
    from ml.data.synthetic.dicom_writer import StudyInfo, worklist_request

    series = _series(generated)
    ds = next(iter(series.values()))[0]
    item = ds.RequestAttributesSequence[0]
    assert item.RequestedProcedureDescription == "MRI LUMBAR SPINE"
    assert item.ReasonForTheRequestedProcedure  # seed 11 / index 0 has one
    facts = study_facts_from_datasets(series)
    age = int(str(ds.PatientAge)[:-1])
    sex = {"F": "female", "M": "male"}[str(ds.PatientSex)]
    assert clinical_history(facts).startswith(str(item.ReasonForTheRequestedProcedure) + ".")
    assert clinical_history(facts).endswith(f"{age}-year-old {sex}.")

    def info(i: int) -> StudyInfo:
        return StudyInfo(f"1.2.{i}", "", "", "", "", "F", 50, "", "", "", "", "MRI CERVICAL SPINE", 70.0)

    requests = [worklist_request(info(i)) for i in range(400)]
    share = sum(not r.reason for r in requests) / len(requests)
    assert 0.1 < share < 0.3  # about one request in five carries no reason
    assert all("neck" in r.reason.lower() for r in requests if r.reason)  # the region's bank
    assert worklist_request(info(7)) == worklist_request(info(7))


def test_technique_names_the_classified_series_and_the_contrast(generated: Path) -> None:
    series = _series(generated)
    g = ground_draft("", calls({}), "lumbar", study_facts_from_datasets(series))
    assert g.sections["TECHNIQUE"] == (
        "MRI of the lumbar spine: sagittal T1-weighted and axial T2-weighted images, without intravenous contrast."
    )
    for datasets in series.values():
        for ds in datasets:
            ds.ContrastBolusAgent = "GADOLINIUM"
    assert (
        "before and after intravenous contrast"
        in ground_draft("", calls({}), "lumbar", study_facts_from_datasets(series)).sections["TECHNIQUE"]
    )


def test_studies_whose_calls_differ_get_different_drafts_from_the_same_writer_text() -> None:
    a = ground_draft(AVERAGE_REPORT, calls({"disc_herniation": ("L2-3", "left")}), "lumbar")
    b = ground_draft(AVERAGE_REPORT, calls({"disc_herniation": ("L4-5", "left")}), "lumbar")
    c = ground_draft(AVERAGE_REPORT, calls({}), "lumbar")
    assert len({a.text, b.text, c.text}) == 3
    assert ground_draft(AVERAGE_REPORT, calls({}), "lumbar").text == c.text  # deterministic


def test_the_pipeline_grounds_the_report_agents_draft(tiny_pipeline_dir, agents_synth_dir) -> None:
    """The real tiny pipeline on a generated study: whatever its decoder wrote, the draft states
    exactly the conditions it called present, and the history is the DICOM's."""
    from ml.agents.pipeline import Pipeline
    from ml.data.dicom_adapter import study_from_datasets

    series: dict[str, list[Dataset]] = {}
    for f in sorted((agents_synth_dir / "studies" / "SYN-0002").glob("*/*.dcm")):
        ds = pydicom.dcmread(f)
        series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
    pipeline = Pipeline.load(tiny_pipeline_dir)
    study, skipped = study_from_datasets(next(iter(series.values()))[0].StudyInstanceUID, series, pipeline.preprocess)
    facts = study_facts_from_datasets(series, [])

    r = pipeline.analyze(study, skipped, facts)

    assert r.report_source == "report_agent", r.errors
    assert r.report_sections["CLINICAL HISTORY"] == clinical_history(facts)
    assert r.report_sections["COMPARISON"] == NO_PRIORS
    labels = extract_labels(r.report_text).labels
    assert {k for k, v in labels.items() if v != 0} == {c.condition for c in r.conditions if c.present}, r.report_text
    assert r.report_check["residual"] == []
    assert r.report_check["written"] != r.report_text  # the factual sections, at least, are the data's
    assert all(s.rstrip()[-1] in ".!?)" for s in finding_sentences(r.report_text)), r.report_text
