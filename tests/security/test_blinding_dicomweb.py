"""Blinding on the DICOMweb side: the box SR another reader stored in Orthanc is invisible to a
blinded second reader through the proxy (QIDO rows, metadata, the instance itself), names no
one in what OHIF lists, and becomes visible once both have signed. Real Orthanc, real proxy."""

from __future__ import annotations

import json

import httpx
import pydicom
import pytest
from django.test import Client

from reviewer.integrations.sr import READER_SERIES_DESCRIPTION, write_reader_sr
from reviewer.models import Assignment, Review
from tests.dicom_factory import write_study
from tests.factories import StudyFactory, UserFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db]


def _json(response) -> list:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.status_code
    return json.loads(b"".join(response.streaming_content))


def _series_uids(client: Client, study_uid: str) -> set[str]:
    rows = _json(client.get(f"/dicom-web/studies/{study_uid}/series", HTTP_ACCEPT="application/dicom+json"))
    return {row["0020000E"]["Value"][0] for row in rows}


@pytest.fixture
def two_readers_one_sr(tmp_path, empty_orthanc, orthanc_settings):  # type: ignore[no-untyped-def]
    study_uid, files = write_study(tmp_path / "dcm")
    for f in files:
        assert empty_orthanc.post("/instances", content=f.read_bytes()).status_code == 200
    header = pydicom.dcmread(files[1], stop_before_pixels=True)
    study = StudyFactory(study_uid=study_uid, blinded=True)
    alice = UserFactory(role="radiologist", first_name="Alice", last_name="Zqxreader")
    bob = UserFactory(role="radiologist")
    for reader in (alice, bob):
        Assignment.objects.create(study=study, reader=reader)
    box = {"condition": "disc_herniation", "sop_uid": header.SOPInstanceUID, "xyxy": [10, 12, 30, 40]}
    sr = write_reader_sr(study=study, parent=None, author=alice, boxes=[box])
    return study, alice, bob, sr


def _client(user) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(user)
    return client


def test_a_blinded_reader_cannot_see_another_readers_box_sr_through_the_proxy(two_readers_one_sr):  # type: ignore[no-untyped-def]
    study, alice, bob, sr = two_readers_one_sr
    as_alice, as_bob = _client(alice), _client(bob)
    uid = study.study_uid

    assert sr.series_instance_uid in _series_uids(as_alice, uid), "the author sees her own SR"
    assert sr.series_instance_uid not in _series_uids(as_bob, uid)
    series_path = f"/dicom-web/studies/{uid}/series/{sr.series_instance_uid}"
    for path in (f"{series_path}/metadata", f"{series_path}/instances",
                 f"{series_path}/instances/{sr.sop_instance_uid}/metadata"):  # fmt: skip
        assert as_bob.get(path, HTTP_ACCEPT="application/dicom+json").status_code == 404, path
    rows = _json(as_bob.get(f"/dicom-web/studies/{uid}/instances", HTTP_ACCEPT="application/dicom+json"))
    assert sr.sop_instance_uid not in {row["00080018"]["Value"][0] for row in rows}
    # what OHIF lists for the author names no one
    mine = _json(as_alice.get(f"{series_path}/metadata", HTTP_ACCEPT="application/dicom+json"))
    assert mine[0]["0008103E"]["Value"] == [READER_SERIES_DESCRIPTION]
    assert "Zqxreader" not in json.dumps(mine)


def test_the_other_readers_boxes_become_visible_once_both_have_signed(two_readers_one_sr):  # type: ignore[no-untyped-def]
    study, alice, bob, sr = two_readers_one_sr
    as_bob = _client(bob)
    Review.objects.create(study=study, reader=alice, radpeer="1", signed_at="2026-01-01T00:00:00Z")
    assert sr.series_instance_uid not in _series_uids(as_bob, study.study_uid), "bob has not signed yet"
    Review.objects.create(study=study, reader=bob, radpeer="1", signed_at="2026-01-01T00:00:00Z")
    assert sr.series_instance_uid in _series_uids(as_bob, study.study_uid)


def test_an_unblinded_study_shows_every_readers_boxes(two_readers_one_sr):  # type: ignore[no-untyped-def]
    study, _alice, bob, sr = two_readers_one_sr
    study.blinded = False
    study.save(update_fields=["blinded"])
    assert sr.series_instance_uid in _series_uids(_client(bob), study.study_uid)


def test_the_image_series_fast_path_never_lets_a_hidden_sr_through(two_readers_one_sr):  # type: ignore[no-untyped-def]
    """The proxy skips the blinding query for a path into a series that holds none of the app's
    SRs; naming the hidden SR's instance under an image series must not take that shortcut."""
    study, _alice, bob, sr = two_readers_one_sr
    as_bob = _client(bob)
    uid = study.study_uid
    image_series = sorted(_series_uids(as_bob, uid))[0]
    assert image_series != sr.series_instance_uid
    assert as_bob.get(f"/dicom-web/studies/{uid}/series/{image_series}/metadata").status_code == 200
    smuggled = as_bob.get(f"/dicom-web/studies/{uid}/series/{image_series}/instances/{sr.sop_instance_uid}/metadata")
    assert smuggled.status_code == 404
    assert json.loads(smuggled.content) == {"detail": "not found"}  # refused by the proxy, never asked of Orthanc


def test_pixel_data_handed_to_the_viewer_nginx_passes_the_same_blinding(two_readers_one_sr, settings):  # type: ignore[no-untyped-def]
    """Behind the viewer nginx the proxy answers pixel data with an X-Accel-Redirect (nginx fetches
    it from Orthanc): only after the same checks, so a blinded reader's path to the hidden SR is
    the same 404, never a redirect; the author and an image frame get the redirect to the Orthanc
    URL the proxy rebuilt."""
    study, alice, bob, sr = two_readers_one_sr
    settings.SPINEREVIEW_DICOMWEB_ACCEL = "/_orthanc"
    uid = study.study_uid
    sr_bulk = f"/dicom-web/studies/{uid}/series/{sr.series_instance_uid}/instances/{sr.sop_instance_uid}/rendered"
    from_nginx = {"HTTP_X_SPINEREVIEW_ACCEL": "/_orthanc"}
    hidden = _client(bob).get(sr_bulk, **from_nginx)
    assert hidden.status_code == 404
    assert "X-Accel-Redirect" not in hidden
    assert json.loads(hidden.content) == {"detail": "not found"}
    own = _client(alice).get(sr_bulk, **from_nginx)
    assert own.status_code == 200
    assert own.content == b""
    assert own["X-Accel-Redirect"] == "/_orthanc" + httpx.URL(settings.ORTHANC_URL).path.rstrip("/") + sr_bulk
    assert "immutable" in own["Cache-Control"]
    rows = _json(_client(bob).get(f"/dicom-web/studies/{uid}/instances", HTTP_ACCEPT="application/dicom+json"))
    image = next(r for r in rows if r["0020000E"]["Value"][0] != sr.series_instance_uid)
    series_uid, sop_uid = image["0020000E"]["Value"][0], image["00080018"]["Value"][0]
    frame = f"/dicom-web/studies/{uid}/series/{series_uid}/instances/{sop_uid}/frames/1"
    assert _client(bob).get(frame, **from_nginx)["X-Accel-Redirect"].endswith(frame)
    # without nginx's header (the app origin, gunicorn alone) the proxy relays as before
    relayed = _client(bob).get(
        frame, HTTP_ACCEPT='multipart/related; type="application/octet-stream"; transfer-syntax=*'
    )
    assert relayed.status_code == 200
    assert "X-Accel-Redirect" not in relayed
    assert b"".join(relayed.streaming_content)


def test_nginx_keeps_no_grant_for_a_series_holding_an_sr(two_readers_one_sr, settings):  # type: ignore[no-untyped-def]
    """The viewer nginx's grant subrequest for a frame (X-SpineReview-Pixel-Grant): the app's yes
    may be kept per credential and series (X-Accel-Expires = SPINEREVIEW_PIXEL_AUTH_TTL) only for
    a series without any of the app's SRs, whose blinding is decided per reader and instance; a
    hidden SR, an SR series even for its author, and a query are never a kept yes, and every no is
    a 403 (nginx then asks the whole way for the app's own answer)."""
    study, alice, bob, sr = two_readers_one_sr
    settings.SPINEREVIEW_DICOMWEB_ACCEL = "/_orthanc"
    settings.SPINEREVIEW_PIXEL_AUTH_TTL = 7
    uid = study.study_uid
    grant = {"HTTP_X_SPINEREVIEW_ACCEL": "/_orthanc", "HTTP_X_SPINEREVIEW_PIXEL_GRANT": "1"}
    rows = _json(_client(bob).get(f"/dicom-web/studies/{uid}/instances", HTTP_ACCEPT="application/dicom+json"))
    image = next(r for r in rows if r["0020000E"]["Value"][0] != sr.series_instance_uid)
    series_uid, sop_uid = image["0020000E"]["Value"][0], image["00080018"]["Value"][0]
    frame = f"/dicom-web/studies/{uid}/series/{series_uid}/instances/{sop_uid}/frames/1"
    sr_frame = f"/dicom-web/studies/{uid}/series/{sr.series_instance_uid}/instances/{sr.sop_instance_uid}/frames/1"

    yes = _client(bob).get(frame, **grant)
    assert (yes.status_code, yes["X-Accel-Expires"], yes.content) == (204, "7", b"")
    assert _client(bob).get(sr_frame, **grant).status_code == 403  # hidden from bob
    assert _client(bob).get(sr_frame, HTTP_X_SPINEREVIEW_ACCEL="/_orthanc").status_code == 404  # the app's answer
    own = _client(alice).get(sr_frame, **grant)
    assert (own.status_code, own["X-Accel-Expires"]) == (204, "0")
    smuggled = f"/dicom-web/studies/{uid}/series/{series_uid}/instances/{sr.sop_instance_uid}/frames/1"
    assert _client(bob).get(smuggled, **grant).status_code == 403
    assert _client(bob).get(frame + "?quality=1", **grant).status_code == 403
    assert Client().get(frame, **grant).status_code == 403  # no credential
    rendered = frame.removesuffix("/frames/1") + "/rendered"
    assert _client(bob).get(rendered, **grant).status_code == 403  # frames only
    settings.SPINEREVIEW_PIXEL_AUTH_TTL = 0
    assert _client(bob).get(frame, **grant)["X-Accel-Expires"] == "0"
