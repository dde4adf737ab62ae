"""OHIF's thumbnails are drawn by Orthanc (``thumbnailRendering: rendered``): the app-config asks
for them, and the proxy answers the request OHIF 3.13.2 makes for one, per user, as for any
rendered image. Real Orthanc, real proxy."""

from __future__ import annotations

import json
import re

import pydicom
import pytest
from django.test import Client

from reviewer.integrations.sr import write_reader_sr
from reviewer.models import Assignment
from tests.dicom_factory import write_study
from tests.factories import StudyFactory, UserFactory

pytestmark = [pytest.mark.services, pytest.mark.django_db]
VIEWER = "viewer.localhost:8000"
# what OHIF 3.13.2 sends for a thumbnail with thumbnailRequestStrategy "fetch"
THUMBNAIL_QUERY = "?viewport=256,256"


def _on_viewer(user=None) -> Client:  # type: ignore[no-untyped-def]
    client = Client(HTTP_HOST=VIEWER)
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def viewer_origin(settings):  # type: ignore[no-untyped-def]
    settings.VIEWER_ORIGIN = f"http://{VIEWER}"
    settings.ALLOWED_HOSTS = ["viewer.localhost", "testserver"]


def test_the_app_config_asks_orthanc_to_draw_the_thumbnails(viewer_origin):  # type: ignore[no-untyped-def]
    body = _on_viewer().get("/app-config.js").content.decode()
    config = json.loads(re.search(r"window\.config = (\{.*\});", body, re.S).group(1))  # type: ignore[union-attr]
    source = config["dataSources"][0]["configuration"]
    assert source["thumbnailRendering"] == "rendered"
    assert source["thumbnailRequestStrategy"] == "fetch"
    assert source["imageRendering"] == "wadors", "the images themselves are still drawn by the browser"


def test_a_reader_gets_a_thumbnail_and_a_blinded_one_none_of_a_hidden_sr(  # type: ignore[no-untyped-def]
    viewer_origin, tmp_path, empty_orthanc, orthanc_settings
):
    study_uid, files = write_study(tmp_path / "dcm")
    for f in files:
        assert empty_orthanc.post("/instances", content=f.read_bytes()).status_code == 200
    image = pydicom.dcmread(files[1], stop_before_pixels=True)
    study = StudyFactory(study_uid=study_uid, blinded=True)
    alice, bob = UserFactory(role="radiologist"), UserFactory(role="annotator")
    for reader in (alice, bob):
        Assignment.objects.create(study=study, reader=reader)
    box = {"condition": "disc_herniation", "sop_uid": image.SOPInstanceUID, "xyxy": [10, 12, 30, 40]}
    sr = write_reader_sr(study=study, parent=None, author=alice, boxes=[box])

    series = f"/dicom-web/studies/{study_uid}/series"
    thumbnail = f"{series}/{image.SeriesInstanceUID}/instances/{image.SOPInstanceUID}/rendered{THUMBNAIL_QUERY}"
    response = _on_viewer(bob).get(thumbnail, HTTP_ACCEPT="image/jpeg")
    body = b"".join(response.streaming_content)
    assert response.status_code == 200, body[:200]
    assert response["Content-Type"] == "image/jpeg"
    assert body[:2] == b"\xff\xd8", "a JPEG"
    assert "private" in response["Cache-Control"]
    hidden = f"{series}/{sr.series_instance_uid}/instances/{sr.sop_instance_uid}/rendered{THUMBNAIL_QUERY}"
    assert _on_viewer(bob).get(hidden, HTTP_ACCEPT="image/jpeg").status_code == 404
    assert _on_viewer().get(thumbnail, HTTP_ACCEPT="image/jpeg").status_code == 401
    assert _on_viewer(UserFactory(role="researcher")).get(thumbnail, HTTP_ACCEPT="image/jpeg").status_code == 403
