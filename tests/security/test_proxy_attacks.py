"""The DICOMweb proxy against traversal, encoding and method-override attacks, over real HTTP
(gunicorn) in front of the real Orthanc; and the requests the viewer makes, still served.

Every attack must be refused *by the proxy* (its JSON ``detail``, never an Orthanc answer), leak
nothing of Orthanc's own REST API, and leave the study in Orthanc whole.
"""

from __future__ import annotations

import re

import httpx
import pytest

from tests.dicom_factory import SeriesSpec, write_study
from tests.security.conftest import PASSWORD, STOW_MAX_BYTES, Answer, World

# django_db: so that the test database is set up (the data itself is committed by ``world``)
pytestmark = [pytest.mark.services, pytest.mark.django_db]

REFUSALS = {400, 403, 404, 405, 406, 411, 413, 414, 415}
# (method, target, role). {study}/{series}/{sop}: DICOM UIDs; {oid}/{pid}/{iid}:
# Orthanc's own ids of the study, its patient and an instance.
ATTACKS: list[tuple[str, str, str]] = [
    ("GET", "/dicom-web/..%2f..%2fsystem", "annotator"),
    ("GET", "/dicom-web/..%2F..%2Fsystem", "annotator"),
    ("GET", "/dicom-web/..%2fstudies/{oid}?_method=DELETE", "annotator"),
    ("GET", "/dicom-web/..%2fstudies/{oid}?_method=DELETE", "radiologist"),
    ("GET", "/dicom-web/..%2ftools/find?_method=POST", "annotator"),
    ("POST", "/dicom-web/..%2ftools/find", "radiologist"),
    ("GET", "/dicom-web/..%2fpatients/{pid}/archive", "annotator"),
    ("GET", "/dicom-web/..%2finstances/{iid}/file", "annotator"),
    ("GET", "/dicom-web/%2e%2e/%2e%2e/system", "annotator"),
    ("GET", "/dicom-web/%2e%2e%2f%2e%2e%2fsystem", "annotator"),
    ("GET", "/dicom-web/%2E%2E%2Fstudies/{oid}?_method=DELETE", "radiologist"),
    ("GET", "/dicom-web/..%5c..%5csystem", "annotator"),
    ("GET", "/dicom-web/..\\..\\system", "annotator"),
    ("GET", "/dicom-web/%252e%252e%252f%252e%252e%252fsystem", "annotator"),
    ("GET", "/dicom-web/%252e%252e/%252e%252e/system", "annotator"),
    ("GET", "/dicom-web/..%252f..%252fsystem", "annotator"),
    ("GET", "/dicom-web/studies/{study}/../../system", "annotator"),
    ("GET", "/dicom-web/studies/{study}/../../studies/{oid}?_method=DELETE", "radiologist"),
    ("GET", "/dicom-web/studies/{study}/..%2f..%2f..%2fsystem", "annotator"),
    (
        "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1/../../../../../../../system",
        "annotator",
    ),
    (
        "GET",
        "/dicom-web/studies/{study}/series/{series}/instances/{sop}/bulk/..%2f..%2f..%2f..%2f..%2f..%2fsystem",
        "annotator",
    ),
    ("GET", "/dicom-web/studies/{study}/./metadata", "annotator"),
    ("GET", "/dicom-web/studies//{study}/metadata", "annotator"),
    ("GET", "/dicom-web/%E2%80%A4%E2%80%A4/%E2%80%A4%E2%80%A4/system", "annotator"),  # one-dot leaders
    ("GET", "/dicom-web/%EF%BC%8E%EF%BC%8E/%EF%BC%8E%EF%BC%8E/system", "annotator"),  # fullwidth full stops
    ("GET", "/dicom-web/%C0%AE%C0%AE/%C0%AE%C0%AE/system", "annotator"),  # overlong UTF-8 dots
    ("GET", "/dicom-web/studies%00/../../system", "annotator"),
    ("GET", "/dicom-web/studies/{study}%00/metadata", "annotator"),
    ("GET", "/dicom-web/..;/..;/system", "annotator"),
    ("GET", "/dicom-web/studies/{study}/metadata?_method=DELETE", "radiologist"),
    ("GET", "/dicom-web/studies?_method=POST", "annotator"),
    ("GET", "/dicom-web/studies?%5Fmethod=DELETE", "annotator"),
    ("GET", "/dicom-web/servers", "annotator"),  # Orthanc's DICOMweb client configuration
    ("POST", "/dicom-web/servers/sample/stow", "radiologist"),
    ("GET", "/dicom-web/info", "annotator"),
    ("DELETE", "/dicom-web/studies/{study}", "radiologist"),
    ("DELETE", "/dicom-web/..%2fstudies/{oid}", "admin"),
    ("PUT", "/dicom-web/studies/{study}", "radiologist"),
    ("PATCH", "/dicom-web/studies/{study}/metadata", "admin"),
    ("POST", "/dicom-web/studies/{study}/metadata", "radiologist"),
    ("GET", "/dicom-web/studies/" + "1." * 40 + "1/metadata", "annotator"),  # UID over 64 characters
    ("GET", "/dicom-web/studies/" + "1/" * 300 + "metadata", "annotator"),  # over-long path
    ("GET", "/dicom-web/studies?limit=1;_method=DELETE", "annotator"),
]

# What Orthanc's own REST API answers that DICOMweb never does: none may come back
ORTHANC_REST_MARKERS = (b"ApiVersion", b"DicomAet", b"DatabaseVersion", b"ParentPatient", b"PK\x03\x04",
                        b"MainDicomTags", b"\"Path\"")  # fmt: skip


def _fill(template: str, world: World) -> str:
    return template.format(
        study=world.study_uid, series=world.series_uid, sop=world.sop_uid,
        oid=world.orthanc_study, pid=world.orthanc_patient, iid=world.orthanc_instance,
    )  # fmt: skip


def _assert_whole(orthanc: httpx.Client, world: World) -> None:
    study = orthanc.get(f"/studies/{world.orthanc_study}")
    assert study.status_code == 200, "the study is gone from Orthanc"
    assert len(orthanc.get(f"/studies/{world.orthanc_study}/instances").json()) == len(world.files)


def _assert_refused_by_proxy(answer: Answer) -> None:
    assert answer.status in REFUSALS, (answer.status, answer.body[:300])
    assert answer.headers.get("content-type", "").startswith("application/json"), answer.body[:300]
    assert "detail" in answer.json(), "refused by the proxy, not by Orthanc"  # type: ignore[operator]
    for marker in ORTHANC_REST_MARKERS:
        assert marker not in answer.body


@pytest.mark.parametrize(("method", "target", "role"), ATTACKS, ids=[f"{m} {t} as {r}" for m, t, r in ATTACKS])
def test_attack_is_refused_and_orthanc_is_unaffected(world, intact_orthanc, method, target, role):  # type: ignore[no-untyped-def]
    body = b'{"Level": "Study", "Query": {}}' if method in ("POST", "PUT", "PATCH") else None
    headers = {"Content-Type": "application/json"} if body else {}
    answer = world.raw(method, _fill(target, world), role=role, headers=headers, body=body)
    _assert_refused_by_proxy(answer)
    _assert_whole(intact_orthanc, world)


def test_method_override_header_is_not_forwarded(world, intact_orthanc):  # type: ignore[no-untyped-def]
    """Orthanc honours X-HTTP-Method-Override like ``_method``: the header never reaches it."""
    answer = world.raw("GET", _fill("/dicom-web/studies/{study}/series", world), role="admin",
                       headers={"X-HTTP-Method-Override": "DELETE"})  # fmt: skip
    assert answer.status == 200
    _assert_whole(intact_orthanc, world)


# --- what the viewer does must still work ---------------------------------------------------

FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def _ohif_requests(world: World) -> list[tuple[str, dict[str, str]]]:
    s, se, i = world.study_uid, world.series_uid, world.sop_uid
    json_accept = {"Accept": "application/dicom+json"}
    return [
        ("/dicom-web/studies?limit=101&offset=0&fuzzymatching=false&includefield=00081030%2C00080060", json_accept),
        (f"/dicom-web/studies?StudyInstanceUID={s}&includefield=all", json_accept),
        (
            "/dicom-web/studies?StudyDate=20250101-20261231&ModalitiesInStudy=MR&StudyDescription=MRI*&PatientSex=O",
            json_accept,
        ),
        (f"/dicom-web/studies/{s}/series?includefield=00080021,0008103E", json_accept),
        (f"/dicom-web/studies/{s}/series/{se}/instances", json_accept),
        (f"/dicom-web/studies/{s}/metadata", json_accept),
        (f"/dicom-web/studies/{s}/series/{se}/metadata", json_accept),
        (f"/dicom-web/studies/{s}/series/{se}/instances/{i}/metadata", json_accept),
        (f"/dicom-web/studies/{s}/series/{se}/instances/{i}/frames/1", {"Accept": FRAME_ACCEPT}),
        (f"/dicom-web/studies/{s}/series/{se}/instances/{i}/rendered", {"Accept": "image/jpeg"}),
    ]


@pytest.mark.parametrize("role", ["annotator", "radiologist", "admin"])
def test_the_viewers_requests_are_served(world, intact_orthanc, role):  # type: ignore[no-untyped-def]
    for target, headers in _ohif_requests(world):
        answer = world.raw("GET", target, role=role, headers=headers)
        assert answer.status == 200, (target, answer.status, answer.body[:300])
        assert answer.body, target
        if "json" in headers["Accept"]:
            found = [d["0020000D"]["Value"][0] for d in answer.json()]  # type: ignore[union-attr]
            assert world.study_uid in found, target
    frame = world.raw("GET", _ohif_requests(world)[8][0], role=role, headers={"Accept": FRAME_ACCEPT})
    assert frame.headers["content-type"].startswith("multipart/related")
    assert len(frame.body) > 64 * 64 * 2


def test_whole_instances_are_for_admins_only(world, intact_orthanc):  # type: ignore[no-untyped-def]
    """A Part-10 instance carries every header, identities included; the viewer (WADO-RS
    metadata + frames) never needs one."""
    target = f"/dicom-web/studies/{world.study_uid}/series/{world.series_uid}/instances/{world.sop_uid}"
    accept = {"Accept": 'multipart/related; type="application/dicom"'}
    for role in ("annotator", "radiologist"):
        _assert_refused_by_proxy(world.raw("GET", target, role=role, headers=accept))
    admin = world.raw("GET", target, role="admin", headers=accept)
    assert admin.status == 200
    assert b"SYNTHETIC^" in admin.body


def test_bulk_data_uris_from_the_metadata_are_served(world, intact_orthanc):  # type: ignore[no-untyped-def]
    target = f"/dicom-web/studies/{world.study_uid}/series/{world.series_uid}/instances/{world.sop_uid}/metadata"
    meta = world.raw("GET", target, role="annotator")
    uris = re.findall(r'"BulkDataURI":\s*"([^"]+)"', meta.body.decode())
    assert uris, "the test instances carry pixel data, which Orthanc offers as bulk data"
    path = httpx.URL(uris[0]).path
    answer = world.raw("GET", path, role="annotator")
    assert answer.status == 200, (path, answer.body[:200])


def _stow_body(files) -> tuple[bytes, str]:  # type: ignore[no-untyped-def]
    boundary = "spinereviewattackboundary"
    parts = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + f.read_bytes() + b"\r\n"
        for f in files
    )
    return (
        parts + b"--" + boundary.encode() + b"--\r\n",
        f'multipart/related; type="application/dicom"; boundary={boundary}',
    )


def _new_study(tmp_path, n: int = 2, matrix: int = 64):  # type: ignore[no-untyped-def]
    return write_study(tmp_path, patient="SYN-STOW",
                       protocol=(SeriesSpec("SAG T1 FSE", tr=550, te=12, n=n, matrix=matrix),))  # fmt: skip


def _stored(orthanc: httpx.Client, study_uid: str) -> int:
    found = orthanc.post("/tools/lookup", content=study_uid).json()
    return len(orthanc.get(f"/studies/{found[0]['ID']}/instances").json()) if found else 0


def test_stow_by_token(world, intact_orthanc, tmp_path):  # type: ignore[no-untyped-def]
    study_uid, files = _new_study(tmp_path)
    body, content_type = _stow_body(files)
    answer = world.raw("POST", "/dicom-web/studies", role="radiologist", body=body,
                       headers={"Content-Type": content_type, "Accept": "application/dicom+json"})  # fmt: skip
    assert answer.status == 200, answer.body[:300]
    assert _stored(intact_orthanc, study_uid) == len(files)


def test_stow_by_browser_session_with_the_csrf_header_over_two_and_a_half_megabytes(world, intact_orthanc, tmp_path):  # type: ignore[no-untyped-def]
    """The browser path: a form sign-in, then STOW with the CSRF header. Larger than Django's
    2.5 MB in-memory form limit, which must not apply to a streamed STOW."""
    study_uid, files = _new_study(tmp_path, n=10, matrix=400)  # 10 × 320 KB
    body, content_type = _stow_body(files)
    assert 2_621_440 < len(body) < STOW_MAX_BYTES
    with httpx.Client(base_url=world.base, timeout=60) as browser:
        browser.get("/accounts/login/")
        signed_in = browser.post("/accounts/login/", data={
            "username": world.usernames["radiologist"], "password": PASSWORD,
            "csrfmiddlewaretoken": browser.cookies["csrftoken"]})  # fmt: skip
        assert signed_in.status_code == 302, signed_in.text[:300]
        headers = {"Content-Type": content_type, "Referer": world.base + "/"}
        without = browser.post("/dicom-web/studies", content=body, headers=headers)
        assert without.status_code == 403
        assert "CSRF" in without.json()["detail"]
        assert _stored(intact_orthanc, study_uid) == 0
        answer = browser.post("/dicom-web/studies", content=body,
                              headers={**headers, "X-CSRFToken": browser.cookies["csrftoken"]})  # fmt: skip
        assert answer.status_code == 200, answer.text[:300]
    assert _stored(intact_orthanc, study_uid) == len(files)


def test_stow_over_the_limit_is_a_json_413_and_stores_nothing(world, intact_orthanc, tmp_path):  # type: ignore[no-untyped-def]
    study_uid, files = _new_study(tmp_path, n=14, matrix=400)
    body, content_type = _stow_body(files)
    assert len(body) > STOW_MAX_BYTES
    answer = world.raw("POST", "/dicom-web/studies", role="radiologist", body=body,
                       headers={"Content-Type": content_type})  # fmt: skip
    assert answer.status == 413
    assert "detail" in answer.json()  # type: ignore[operator]
    assert _stored(intact_orthanc, study_uid) == 0


def test_stow_is_refused_to_annotators_and_researchers(world, intact_orthanc, tmp_path):  # type: ignore[no-untyped-def]
    study_uid, files = _new_study(tmp_path)
    body, content_type = _stow_body(files)
    for role in ("annotator", "researcher"):
        answer = world.raw("POST", "/dicom-web/studies", role=role, body=body, headers={"Content-Type": content_type})
        assert answer.status == 403, role
    assert _stored(intact_orthanc, study_uid) == 0


def test_stow_takes_only_multipart_related(world, intact_orthanc):  # type: ignore[no-untyped-def]
    answer = world.raw("POST", "/dicom-web/studies", role="radiologist", body=b"a=b",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert answer.status == 415
    assert "detail" in answer.json()  # type: ignore[operator]
