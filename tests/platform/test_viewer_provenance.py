"""Provenance and priors in the viewer's study context.

- every finding sentence of a grounded draft links to the agent call it states (condition,
  level, side, probability), computed from sentence text, so the links and the AI/typed marks
  survive the reader's edits of other sections (pure function, then through the API with a
  revision saved by the revisions endpoint);
- the consistency check's changes reach the viewer, counted by action;
- the same patient's earlier studies are listed newest first with their newest signed report
  (an addendum's amended text when there is one); unsigned work is never shown, a blinded
  prior hides its reader, and a reader still reading a blinded prior sees no other reader's report.
"""

from __future__ import annotations

import datetime as dt

import pytest

from ml.agents.analysis import ConditionResult
from ml.agents.report.grounding import ground_draft
from ml.agents.report.provenance import annotate, check_summary, sentence_links

# what a writer produced: one true finding at the wrong level, one the agents called absent,
# an impression cut mid-sentence, and an invented history
WRITTEN = (
    "CLINICAL HISTORY: Radiculopathy; 71 F.\n"
    "TECHNIQUE: MRI of the lumbar spine.\n"
    "COMPARISON: None.\n"
    "ALIGNMENT: Grade 1 degenerative anterolisthesis of L4 on L5.\n"
    "DISCS: Disc herniation at L3-4.\n"
    "SPINAL CANAL: Moderate spinal canal stenosis at L4-5.\n"
    "IMPRESSION:\n1. Spinal canal stenosis at L4-5.\n2. Neural foraminal narrowing at"
)
CALLS = [
    ConditionResult("disc_herniation", 0.91, True, 0.5, "L4-5", "left"),
    ConditionResult("canal_stenosis", 0.74, True, 0.5, "L4-5", ""),
    ConditionResult("spondylolisthesis", 0.04, False, 0.5),
    ConditionResult("foraminal_stenosis", 0.2, False, 0.5),
]


def _grounded() -> tuple[str, dict]:
    g = ground_draft(WRITTEN, CALLS, "lumbar")
    return g.text, g.check


def _replace_section(text: str, title: str, body: str) -> str:
    lines = text.splitlines()
    at = next(i for i, ln in enumerate(lines) if ln.startswith(f"{title}:"))
    lines[at] = f"{title}: {body}"
    return "\n".join(lines)


# ----- the pure functions ---------------------------------------------------------------------


def test_every_present_call_is_linked_and_no_absent_one() -> None:
    text, check = _grounded()
    links = sentence_links(text, CALLS)
    by_condition: dict[str, set[str]] = {}
    for link in links:
        by_condition.setdefault(link.condition, set()).add(link.section)
        call = next(c for c in CALLS if c.condition == link.condition)
        assert (link.level, link.side, link.probability) == (call.level, call.side, call.probability)
        assert link.present
        assert link.sentence in " ".join(text.split())  # the sentence as it stands in the draft
    assert set(by_condition) == {"disc_herniation", "canal_stenosis"}
    assert "IMPRESSION" in by_condition["disc_herniation"]
    assert "DISCS" in by_condition["disc_herniation"]
    assert {"IMPRESSION", "SPINAL CANAL"} <= by_condition["canal_stenosis"]
    summary = check_summary(check)
    assert (summary["removed"] >= 1, summary["added"] >= 1, summary["cut"]) == (True, True, 1), check["changes"]


def test_links_survive_an_edit_of_another_section() -> None:
    text, _ = _grounded()
    links = sentence_links(text, CALLS)
    edited = _replace_section(text, "CLINICAL HISTORY", "Left leg pain for six weeks. No trauma.")
    edited = _replace_section(edited, "NEURAL FORAMINA", "Mild left foraminal narrowing at L5-S1.")
    marks = annotate(edited, text, links)
    by_sentence = {(m.section, m.sentence): m for m in marks}
    for link in links:  # every linked AI sentence is still the AI's and still linked
        mark = by_sentence[(link.section, link.sentence)]
        assert (mark.origin, link.condition in mark.conditions) == ("ai", True), mark
    typed = [m for m in marks if m.origin == "typed"]
    assert {m.sentence for m in typed} == {
        "Left leg pain for six weeks.", "No trauma.", "Mild left foraminal narrowing at L5-S1."
    }  # fmt: skip
    assert all(not m.conditions for m in typed)  # a typed sentence is the reader's: no AI link
    # the same links, computed again from the edited text, for the sentences left as they were
    again = {(x.sentence, x.condition) for x in sentence_links(edited, CALLS) if x.section != "NEURAL FORAMINA"}
    assert again == {(x.sentence, x.condition) for x in links}


def test_an_edited_finding_sentence_becomes_typed() -> None:
    text, _ = _grounded()
    links = sentence_links(text, CALLS)
    target = next(x for x in links if x.section == "SPINAL CANAL")
    edited = text.replace(target.sentence, "Severe spinal canal stenosis at L4-5.")
    mark = next(m for m in annotate(edited, text, links) if m.section == "SPINAL CANAL")
    assert (mark.origin, mark.conditions) == ("typed", [])


# ----- the API (PostgreSQL) -------------------------------------------------------------------


def _grounded_draft_row():  # type: ignore[no-untyped-def]
    from tests.factories import DraftFactory, FindingFactory, StudyFactory

    text, check = _grounded()
    study = StudyFactory(study_date=dt.date(2024, 5, 2), status="draft_ready")
    thresholds = [{"condition": c.condition, "threshold": c.threshold} for c in CALLS]
    analysis = {"report_check": check, "conditions": thresholds}
    draft = DraftFactory(study=study, text=text, sections={}, analysis=analysis)
    for c in CALLS:
        FindingFactory(draft=draft, condition=c.condition, probability=c.probability, present=c.present, level=c.level,
                       side=c.side)  # fmt: skip
    return study, draft


@pytest.mark.django_db
def test_api_returns_links_that_survive_a_saved_edit(api_as) -> None:  # type: ignore[no-untyped-def]
    study, draft = _grounded_draft_row()
    client = api_as("radiologist")
    url = f"/api/viewer/studies/{study.study_uid}/"
    first = client.get(url).json()["draft_provenance"]
    assert {x["condition"] for x in first["links"]} == {"disc_herniation", "canal_stenosis"}
    assert all(x["origin"] == "ai" for x in first["current"])  # nothing edited yet
    assert first["check_summary"]["cut"] == 1
    assert any(c["action"] == "removed" and c["condition"] == "spondylolisthesis" for c in first["changes"])

    edited = _replace_section(draft.text, "CLINICAL HISTORY", "Left leg pain for six weeks.")
    saved = client.post(f"/api/studies/{study.pk}/revisions/", {"text": edited, "sections": {}, "parent": None},
                        format="json")  # fmt: skip
    assert saved.status_code == 201, saved.content
    after = client.get(url).json()["draft_provenance"]
    assert after["links"] == first["links"]
    current = {(m["section"], m["sentence"]): m for m in after["current"]}
    for link in after["links"]:
        assert current[(link["section"], link["sentence"])]["origin"] == "ai"
        assert link["condition"] in current[(link["section"], link["sentence"])]["conditions"]
    assert current[("CLINICAL HISTORY", "Left leg pain for six weeks.")]["origin"] == "typed"
    # another reader's edits are not the caller's report: their view is still the draft's
    other = api_as("radiologist").get(url).json()["draft_provenance"]
    assert all(m["origin"] == "ai" for m in other["current"])


def _sign(client, study, text: str) -> None:  # type: ignore[no-untyped-def]
    revision = client.post(f"/api/studies/{study.pk}/revisions/", {"text": text, "sections": {}, "parent": None},
                           format="json")  # fmt: skip
    assert revision.status_code == 201, revision.content
    signed = client.post(f"/api/studies/{study.pk}/sign/", {"radpeer": "1", "revision": revision.json()["id"]},
                         format="json")  # fmt: skip
    assert signed.status_code in (200, 201), signed.content


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_priors_with_their_signed_reports(api_as, role_user) -> None:  # type: ignore[no-untyped-def]
    from reviewer.models import Assignment, Review
    from tests.factories import DraftFactory, StudyFactory

    current = StudyFactory(patient_id="PAT-7", study_date=dt.date(2024, 5, 2))
    DraftFactory(study=current)
    older = StudyFactory(patient_id="PAT-7", study_date=dt.date(2019, 3, 1), description="MRI L-SPINE 2019")
    newer_prior = StudyFactory(patient_id="PAT-7", study_date=dt.date(2022, 8, 9), description="MRI L-SPINE 2022")
    StudyFactory(patient_id="PAT-7", study_date=dt.date(2025, 1, 1))  # later: not a prior
    StudyFactory(patient_id="PAT-8", study_date=dt.date(2020, 1, 1))  # another patient
    for s in (older, newer_prior):
        DraftFactory(study=s, text="IMPRESSION:\n1. Disc herniation at L4-5.")
    signer = api_as("radiologist")
    _sign(signer, newer_prior, "IMPRESSION:\n1. Disc herniation at L4-5, unchanged.")
    amended = "IMPRESSION:\n1. Disc herniation at L4-5, unchanged.\nADDENDUM: small annular fissure."
    parent = Review.objects.get(study=newer_prior).signed_revision_id
    addendum = signer.post(
        f"/api/studies/{newer_prior.pk}/revisions/",
        {"text": amended, "sections": {}, "parent": parent, "reason": "missed fissure"},
        format="json",
    )
    assert addendum.status_code == 201, addendum.content
    in_progress = api_as("radiologist")  # a save, not signed: never shown
    unsigned = {"text": "draft words", "sections": {}, "parent": None}
    assert in_progress.post(f"/api/studies/{older.pk}/revisions/", unsigned, format="json").status_code == 201

    reader = api_as("radiologist")
    priors = reader.get(f"/api/viewer/studies/{current.study_uid}/").json()["priors"]
    assert [p["study_uid"] for p in priors] == [newer_prior.study_uid, older.study_uid]
    assert priors[0]["report"]["text"].endswith("ADDENDUM: small annular fissure.")
    assert priors[0]["report"]["is_addendum"]
    assert priors[0]["report"]["addendum_reason"] == "missed fissure"
    assert priors[0]["report"]["reader"] == str(signer.user)
    assert priors[1]["report"] is None
    assert "patient_id" not in priors[0]

    # a blinded prior: its signed report is shown without the reader's name ...
    newer_prior.blinded = True
    newer_prior.save(update_fields=["blinded"])
    blinded = reader.get(f"/api/viewer/studies/{current.study_uid}/").json()["priors"][0]["report"]
    assert blinded["reader"] is None
    assert blinded["text"].startswith("IMPRESSION")
    # ... but not to a reader assigned to that prior who has not signed it yet
    Assignment.objects.create(study=newer_prior, reader=reader.user)
    assert reader.get(f"/api/viewer/studies/{current.study_uid}/").json()["priors"][0]["report"] is None
    # admins see it with the name
    admin = api_as("admin").get(f"/api/viewer/studies/{current.study_uid}/").json()["priors"][0]["report"]
    assert admin["reader"] == str(signer.user)
    # a study without a PatientID has no priors
    loose = StudyFactory(patient_id="", study_date=dt.date(2024, 5, 2))
    assert reader.get(f"/api/viewer/studies/{loose.study_uid}/").json()["priors"] == []
