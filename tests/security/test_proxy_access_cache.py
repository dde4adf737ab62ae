"""The DICOMweb proxy keeps each reader's roles and each study's SR UIDs in the cache
(``reviewer.integrations.dicomweb_access``): every change they depend on must take effect on the
very next request, with the cache already filled. Real Orthanc, real proxy, session sign-in as
the viewer uses."""

from __future__ import annotations

import json

import pydicom
import pytest
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.cache.backends.base import BaseCache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from reviewer.integrations.sr import write_reader_sr
from reviewer.models import Assignment, Review
from tests.dicom_factory import write_study
from tests.factories import StudyFactory, UserFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db]
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
JSON = "application/dicom+json"


class _Study:
    def __init__(self, uid: str, series: str, sop: str) -> None:
        self.uid, self.series, self.sop = uid, series, sop

    def frame(self) -> str:
        return f"/dicom-web/studies/{self.uid}/series/{self.series}/instances/{self.sop}/frames/1"

    def metadata(self, series: str | None = None) -> str:
        return f"/dicom-web/studies/{self.uid}/series/{series or self.series}/metadata"


@pytest.fixture(autouse=True)
def _empty_cache():  # type: ignore[no-untyped-def]
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def stored(tmp_path, empty_orthanc, orthanc_settings) -> _Study:  # type: ignore[no-untyped-def]
    study_uid, files = write_study(tmp_path / "dcm")
    for f in files:
        assert empty_orthanc.post("/instances", content=f.read_bytes()).status_code == 200
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    first = next(h for h in headers if h.Modality == "MR")
    return _Study(study_uid, first.SeriesInstanceUID, first.SOPInstanceUID)


def _as(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def _frame_status(client: Client, study: _Study) -> int:
    response = client.get(study.frame(), HTTP_ACCEPT=FRAME_ACCEPT)
    if response.status_code == 200:
        b"".join(response.streaming_content)
    return response.status_code


def test_a_filled_cache_spares_the_role_and_sr_queries(stored):  # type: ignore[no-untyped-def]
    client = _as(UserFactory(role="radiologist"))
    assert _frame_status(client, stored) == 200
    with CaptureQueriesContext(connection) as queries:
        assert _frame_status(client, stored) == 200
    tables = " ".join(q["sql"] for q in queries.captured_queries)
    assert "auth_group" not in tables, tables
    assert "reviewer_structuredreport" not in tables, tables
    assert "django_session" in tables, "the session itself is checked on every request"


def test_a_role_removed_is_refused_on_the_next_request(stored):  # type: ignore[no-untyped-def]
    reader = UserFactory(role="radiologist")
    client = _as(reader)
    assert _frame_status(client, stored) == 200
    reader.groups.remove(Group.objects.get(name="radiologist"))
    assert _frame_status(client, stored) == 403


def test_a_role_removed_from_the_groups_side_is_refused_on_the_next_request(stored):  # type: ignore[no-untyped-def]
    reader = UserFactory(role="annotator")
    client = _as(reader)
    assert _frame_status(client, stored) == 200
    Group.objects.get(name="annotator").user_set.clear()
    assert _frame_status(client, stored) == 403


def test_a_role_granted_is_honoured_on_the_next_request(stored):  # type: ignore[no-untyped-def]
    user = UserFactory(role="researcher")
    client = _as(user)
    assert _frame_status(client, stored) == 403
    user.groups.add(Group.objects.get_or_create(name="radiologist")[0])
    assert _frame_status(client, stored) == 200


def test_a_renamed_role_group_no_longer_grants_it(stored):  # type: ignore[no-untyped-def]
    client = _as(UserFactory(role="radiologist"))
    assert _frame_status(client, stored) == 200
    group = Group.objects.get(name="radiologist")
    group.name = "radiologist-retired"
    group.save()
    assert _frame_status(client, stored) == 403


def test_admin_rights_withdrawn_hide_identities_on_the_next_request(stored):  # type: ignore[no-untyped-def]
    admin = UserFactory(role="radiologist")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    client = _as(admin)
    assert b"SYNTHETIC^" in b"".join(client.get(stored.metadata(), HTTP_ACCEPT=JSON).streaming_content)
    admin.is_staff = admin.is_superuser = False
    admin.save(update_fields=["is_staff", "is_superuser"])
    response = client.get(stored.metadata(), HTTP_ACCEPT=JSON)
    assert response.status_code == 200
    assert b"SYNTHETIC^" not in b"".join(response.streaming_content)


def test_a_deactivated_reader_is_refused_at_once(stored):  # type: ignore[no-untyped-def]
    reader = UserFactory(role="radiologist")
    client = _as(reader)
    assert _frame_status(client, stored) == 200
    reader.is_active = False
    reader.save(update_fields=["is_active"])
    assert _frame_status(client, stored) in (401, 403)


@pytest.fixture
def blinded(stored):  # type: ignore[no-untyped-def]
    study = StudyFactory(study_uid=stored.uid, blinded=True)
    alice, bob = UserFactory(role="radiologist"), UserFactory(role="radiologist")
    for reader in (alice, bob):
        Assignment.objects.create(study=study, reader=reader)
    return study, alice, bob


def _alice_boxes(study, alice, sop: str):  # type: ignore[no-untyped-def]
    box = {"condition": "disc_herniation", "sop_uid": sop, "xyxy": [10, 12, 30, 40]}
    return write_reader_sr(study=study, parent=None, author=alice, boxes=[box])


def test_an_sr_stored_after_the_cache_was_filled_is_hidden_at_once(stored, blinded):  # type: ignore[no-untyped-def]
    study, alice, bob = blinded
    as_bob = _as(bob)
    assert _frame_status(as_bob, stored) == 200  # the study's SRs (none yet) are now in the cache
    assert as_bob.get(stored.metadata(), HTTP_ACCEPT=JSON).status_code == 200
    sr = _alice_boxes(study, alice, stored.sop)
    assert as_bob.get(stored.metadata(sr.series_instance_uid), HTTP_ACCEPT=JSON).status_code == 404
    smuggled = f"/dicom-web/studies/{stored.uid}/series/{stored.series}/instances/{sr.sop_instance_uid}/metadata"
    assert as_bob.get(smuggled, HTTP_ACCEPT=JSON).status_code == 404
    assert _frame_status(as_bob, stored) == 200, "the image series itself stays readable"


def test_signing_unblinding_and_reassigning_take_effect_with_a_filled_cache(stored, blinded):  # type: ignore[no-untyped-def]
    study, alice, bob = blinded
    sr = _alice_boxes(study, alice, stored.sop)
    sr_metadata = stored.metadata(sr.series_instance_uid)
    as_bob = _as(bob)
    assert _frame_status(as_bob, stored) == 200
    assert as_bob.get(sr_metadata, HTTP_ACCEPT=JSON).status_code == 404
    # re-assigned to Carol: she reads blinded from her first request
    Assignment.objects.filter(study=study, reader=bob).delete()
    carol = UserFactory(role="radiologist")
    Assignment.objects.create(study=study, reader=carol)
    as_carol = _as(carol)
    assert _frame_status(as_carol, stored) == 200
    assert as_carol.get(sr_metadata, HTTP_ACCEPT=JSON).status_code == 404
    # both signed: Alice's boxes are Carol's to see on her next request
    for reader in (alice, carol):
        Review.objects.create(study=study, reader=reader, radpeer="1", signed_at="2026-01-01T00:00:00Z")
    assert as_carol.get(sr_metadata, HTTP_ACCEPT=JSON).status_code == 200
    # the study unblinded: Bob sees them too, on his next request
    study.blinded = False
    study.save(update_fields=["blinded"])
    response = as_bob.get(sr_metadata, HTTP_ACCEPT=JSON)
    assert response.status_code == 200
    assert json.loads(b"".join(response.streaming_content))[0]["0020000E"]["Value"] == [sr.series_instance_uid]


class _Unreachable(BaseCache):
    """A cache whose server is down: every call fails."""

    def __init__(self, location: str, params: dict) -> None:
        super().__init__(params)

    def _down(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise ConnectionError("cache server down")

    get = set = add = delete = get_many = set_many = clear = touch = has_key = _down


def test_without_a_cache_every_check_reads_the_database(stored, blinded, settings):  # type: ignore[no-untyped-def]
    study, alice, bob = blinded
    as_bob = _as(bob)
    settings.CACHES = {"default": {"BACKEND": f"{__name__}._Unreachable"}}
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    assert _frame_status(as_bob, stored) == 200
    sr = _alice_boxes(study, alice, stored.sop)
    assert as_bob.get(stored.metadata(sr.series_instance_uid), HTTP_ACCEPT=JSON).status_code == 404
    bob.groups.clear()
    assert _frame_status(as_bob, stored) == 403
