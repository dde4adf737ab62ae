"""Cache headers of the DICOMweb proxy against a real Orthanc: what a stored instance is (its
frames, rendered images, metadata) may stay in the reader's own browser for a while
(``private, max-age``, varying on the credentials), never in a shared cache; series- and
study-level answers, which change as instances arrive, and refusals are not cached."""

from __future__ import annotations

import pytest
from django.test import Client

from reviewer.integrations.dicomweb_proxy import IMMUTABLE_MAX_AGE_S
from reviewer.integrations.ingest import import_paths
from tests.dicom_factory import write_study

pytestmark = [pytest.mark.services, pytest.mark.django_db]


@pytest.fixture
def instance(tmp_path, empty_orthanc, orthanc_settings):  # type: ignore[no-untyped-def]
    from reviewer.integrations.orthanc import orthanc

    study_uid, _ = write_study(tmp_path / "s")
    import_paths([tmp_path / "s"], client=orthanc())
    series_uid = empty_orthanc.get(f"/dicom-web/studies/{study_uid}/series").json()[0]["0020000E"]["Value"][0]
    rows = empty_orthanc.get(f"/dicom-web/studies/{study_uid}/series/{series_uid}/instances").json()
    return study_uid, series_uid, rows[0]["00080018"]["Value"][0]


def _client(role_user, role: str) -> Client:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(role_user(role))
    return client


def _cached_privately(response) -> bool:  # type: ignore[no-untyped-def]
    control = {part.strip() for part in response.get("Cache-Control", "").split(",")}
    vary = {part.strip().lower() for part in response.get("Vary", "").split(",")}
    return (
        {"private", f"max-age={IMMUTABLE_MAX_AGE_S}"} <= control
        and "public" not in control
        and {"cookie", "authorization"} <= vary
    )


@pytest.mark.parametrize("role", ["radiologist", "admin"])
def test_instance_data_is_cached_privately_and_per_user(instance, role_user, role):  # type: ignore[no-untyped-def]
    study, series, sop = instance
    client = _client(role_user, role)
    base = f"/dicom-web/studies/{study}/series/{series}/instances/{sop}"
    frame = client.get(f"{base}/frames/1", HTTP_ACCEPT='multipart/related; type="application/octet-stream"')
    assert frame.status_code == 200
    assert len(b"".join(frame.streaming_content)) > 64 * 64 * 2  # still streamed whole
    assert _cached_privately(frame), dict(frame.items())
    metadata = client.get(f"{base}/metadata", HTTP_ACCEPT="application/dicom+json")
    assert metadata.status_code == 200
    assert _cached_privately(metadata), dict(metadata.items())  # identities stripped or not: private
    rendered = client.get(f"{base}/rendered", HTTP_ACCEPT="image/png")
    assert rendered.status_code == 200
    assert _cached_privately(rendered), dict(rendered.items())


def test_series_answers_searches_and_refusals_are_not_cached(instance, role_user):  # type: ignore[no-untyped-def]
    study, series, sop = instance
    client = _client(role_user, "radiologist")
    for path in (f"/dicom-web/studies/{study}/series/{series}/metadata", f"/dicom-web/studies/{study}/series",
                 f"/dicom-web/studies/{study}/metadata"):  # fmt: skip
        response = client.get(path, HTTP_ACCEPT="application/dicom+json")
        assert response.status_code == 200
        assert "max-age" not in response.get("Cache-Control", ""), path
    missing = client.get(f"/dicom-web/studies/{study}/series/{series}/instances/1.2.3.4/frames/1")
    assert missing.status_code == 404
    assert "max-age" not in missing.get("Cache-Control", "")
    refused = _client(role_user, "researcher").get(
        f"/dicom-web/studies/{study}/series/{series}/instances/{sop}/frames/1"
    )
    assert refused.status_code == 403
    assert "max-age" not in refused.get("Cache-Control", "")
