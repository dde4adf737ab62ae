"""The reading room's statistics section (``/statistics/reading/``): per-condition agreement with
the AI from the readers' current verdicts, optionally of one model version, and active reading
time with finding outcomes by model version and RADPEER score, for researchers and admins only,
without reader or study identities."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from reviewer.models import ModelVersion, ReadingHeartbeat
from reviewer.services import feedback as fb
from reviewer.services.reports import sign_review
from tests.factories import DraftFactory, FindingFactory, UserFactory

pytestmark = pytest.mark.django_db


def _read(draft, reader, *, beats: int, radpeer: str, verdicts: dict[str, tuple[str, str]]):  # type: ignore[no-untyped-def]
    """``reader`` reads ``draft`` for ``beats`` heartbeats 15 s apart, gives the verdicts, signs."""
    t0 = timezone.now() - timedelta(hours=2)
    for i in range(beats):
        beat = fb.record_heartbeat(study=draft.study, reader=reader)
        ReadingHeartbeat.objects.filter(pk=beat.pk).update(at=t0 + timedelta(seconds=15 * i))
    for condition, (verdict, level) in verdicts.items():
        finding = draft.findings.get(condition=condition)
        fb.record_feedback(study=draft.study, finding_id=finding.pk, reader=reader, verdict=verdict, level=level)
    return sign_review(study=draft.study, reader=reader, radpeer=radpeer, comment="why" if radpeer != "1" else "")


@pytest.fixture
def readings():  # type: ignore[no-untyped-def]
    old, new = (
        ModelVersion.objects.create(name="spine", version="1"),
        ModelVersion.objects.create(name="spine", version="2"),
    )
    drafts = []
    for version in (old, old, new):
        d = DraftFactory(model_version=version)
        FindingFactory(draft=d, condition="disc_herniation", present=True, level="L4-5")
        FindingFactory(draft=d, condition="acute_fracture", present=True, level="L1-2")
        drafts.append(d)
    alice = UserFactory(role="radiologist", username="dr-alice-reading")
    bob = UserFactory(role="radiologist", username="dr-bob-reading")
    # old model: 5 and 9 beats (75 s, 135 s of reading: each beat credits 15 s); new model: 3 beats (45 s)
    _read(
        drafts[0],
        alice,
        beats=5,
        radpeer="1",
        verdicts={"disc_herniation": ("agree", ""), "acute_fracture": ("disagree", "")},
    )
    _read(drafts[1], bob, beats=9, radpeer="2a", verdicts={"disc_herniation": ("correct", "L5-S1")})
    _read(
        drafts[2],
        alice,
        beats=3,
        radpeer="1",
        verdicts={"disc_herniation": ("agree", ""), "acute_fracture": ("agree", "")},
    )
    return drafts


def test_researchers_see_agreement_per_condition_and_reading_time_by_model_and_radpeer(readings, client, role_user):  # type: ignore[no-untyped-def]
    client.force_login(role_user("researcher"))
    response = client.get("/statistics/reading/")
    assert response.status_code == 200
    agreement = {a["condition"]: a for a in response.context["agreement"]}
    assert len(agreement) == 17
    assert (agreement["disc_herniation"]["n"], agreement["disc_herniation"]["agree"]) == (3, 2)
    assert agreement["disc_herniation"]["corrected"] == 1
    assert agreement["disc_herniation"]["share"] == "66.7%"
    assert (agreement["acute_fracture"]["n"], agreement["acute_fracture"]["share"]) == (2, "50.0%")
    assert agreement["canal_stenosis"]["share"] == "—"
    by_model = {r["name"]: r for r in response.context["reading"]["by_model"]}
    assert by_model["spine@1"]["n"] == 2
    assert by_model["spine@1"]["median_seconds"] == 105.0  # median of 75 s and 135 s
    assert (by_model["spine@1"]["accepted"], by_model["spine@1"]["corrected"], by_model["spine@1"]["rejected"]) == (
        1,
        1,
        1,
    )
    assert (by_model["spine@2"]["median_seconds"], by_model["spine@2"]["accepted"]) == (45.0, 2)
    by_radpeer = {r["name"]: r for r in response.context["reading"]["by_radpeer"]}
    assert (by_radpeer["1"]["n"], by_radpeer["1"]["mean_seconds"]) == (2, 60.0)
    assert (by_radpeer["2a"]["n"], by_radpeer["2a"]["median"]) == (1, "2:15")
    html = response.content.decode()
    assert '<tr data-model="spine@1"><td>spine@1</td><td>2</td><td>1:45</td>' in html
    assert "dr-alice-reading" not in html
    assert "dr-bob-reading" not in html
    assert readings[0].study.study_uid not in html


def test_agreement_for_one_model_version(readings, client, role_user):  # type: ignore[no-untyped-def]
    client.force_login(role_user("admin"))
    response = client.get("/statistics/reading/", {"model_version": "spine@2"})
    agreement = {a["condition"]: a for a in response.context["agreement"]}
    assert (agreement["disc_herniation"]["n"], agreement["acute_fracture"]["share"]) == (1, "100.0%")
    assert '<option value="spine@2" selected>' in response.content.decode()
    ignored = client.get("/statistics/reading/", {"model_version": "nobody@0"})
    assert ignored.context["model_version"] == ""
    assert {a["condition"]: a for a in ignored.context["agreement"]}["disc_herniation"]["n"] == 3


@pytest.mark.parametrize(
    ("role", "status"), [("radiologist", 403), ("annotator", 403), ("researcher", 200), ("admin", 200)]
)
def test_only_researchers_and_admins_see_the_reading_statistics(role, status, client, role_user):  # type: ignore[no-untyped-def]
    client.force_login(role_user(role))
    assert client.get("/statistics/reading/").status_code == status
