"""The same attack table through the deployment's viewer nginx (in front of the real app and
Orthanc): refused at nginx or at the app, never reaching Orthanc's REST API; the viewer's own
requests still served."""

from __future__ import annotations

import pytest

from tests.dicom_factory import SeriesSpec
from tests.security.test_proxy_attacks import (
    ATTACKS,
    FRAME_ACCEPT,
    ORTHANC_REST_MARKERS,
    _assert_whole,
    _fill,
    _ohif_requests,
)

pytestmark = [pytest.mark.services, pytest.mark.django_db]


@pytest.mark.parametrize(("method", "target", "role"), ATTACKS, ids=[f"{m} {t} as {r}" for m, t, r in ATTACKS])
def test_attack_through_the_viewer_nginx_is_refused(viewer_nginx, intact_orthanc, method, target, role):  # type: ignore[no-untyped-def]
    body = b'{"Level": "Study", "Query": {}}' if method in ("POST", "PUT", "PATCH") else None
    headers = {"Content-Type": "application/json"} if body else {}
    answer = viewer_nginx.raw(method, _fill(target, viewer_nginx), role=role, headers=headers, body=body)
    assert answer.status in {400, 403, 404, 405, 413, 414, 415}, (answer.status, answer.body[:300])
    for marker in ORTHANC_REST_MARKERS:
        assert marker not in answer.body
    _assert_whole(intact_orthanc, viewer_nginx)


def test_the_viewers_requests_pass_the_viewer_nginx(viewer_nginx, intact_orthanc):  # type: ignore[no-untyped-def]
    for target, headers in _ohif_requests(viewer_nginx):
        answer = viewer_nginx.raw("GET", target, role="radiologist", headers=headers)
        assert answer.status == 200, (target, answer.status, answer.body[:300])
    frame = viewer_nginx.raw("GET", _ohif_requests(viewer_nginx)[8][0], role="annotator",
                             headers={"Accept": FRAME_ACCEPT})  # fmt: skip
    assert frame.headers["content-type"].startswith("multipart/related")


def _parts(answer) -> list[tuple[bytes, bytes]]:  # type: ignore[no-untyped-def]
    """A multipart/related body's parts as (Content-Type, payload): the boundary is random per
    answer and Content-Location names the host Orthanc was asked through."""
    boundary = answer.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"').encode()
    out = []
    for part in answer.body.split(b"--" + boundary)[1:-1]:
        head, _, payload = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        types = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-type:")]
        out.append((types[0] if types else b"", payload.removesuffix(b"\r\n")))
    return out


def test_pixel_data_is_fetched_by_nginx_after_the_apps_checks(viewer_nginx, world, intact_orthanc):  # type: ignore[no-untyped-def]
    """Frames and rendered images through the viewer nginx: authorised by the app (X-Accel-Redirect)
    and fetched by nginx from Orthanc, the same bytes as the app's own relay and as Orthanc's,
    with the app's cache headers; refusals are the app's; the internal location is unreachable."""
    frame, headers = _ohif_requests(viewer_nginx)[8]
    via_nginx = viewer_nginx.raw("GET", frame, role="radiologist", headers=headers)
    assert via_nginx.status == 200, via_nginx.body[:300]
    assert "x-accel-redirect" not in via_nginx.headers
    assert "immutable" in via_nginx.headers["cache-control"]
    assert "private" in via_nginx.headers["cache-control"]
    assert "Cookie" in via_nginx.headers["vary"]
    relayed = world.raw("GET", frame, role="radiologist", headers=headers)  # gunicorn alone: the app relays
    direct = intact_orthanc.get(frame, headers={**headers, "Accept-Encoding": "identity"})
    assert "x-accel-redirect" not in relayed.headers
    direct_answer = type(relayed)(direct.status_code, {k.lower(): v for k, v in direct.headers.items()}, direct.content)
    assert _parts(via_nginx) == _parts(relayed) == _parts(direct_answer)
    rendered, jpeg = _ohif_requests(viewer_nginx)[9]
    image = viewer_nginx.raw("GET", rendered, role="annotator", headers=jpeg)
    assert image.status == 200
    assert image.headers["content-type"].startswith("image/jpeg")
    assert image.body

    assert viewer_nginx.raw("GET", frame, role=None, headers=headers).status == 401
    refused = viewer_nginx.raw("GET", frame, role="researcher", headers=headers)
    assert refused.status == 403
    assert b"role" in refused.body
    unknown = viewer_nginx.raw("GET", frame.replace(world.sop_uid, "1.2.3.4"), role="radiologist", headers=headers)
    assert unknown.status == 404
    inside = viewer_nginx.raw(
        "GET", "/_orthanc/dicom-web/studies", role="admin", headers={"Accept": "application/json"}
    )
    assert inside.status == 404
    assert world.study_uid.encode() not in inside.body


def test_frames_nginx_fetches_come_back_for_a_syntax_orthanc_cannot_hand_out_as_stored(
    viewer_nginx, intact_orthanc, tmp_path
):  # type: ignore[no-untyped-def]
    """Orthanc answers 500 for the frames of a big endian instance asked for as stored; nginx asks
    once more in explicit VR little endian, as the app's relay does."""
    import pydicom

    from ml.dicom.transcode import available, transcode
    from tests.dicom_factory import write_study

    if not available("explicit-big"):
        pytest.skip("no encoder for explicit-big here")
    study_uid, (plain, *_) = write_study(tmp_path / "s", protocol=(SeriesSpec("SAG T1", tr=500, te=10, n=1),))
    copy = transcode(plain, tmp_path / "big.dcm", "explicit-big")
    stored = intact_orthanc.post("/instances", content=copy.read_bytes())
    stored.raise_for_status()
    try:
        ds = pydicom.dcmread(copy, stop_before_pixels=True)
        path = f"/dicom-web/studies/{study_uid}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames/1"
        assert intact_orthanc.get(path, headers={"Accept": FRAME_ACCEPT}).status_code == 500  # Orthanc's own answer
        answer = viewer_nginx.raw("GET", path, role="radiologist", headers={"Accept": FRAME_ACCEPT})
        assert answer.status == 200, answer.body[:300]
        assert "transfer-syntax=1.2.840.10008.1.2.1" in answer.body.decode("latin-1")
        assert pydicom.dcmread(plain).PixelData in answer.body
    finally:
        intact_orthanc.delete(f"/studies/{stored.json()['ParentStudy']}")
