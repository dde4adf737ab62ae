"""The same attack table through the deployment's viewer nginx (in front of the real app and
Orthanc): refused at nginx or at the app, never reaching Orthanc's REST API; the viewer's own
requests still served."""

from __future__ import annotations

import pytest

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
