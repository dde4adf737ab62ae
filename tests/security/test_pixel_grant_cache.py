"""The viewer nginx's pixel-data grant cache (``ohif-extension/deploy/nginx.conf``, location
/_pixel_grant; docs/security.md "Pixel data behind the viewer's nginx"), against real nginx, the
app under gunicorn and Orthanc: the app's yes to "this credential may read the frames of this
series" is kept ``SPINEREVIEW_PIXEL_AUTH_TTL`` seconds and no longer, only for that credential,
never a refusal; with 0 every frame asks the app; a signed-out session is refused once the TTL is
over. The app's requests are counted in its access log.

Each test adds a cookie of its own (``probe=<random>``, which the app ignores) to every request so
that it starts with no entry of an earlier test: the cache key holds the whole Cookie header.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.conftest import Answer, World, app_behind_nginx
from tests.security.test_proxy_attacks import FRAME_ACCEPT
from tests.security.test_viewer_nginx import _parts

pytestmark = [pytest.mark.services]

TTL_S = 4


@pytest.fixture(scope="module")
def cached(world: World, tmp_path_factory) -> Iterator[tuple[World, Path]]:  # type: ignore[no-untyped-def]
    with app_behind_nginx(world, tmp_path_factory.mktemp("ttl"), {"SPINEREVIEW_PIXEL_AUTH_TTL": str(TTL_S)}) as app:
        yield app


@pytest.fixture(scope="module")
def uncached(world: World, tmp_path_factory) -> Iterator[tuple[World, Path]]:  # type: ignore[no-untyped-def]
    with app_behind_nginx(world, tmp_path_factory.mktemp("ttl0"), {"SPINEREVIEW_PIXEL_AUTH_TTL": "0"}) as app:
        yield app


@pytest.fixture(scope="module")
def frames(world: World, orthanc_http) -> list[str]:  # type: ignore[no-untyped-def]
    """The frame path of every instance of the world's series."""
    rows = orthanc_http.get(f"/dicom-web/studies/{world.study_uid}/series/{world.series_uid}/instances").json()
    prefix = f"/dicom-web/studies/{world.study_uid}/series/{world.series_uid}/instances"
    return [f"{prefix}/{row['00080018']['Value'][0]}/frames/1" for row in rows]


def _app_requests(log: Path) -> int:
    """DICOMweb frame requests the app has answered so far (its access log; read until it stops
    growing, gunicorn writes a line once the answer is sent)."""
    count = -1
    while True:
        now = log.read_text().count("/frames/") if log.exists() else 0
        if now == count:
            return now
        count = now
        time.sleep(0.3)


def _probe() -> str:
    return f"probe={uuid.uuid4().hex}"


def _frame(app: World, path: str, *, role: str | None, cookie: str) -> Answer:
    return app.raw("GET", path, role=role, headers={"Accept": FRAME_ACCEPT, "Cookie": cookie})


def test_a_grant_is_reused_within_the_ttl_and_asked_again_after(cached, frames, intact_orthanc):  # type: ignore[no-untyped-def]
    app, log = cached
    cookie, before = _probe(), _app_requests(log)
    granted_at = time.monotonic()
    answers = [_frame(app, path, role="radiologist", cookie=cookie) for path in frames]
    took = time.monotonic() - granted_at
    assert took < TTL_S - 1, f"the machine is too slow for this test ({took:.1f} s)"
    for path, answer in zip(frames, answers, strict=True):
        assert answer.status == 200, answer.body[:300]
        direct = intact_orthanc.get(path, headers={"Accept": FRAME_ACCEPT, "Accept-Encoding": "identity"})
        assert _parts(answer) == _parts(Answer(direct.status_code, dict(direct.headers), direct.content))
        assert "immutable" in answer.headers["cache-control"]
        assert "private" in answer.headers["cache-control"]
        assert "Cookie" in answer.headers["vary"]
        assert "x-accel-redirect" not in answer.headers
        assert "x-accel-expires" not in answer.headers
    assert _app_requests(log) - before == 1, "one grant for the series, then nginx alone"

    time.sleep(max(0.0, granted_at + TTL_S + 1 - time.monotonic()))
    assert _frame(app, frames[0], role="radiologist", cookie=cookie).status == 200
    assert _app_requests(log) - before == 2, "the grant expired: asked again"


def test_another_credential_is_never_answered_from_a_grant(cached, frames, intact_orthanc):  # type: ignore[no-untyped-def]
    app, log = cached
    cookie = _probe()
    assert _frame(app, frames[0], role="radiologist", cookie=cookie).status == 200
    asked = _app_requests(log)
    refused = _frame(app, frames[0], role="researcher", cookie=cookie)
    assert refused.status == 403
    assert b"role" in refused.body  # the app's own refusal
    assert _app_requests(log) > asked
    asked = _app_requests(log)
    anonymous = _frame(app, frames[0], role=None, cookie=cookie)
    assert anonymous.status == 401
    assert anonymous.json() == {"detail": "authentication required"}
    assert _app_requests(log) > asked
    asked = _app_requests(log)
    assert _frame(app, frames[1], role="annotator", cookie=cookie).status == 200
    assert _app_requests(log) == asked + 1, "the annotator's own grant"
    unknown_token = {"Accept": FRAME_ACCEPT, "Cookie": cookie, "Authorization": "Token " + "0" * 40}
    forged = app.raw("GET", frames[0], role=None, headers=unknown_token)
    assert forged.status == 403
    assert b"token" in forged.body.lower()


def test_a_refusal_is_never_kept(cached, frames, intact_orthanc):  # type: ignore[no-untyped-def]
    app, log = cached
    cookie = _probe()
    for role, status in (("researcher", 403), (None, 401)):
        for _ in range(2):
            asked = _app_requests(log)
            assert _frame(app, frames[0], role=role, cookie=cookie).status == status
            assert _app_requests(log) == asked + 2, "the grant refused, then the app's own answer"


def test_a_grant_answers_only_paths_into_its_series(cached, frames, world, intact_orthanc, tmp_path):  # type: ignore[no-untyped-def]
    """The kept yes is for the series the app checked: a path naming another study's instance under
    it is Orthanc's 404 (it checks the hierarchy), and a query is never answered from it."""
    from tests.dicom_factory import SeriesSpec, write_study
    from tests.security.conftest import upload

    app, log = cached
    cookie = _probe()
    assert _frame(app, frames[0], role="radiologist", cookie=cookie).status == 200
    other_study, files = write_study(tmp_path / "other", protocol=(SeriesSpec("SAG T1", tr=500, te=10, n=1),))
    upload(intact_orthanc, files)
    try:
        import pydicom

        other_sop = pydicom.dcmread(files[0], stop_before_pixels=True).SOPInstanceUID
        smuggled = frames[0].rsplit("/instances/", 1)[0] + f"/instances/{other_sop}/frames/1"
        assert _frame(app, smuggled, role="radiologist", cookie=cookie).status == 404
        asked = _app_requests(log)
        with_query = _frame(app, frames[0] + "?quality=90", role="radiologist", cookie=cookie)
        assert with_query.status == 400
        assert b"not allowed" in with_query.body
        assert _app_requests(log) == asked + 2
    finally:
        for study_id in intact_orthanc.post("/tools/lookup", content=other_study).json():
            intact_orthanc.delete(f"/studies/{study_id['ID']}")


def test_ttl_0_asks_the_app_for_every_frame(uncached, frames, intact_orthanc):  # type: ignore[no-untyped-def]
    app, log = uncached
    cookie, before = _probe(), _app_requests(log)
    for _ in range(2):
        for path in frames:
            answer = _frame(app, path, role="radiologist", cookie=cookie)
            assert answer.status == 200
            assert "immutable" in answer.headers["cache-control"]
    assert _app_requests(log) - before == 2 * len(frames)


def test_a_signed_out_session_is_refused_once_the_ttl_is_over(cached, frames, world, django_db_blocker):  # type: ignore[no-untyped-def]
    """Signing out ends the session at once for everything but frames of a series already opened,
    which nginx may still serve for the rest of the TTL; after it, the app's 401."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    app, _log = cached
    with django_db_blocker.unblock():
        client = Client()
        client.force_login(get_user_model().objects.get(username=world.usernames["radiologist"]))
    session = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    metadata = frames[0].rsplit("/instances/", 1)[0] + "/metadata"
    json_accept = {"Accept": "application/dicom+json", "Cookie": session}
    granted_at = time.monotonic()
    assert _frame(app, frames[0], role=None, cookie=session).status == 200
    assert app.raw("GET", metadata, role=None, headers=json_accept).status == 200

    csrf = secrets.token_hex(16)
    signed_out = app.raw("POST", "/accounts/logout/", role=None, body=b"",
                         headers={"Cookie": f"{session}; csrftoken={csrf}", "X-CSRFToken": csrf,
                                  "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert signed_out.status in (200, 302), signed_out.body[:300]
    assert app.raw("GET", metadata, role=None, headers=json_accept).status == 401, "metadata: at once"
    still = _frame(app, frames[1], role=None, cookie=session)
    if time.monotonic() - granted_at < TTL_S - 0.5:  # the documented window (when this machine was fast enough)
        assert still.status == 200

    time.sleep(max(0.0, granted_at + TTL_S + 1 - time.monotonic()))
    refused = _frame(app, frames[0], role=None, cookie=session)
    assert refused.status == 401
    assert refused.json() == {"detail": "authentication required"}
