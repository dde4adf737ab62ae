"""What the DICOMweb proxy does for the viewer's speed, against a real Orthanc, and that none of it
bends the rules: the study's series search and series metadata asked of Orthanc while the viewer
loads (used once, still filtered per user), pixel data asked of Orthanc uncompressed, instance
answers cached as immutable, and the development server sending without Nagle's delay."""

from __future__ import annotations

import gzip
import json
import time

import httpx
import pydicom
import pytest
from django.test import Client

from reviewer.integrations import dicomweb_prefetch
from reviewer.integrations.sr import write_reader_sr
from reviewer.models import Assignment
from tests.dicom_factory import write_study
from tests.factories import StudyFactory, UserFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db]

VIEWER = "viewer.localhost:8000"
SERIES_SEARCH = "?includefield=00080021%2C00080031%2C0008103E%2C00200011"  # what OHIF 3.13.2 asks
JSON = "application/dicom+json"


@pytest.fixture(autouse=True)
def no_answers_left():  # type: ignore[no-untyped-def]
    dicomweb_prefetch._entries.clear()
    yield
    dicomweb_prefetch._entries.clear()


@pytest.fixture
def blinded_study(tmp_path, empty_orthanc, orthanc_settings, settings):  # type: ignore[no-untyped-def]
    """A blinded study with one box SR by Alice, which Bob may not see; the viewer origin set."""
    settings.VIEWER_ORIGIN = f"http://{VIEWER}"
    settings.ALLOWED_HOSTS = ["viewer.localhost", "testserver"]
    study_uid, files = write_study(tmp_path / "dcm")
    for f in files:
        assert empty_orthanc.post("/instances", content=f.read_bytes()).status_code == 200
    header = pydicom.dcmread(files[1], stop_before_pixels=True)
    study = StudyFactory(study_uid=study_uid, blinded=True)
    alice, bob = UserFactory(role="radiologist"), UserFactory(role="radiologist")
    for reader in (alice, bob):
        Assignment.objects.create(study=study, reader=reader)
    box = {"condition": "disc_herniation", "sop_uid": header.SOPInstanceUID, "xyxy": [10, 12, 30, 40]}
    sr = write_reader_sr(study=study, parent=None, author=alice, boxes=[box])
    return study, bob, sr


def _archive_down(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("Orthanc is down", request=request)


def _orthanc_down(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The proxy's Orthanc client fails from now on: an answer can only be a prefetched one."""
    down = httpx.Client(transport=httpx.MockTransport(_archive_down))
    monkeypatch.setattr("reviewer.integrations.dicomweb_proxy.orthanc", lambda: down)


def _viewer(user=None) -> Client:  # type: ignore[no-untyped-def]
    client = Client(HTTP_HOST=VIEWER)
    if user is not None:
        client.force_login(user)
    return client


def _open_page(client: Client, study_uid: str, referer: str | None = None) -> None:
    page = referer or f"http://{VIEWER}/spine-review?StudyInstanceUIDs={study_uid}"
    assert client.get("/app-config.js", HTTP_REFERER=page).status_code == 200


def _settled() -> int:
    """Wait until every prefetch started has its answer; how many answers are kept."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        entries = list(dicomweb_prefetch._entries.values())
        if all(e.future.done() for e in entries):
            time.sleep(0.2)  # the series search's answer starts the metadata
            if all(e.future.done() for e in dicomweb_prefetch._entries.values()):
                return len(dicomweb_prefetch._entries)
        time.sleep(0.05)
    raise AssertionError("prefetch did not settle")


def _any_image_series(orthanc: httpx.Client, study_uid: str) -> str:
    return orthanc.get(f"/dicom-web/studies/{study_uid}/series", params={"Modality": "MR"}).json()[0]["0020000E"][
        "Value"
    ][0]


def _body(response) -> bytes:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.status_code
    return b"".join(response.streaming_content)


def test_the_first_answers_are_asked_while_the_viewer_loads_and_still_filtered_per_user(  # type: ignore[no-untyped-def]
    blinded_study, empty_orthanc, monkeypatch
):
    study, bob, sr = blinded_study
    uid = study.study_uid
    all_series = {row["0020000E"]["Value"][0] for row in empty_orthanc.get(f"/dicom-web/studies/{uid}/series").json()}
    as_bob = _viewer(bob)
    search = f"/dicom-web/studies/{uid}/series{SERIES_SEARCH}"
    fresh = {"search": _body(as_bob.get(search, HTTP_ACCEPT=JSON))}
    visible = {row["0020000E"]["Value"][0] for row in json.loads(fresh["search"])}
    assert sr.series_instance_uid not in visible
    assert visible < all_series
    for series in visible:
        fresh[series] = _body(as_bob.get(f"/dicom-web/studies/{uid}/series/{series}/metadata", HTTP_ACCEPT=JSON))

    _open_page(as_bob, uid)
    assert _settled() == 1 + len(all_series)  # the search and every series' metadata, the SR's too
    _orthanc_down(monkeypatch)
    assert _body(as_bob.get(search, HTTP_ACCEPT=JSON)) == fresh["search"]  # Alice's SR still left out
    for series in visible:
        path = f"/dicom-web/studies/{uid}/series/{series}/metadata"
        assert _body(as_bob.get(path, HTTP_ACCEPT=JSON)) == fresh[series]
    hidden = f"/dicom-web/studies/{uid}/series/{sr.series_instance_uid}/metadata"
    assert as_bob.get(hidden, HTTP_ACCEPT=JSON).status_code == 404  # refused before any answer is used
    assert as_bob.get(search, HTTP_ACCEPT=JSON).status_code == 502, "an answer is used once"


def test_an_admin_gets_the_prefetched_answer_whole(blinded_study, empty_orthanc, monkeypatch):  # type: ignore[no-untyped-def]
    study, _bob, _sr = blinded_study
    admin = _viewer(UserFactory(role="admin"))
    path = f"/dicom-web/studies/{study.study_uid}/series/{_any_image_series(empty_orthanc, study.study_uid)}/metadata"
    fresh = _body(admin.get(path, HTTP_ACCEPT=JSON, HTTP_ACCEPT_ENCODING="gzip, deflate"))
    _open_page(admin, study.study_uid)
    _settled()
    _orthanc_down(monkeypatch)
    prefetched = admin.get(path, HTTP_ACCEPT=JSON, HTTP_ACCEPT_ENCODING="gzip, deflate")
    body = _body(prefetched)
    assert "Content-Encoding" not in prefetched  # asked uncompressed, passed on as it came
    assert json.loads(body) == json.loads(gzip.decompress(fresh) if fresh[:2] == b"\x1f\x8b" else fresh)
    assert "00100010" in json.loads(body)[0], "identities for admins"


def test_nothing_is_asked_for_an_anonymous_page_another_origin_or_another_page(blinded_study):  # type: ignore[no-untyped-def]
    study, bob, _sr = blinded_study
    uid = study.study_uid
    _open_page(_viewer(), uid)
    _open_page(_viewer(bob), uid, referer=f"http://elsewhere.example/spine-review?StudyInstanceUIDs={uid}")
    _open_page(_viewer(bob), uid, referer=f"http://{VIEWER}/?StudyInstanceUIDs={uid}")
    _open_page(_viewer(bob), uid, referer=f"http://{VIEWER}/spine-review?StudyInstanceUIDs=1.2.x")
    _open_page(_viewer(UserFactory(role="researcher")), uid)
    assert _settled() == 0


def test_an_answer_older_than_its_time_to_live_is_not_used(blinded_study, monkeypatch):  # type: ignore[no-untyped-def]
    study, bob, _sr = blinded_study
    as_bob = _viewer(bob)
    _open_page(as_bob, study.study_uid)
    _settled()
    monkeypatch.setattr(dicomweb_prefetch, "TTL_S", 0.0)
    _orthanc_down(monkeypatch)
    response = as_bob.get(f"/dicom-web/studies/{study.study_uid}/series{SERIES_SEARCH}", HTTP_ACCEPT=JSON)
    assert response.status_code == 502


def test_pixel_data_comes_uncompressed_and_instance_answers_are_immutable(blinded_study, empty_orthanc):  # type: ignore[no-untyped-def]
    study, bob, _sr = blinded_study
    uid = study.study_uid
    series_uid = _any_image_series(empty_orthanc, uid)
    sop = empty_orthanc.get(f"/dicom-web/studies/{uid}/series/{series_uid}/instances").json()[0]["00080018"]["Value"][0]
    accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    path = f"/dicom-web/studies/{uid}/series/{series_uid}/instances/{sop}/frames/1"
    assert "gzip" in empty_orthanc.get(path, headers={"Accept": accept, "Accept-Encoding": "gzip"}).headers.get(
        "content-encoding", ""
    ), "Orthanc gzips frames for a client that takes gzip"
    frame = _viewer(bob).get(path, HTTP_ACCEPT=accept, HTTP_ACCEPT_ENCODING="gzip, deflate, br")
    body = _body(frame)
    assert "Content-Encoding" not in frame
    assert int(frame["Content-Length"]) == len(body) > 64 * 64 * 2
    control = {part.strip() for part in frame["Cache-Control"].split(",")}
    assert {"private", "immutable"} <= control
    assert "public" not in control


def test_the_development_server_sends_without_nagles_delay():  # type: ignore[no-untyped-def]
    from django.core.servers import basehttp

    assert basehttp.WSGIRequestHandler.disable_nagle_algorithm is True
