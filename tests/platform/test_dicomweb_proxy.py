"""The same-origin DICOMweb proxy against a real Orthanc."""

from __future__ import annotations

import json

import pytest
from django.http import StreamingHttpResponse
from django.test import Client

from reviewer.integrations.ingest import import_paths
from tests.dicom_factory import write_study

pytestmark = [pytest.mark.services, pytest.mark.django_db]


@pytest.fixture
def stored_study(tmp_path, empty_orthanc, orthanc_settings):  # type: ignore[no-untyped-def]
    from reviewer.integrations.orthanc import orthanc

    study_uid, files = write_study(tmp_path / "s")
    summary = import_paths([tmp_path / "s"], client=orthanc())
    assert summary.counts["stored"] == len(files)
    return study_uid


def login(role_user, role: str) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(role_user(role))
    return client


IDENTITIES = {
    "00100010": "PatientName",
    "00100020": "PatientID",
    "00100030": "PatientBirthDate",
    "00080050": "AccessionNumber",
    "00200010": "StudyID",
    "00080090": "ReferringPhysicianName",
}


@pytest.mark.parametrize("role", ["admin", "radiologist", "annotator"])
def test_qido_through_the_proxy_matches_orthanc_less_identities_for_non_admins(  # type: ignore[no-untyped-def]
    stored_study, role_user, empty_orthanc, role
):
    client = login(role_user, role)
    query = {"StudyInstanceUID": stored_study, "includefield": "all"}
    response = client.get("/dicom-web/studies", query, HTTP_ACCEPT="application/dicom+json")
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse), "the proxy must stream, not buffer"
    proxied = json.loads(b"".join(response.streaming_content))
    direct = empty_orthanc.get("/dicom-web/studies", params=query).json()
    retrieve_url = "00081190"  # differs by design: built from the request's Host
    assert proxied[0].pop(retrieve_url)["Value"][0].startswith("http://testserver/dicom-web/studies/")
    direct[0].pop(retrieve_url)
    assert set(IDENTITIES) <= set(direct[0]), "the test study carries identities"
    if role == "admin":
        assert proxied == direct
    else:
        assert proxied == [{k: v for k, v in direct[0].items() if k not in IDENTITIES}]


@pytest.mark.parametrize("level", ["study", "series", "instance"])
def test_metadata_carries_identities_for_admins_only(stored_study, role_user, empty_orthanc, level):  # type: ignore[no-untyped-def]
    series = empty_orthanc.get(f"/dicom-web/studies/{stored_study}/series").json()[0]["0020000E"]["Value"][0]
    sop = empty_orthanc.get(f"/dicom-web/studies/{stored_study}/series/{series}/instances").json()[0]
    sop_uid = sop["00080018"]["Value"][0]
    url = {
        "study": f"/dicom-web/studies/{stored_study}/metadata",
        "series": f"/dicom-web/studies/{stored_study}/series/{series}/metadata",
        "instance": f"/dicom-web/studies/{stored_study}/series/{series}/instances/{sop_uid}/metadata",
    }[level]
    seen = {}
    for role in ("admin", "radiologist", "annotator"):
        response = login(role_user, role).get(url, HTTP_ACCEPT="application/dicom+json")
        assert response.status_code == 200
        text = b"".join(response.streaming_content)
        seen[role] = json.loads(text)
        assert (b"SYNTHETIC^" in text) is (role == "admin"), role
    for instance in seen["admin"]:
        assert set(IDENTITIES) <= set(instance)
    for role in ("radiologist", "annotator"):
        assert len(seen[role]) == len(seen["admin"])
        for instance in seen[role]:
            assert not set(IDENTITIES) & set(instance), role
            assert instance["00100040"] == {"vr": "CS", "Value": ["O"]}, "patient sex stays (reading needs it)"
            assert "7FE00010" in instance, "pixel data's BulkDataURI stays"


@pytest.mark.parametrize("key", ["PatientName", "00100020", "PatientBirthDate", "AccessionNumber"])
def test_searching_on_identities_is_for_admins_only(stored_study, role_user, key):  # type: ignore[no-untyped-def]
    """Otherwise a search would be an oracle: does a study of 'DOE^JOHN' exist?"""
    value = {"PatientName": "SYNTHETIC^SYN-0001", "00100020": "SYN-0001", "PatientBirthDate": "19700101",
             "AccessionNumber": "ACCSYN-0001"}[key]  # fmt: skip
    for role in ("radiologist", "annotator"):
        assert login(role_user, role).get("/dicom-web/studies", {key: value}).status_code == 403
    admin = login(role_user, "admin").get("/dicom-web/studies", {key: value})
    assert admin.status_code == 200
    assert len(json.loads(b"".join(admin.streaming_content))) == 1


def test_non_admins_get_dicom_json_only(stored_study, role_user):  # type: ignore[no-untyped-def]
    """The identity filter rewrites DICOM JSON; XML (which it does not read) is not served."""
    url = f"/dicom-web/studies/{stored_study}/metadata"
    assert login(role_user, "annotator").get(url, HTTP_ACCEPT="application/dicom+xml").status_code == 406


def test_comma_separated_includefield_is_split_for_orthanc(stored_study, role_user):  # type: ignore[no-untyped-def]
    client = login(role_user, "radiologist")
    url = f"/dicom-web/studies/{stored_study}/series"
    plain = client.get(url)
    with_fields = client.get(url, {"includefield": "00080021,0008103E"})
    plain_json = json.loads(b"".join(plain.streaming_content))
    rich_json = json.loads(b"".join(with_fields.streaming_content))
    # SeriesDate (00080021) is not a default QIDO series attribute: present only if the split worked
    assert "00080021" not in plain_json[0]
    assert "00080021" in rich_json[0]


def test_bulkdata_uris_point_back_at_the_proxy_host(stored_study, role_user):  # type: ignore[no-untyped-def]
    client = login(role_user, "radiologist")
    response = client.get(f"/dicom-web/studies/{stored_study}/metadata", HTTP_HOST="viewer.example.org:8443")
    text = b"".join(response.streaming_content).decode()
    assert "viewer.example.org:8443/dicom-web/" in text


def test_frames_stream_through_the_proxy(stored_study, role_user, empty_orthanc):  # type: ignore[no-untyped-def]
    series = empty_orthanc.get("/dicom-web/studies/" + stored_study + "/series").json()
    series_uid = series[0]["0020000E"]["Value"][0]
    instances = empty_orthanc.get(f"/dicom-web/studies/{stored_study}/series/{series_uid}/instances").json()
    sop = instances[0]["00080018"]["Value"][0]
    client = login(role_user, "annotator")
    path = f"/dicom-web/studies/{stored_study}/series/{series_uid}/instances/{sop}/frames/1"
    response = client.get(path, HTTP_ACCEPT='multipart/related; type="application/octet-stream"')
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert len(body) > 64 * 64 * 2, "the 64×64×16-bit frame must be in the multipart body"
    assert response["Content-Type"].startswith("multipart/related")


# what the viewer's image loader asks for: every frame as stored
AS_STORED = "multipart/related; type=application/octet-stream; transfer-syntax=*"


@pytest.mark.parametrize(
    ("syntax", "served"),
    [
        ("explicit-big", "1.2.840.10008.1.2.1"),  # Orthanc cannot hand these out as stored (500):
        ("deflated", "1.2.840.10008.1.2.1"),  # the proxy asks again for explicit little endian
        ("j2k-lossless", "1.2.840.10008.1.2.4.90"),  # everything else stays as stored
    ],
)
def test_frames_asked_for_as_stored_come_back_for_every_syntax(tmp_path, empty_orthanc, orthanc_settings, role_user,
                                                               syntax, served):  # type: ignore[no-untyped-def]  # fmt: skip
    import pydicom

    from ml.dicom.transcode import available, transcode
    from tests.dicom_factory import upload_study

    if not available(syntax):
        pytest.skip(f"no encoder for {syntax} here")
    study_uid, (plain, *_) = write_study(tmp_path / "s")
    copy = transcode(plain, tmp_path / f"{syntax}.dcm", syntax)
    upload_study(empty_orthanc, [copy])
    ds = pydicom.dcmread(copy, stop_before_pixels=True)
    path = f"/dicom-web/studies/{study_uid}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames/1"
    direct = empty_orthanc.get(path, headers={"Accept": AS_STORED}).status_code
    assert direct == (200 if served != "1.2.840.10008.1.2.1" else 500)  # Orthanc's own answer

    response = login(role_user, "radiologist").get(path, HTTP_ACCEPT=AS_STORED)
    body = b"".join(response.streaming_content)
    assert response.status_code == 200, body[:300]
    assert f"transfer-syntax={served}" in response["Content-Type"]
    if served == "1.2.840.10008.1.2.1":  # transcoded losslessly: the original pixels, little endian
        assert pydicom.dcmread(plain).PixelData in body


@pytest.mark.parametrize(("role", "status"), [(None, 401), ("researcher", 403), ("annotator", 200), ("admin", 200)])
def test_proxy_reads_by_role(stored_study, role_user, role, status):  # type: ignore[no-untyped-def]
    client = login(role_user, role) if role else Client()
    assert client.get("/dicom-web/studies").status_code == status


def test_stow_rs_through_the_proxy_needs_csrf_for_sessions_and_works_with_it_or_a_token(
    tmp_path, empty_orthanc, orthanc_settings, role_user
):  # type: ignore[no-untyped-def]
    from rest_framework.authtoken.models import Token

    study_uid, files = write_study(tmp_path / "stow")
    boundary = "spinereviewboundary"
    parts = b"".join(
        b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + f.read_bytes() + b"\r\n"
        for f in files
    )
    body = parts + b"--" + boundary.encode() + b"--\r\n"
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'

    session = Client(enforce_csrf_checks=True)
    session.force_login(role_user("radiologist"))
    refused = session.post("/dicom-web/studies", data=body, content_type=content_type)
    assert refused.status_code == 403, "a session POST without CSRF token must be refused"
    assert empty_orthanc.get("/studies").json() == []

    annotator = Client()
    annotator.force_login(role_user("annotator"))
    assert annotator.post("/dicom-web/studies", data=body, content_type=content_type).status_code == 403

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(role_user("radiologist"))
    browser.get("/accounts/login/")  # sets the CSRF cookie, as any page does
    response = browser.post(
        "/dicom-web/studies", data=body, content_type=content_type, HTTP_X_CSRFTOKEN=browser.cookies["csrftoken"].value
    )
    assert response.status_code == 200, b"".join(response.streaming_content)
    assert len(empty_orthanc.get("/studies").json()) == 1
    for study_id in empty_orthanc.get("/studies").json():
        empty_orthanc.delete(f"/studies/{study_id}")

    token = Token.objects.create(user=role_user("radiologist"))
    scripted = Client()
    response = scripted.post(
        "/dicom-web/studies", data=body, content_type=content_type, HTTP_AUTHORIZATION=f"Token {token.key}"
    )
    assert response.status_code == 200, b"".join(response.streaming_content)
    found = empty_orthanc.post("/tools/lookup", content=study_uid).json()
    assert len(found) == 1
    assert len(empty_orthanc.get(f"/studies/{found[0]['ID']}/instances").json()) == len(files)


def test_dead_orthanc_gives_a_clear_502(role_user, settings):  # type: ignore[no-untyped-def]
    from reviewer.integrations.orthanc import orthanc

    settings.ORTHANC_URL = "http://127.0.0.1:9"
    orthanc.cache_clear()
    try:
        response = login(role_user, "radiologist").get("/dicom-web/studies")
    finally:
        orthanc.cache_clear()
    assert response.status_code == 502
    assert "unreachable" in response.json()["detail"]
