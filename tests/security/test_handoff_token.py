"""The viewer hand-off token (app origin -> viewer origin sign-in), tried as an attacker would:
replay, a copy used from another browser, cross-site POSTs, a stale token, a browser already
signed in as someone else, simultaneous redemptions (memory cache and the real Redis), and the
demo server's request log (the token must never be in a request line)."""

from __future__ import annotations

import re
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.core import signing
from django.core.cache import cache
from django.test import Client

from reviewer.services import access
from tests.factories import StudyFactory, UserFactory
from tests.security.demo_server import demo_server

VIEWER = "viewer.localhost:8000"
APP = "localhost:8000"
UA = "Mozilla/5.0 (X11; Linux x86_64) SpineReviewTest/1.0"
OTHER_UA = "curl/8.5.0"


@pytest.fixture(autouse=True)
def _viewer_origin(settings):  # type: ignore[no-untyped-def]
    settings.VIEWER_ORIGIN = f"http://{VIEWER}"
    settings.ALLOWED_HOSTS = ["localhost", "viewer.localhost", "testserver"]
    cache.clear()
    yield
    cache.clear()


def _open(user, ua: str = UA) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Ask the app origin for a hand-off, as the worklist's Open button does: (next, token)."""
    client = Client(HTTP_HOST=APP, HTTP_USER_AGENT=ua)
    client.force_login(user)
    location = urlsplit(client.get(f"/viewer/open/{StudyFactory().study_uid}/")["Location"])
    return parse_qs(location.query)["next"][0], location.fragment


def _viewer(ua: str = UA, user=None) -> Client:  # type: ignore[no-untyped-def]
    client = Client(HTTP_HOST=VIEWER, HTTP_USER_AGENT=ua, enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    return client


def _csrf(html: bytes) -> str:
    return re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1).decode()  # type: ignore[union-attr]


def _redeem(client: Client, token: str, target: str):  # type: ignore[no-untyped-def]
    """What the hand-off page's script does: load the page, POST the fragment's token."""
    page = client.get("/viewer/handoff/", {"next": target})
    assert page.status_code == 200
    return client.post("/viewer/handoff/", {"token": token, "next": target, "csrfmiddlewaretoken": _csrf(page.content)})


def _signed_in_as(client: Client) -> str | None:
    return client.session.get("_auth_user_id")


pytestmark = pytest.mark.django_db


def test_the_token_travels_in_the_url_fragment_never_in_the_query():
    user = UserFactory()
    client = Client(HTTP_HOST=APP, HTTP_USER_AGENT=UA)
    client.force_login(user)
    study = StudyFactory()
    response = client.get(f"/viewer/open/{study.study_uid}/")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"http://{VIEWER}/viewer/handoff/"
    assert parse_qs(location.query) == {"next": [f"/spine-review?StudyInstanceUIDs={study.study_uid}"]}
    payload = signing.loads(location.fragment, salt=access.HANDOFF_SALT)
    assert payload["u"] == user.pk
    assert len(payload["n"]) >= 20  # a random nonce, consumed on first use
    assert "no-store" in response["Cache-Control"]


def test_the_hand_off_page_posts_the_fragment_and_a_token_in_the_query_signs_nobody_in():
    user = UserFactory()
    target, token = _open(user)
    client = _viewer()
    page = client.get("/viewer/handoff/", {"next": target, "token": token})  # the old, logged form
    assert page.status_code == 200
    assert b'action="/viewer/handoff/"' in page.content
    assert b"location.hash" in page.content
    assert b"replaceState" in page.content
    assert "no-store" in page["Cache-Control"]
    assert token.encode() not in page.content
    assert client.get("/viewer/auth/").status_code == 401  # nobody signed in by a query token
    assert _redeem(client, token, target)["Location"] == target  # and it was not spent either
    assert _signed_in_as(client) == str(user.pk)


def test_a_token_signs_in_once_and_a_replay_is_refused():
    user = UserFactory()
    target, token = _open(user)
    first = _viewer()
    response = _redeem(first, token, target)
    assert response.status_code == 302
    assert response["Location"] == target
    assert first.get("/viewer/auth/").status_code == 204

    thief = _viewer()  # the same URL within the minute, even with the same User-Agent
    replay = _redeem(thief, token, target)
    assert replay.status_code == 302
    assert replay["Location"].startswith("/accounts/login/")
    assert thief.get("/viewer/auth/").status_code == 401
    assert _signed_in_as(thief) is None


def test_the_hand_off_post_needs_this_origins_csrf_token_and_a_refused_post_spends_nothing():
    user = UserFactory()
    target, token = _open(user)
    forged = _viewer().post("/viewer/handoff/", {"token": token, "next": target})  # e.g. from another site
    assert forged.status_code == 403
    assert _redeem(_viewer(), token, target)["Location"] == target


def test_a_token_issued_to_another_browser_is_refused_without_being_spent():
    user = UserFactory()
    target, token = _open(user, ua=UA)
    other = _viewer(ua=OTHER_UA)
    response = _redeem(other, token, target)
    assert response["Location"].startswith("/accounts/login/")
    assert _signed_in_as(other) is None
    rightful = _viewer(ua=UA)
    assert _redeem(rightful, token, target)["Location"] == target
    assert _signed_in_as(rightful) == str(user.pk)


def test_an_expired_token_is_refused(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(access, "HANDOFF_MAX_AGE_S", 1)
    target, token = _open(UserFactory())
    time.sleep(2.2)  # signing timestamps have a resolution of one second
    client = _viewer()
    assert _redeem(client, token, target)["Location"].startswith("/accounts/login/")
    assert _signed_in_as(client) is None


def test_a_browser_signed_in_as_someone_else_is_asked_before_its_session_is_switched():
    alice, bob = UserFactory(), UserFactory()
    client = _viewer(user=bob)
    target, token = _open(alice)
    asked = _redeem(client, token, target)
    assert asked.status_code == 409
    assert alice.username.encode() in asked.content
    assert bob.username.encode() in asked.content
    assert _signed_in_as(client) == str(bob.pk)  # nothing switched yet

    stay = client.post("/viewer/handoff/confirm/", {"choice": "stay", "csrfmiddlewaretoken": _csrf(asked.content)})
    assert stay.status_code == 302
    assert stay["Location"] == target
    assert _signed_in_as(client) == str(bob.pk)
    again = client.post("/viewer/handoff/confirm/", {"choice": "switch", "csrfmiddlewaretoken": _csrf(asked.content)})
    assert again["Location"].startswith("/accounts/login/")  # the question was answered once
    assert _signed_in_as(client) == str(bob.pk)

    target, token = _open(alice)
    asked = _redeem(client, token, target)
    assert asked.status_code == 409
    switch = client.post("/viewer/handoff/confirm/", {"choice": "switch", "csrfmiddlewaretoken": _csrf(asked.content)})
    assert switch.status_code == 302
    assert switch["Location"] == target
    assert _signed_in_as(client) == str(alice.pk)


def test_the_same_user_is_not_asked():
    user = UserFactory()
    client = _viewer(user=user)
    target, token = _open(user)
    assert _redeem(client, token, target)["Location"] == target
    assert _signed_in_as(client) == str(user.pk)


def _redis_cache(settings):  # type: ignore[no-untyped-def]
    from tests.conftest import _need

    parts = urlsplit(_need("CELERY_BROKER_URL"))
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": parts._replace(path="/3").geturl(),
                                   "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}  # fmt: skip


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("backend", ["memory", pytest.param("redis", marks=pytest.mark.services)])
def test_simultaneous_redemptions_of_one_token_sign_in_exactly_once(settings, backend):  # type: ignore[no-untyped-def]
    from django.db import connection

    if backend == "redis":
        _redis_cache(settings)
    user = UserFactory()
    token = access.issue_handoff_token(user=user, user_agent=UA)
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def redeem() -> None:
        start.wait()
        try:
            outcomes.append(f"ok:{access.redeem_handoff_token(token=token, user_agent=UA).user.pk}")
        except access.HandoffRefused as exc:
            outcomes.append(str(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == sorted([f"ok:{user.pk}"] + ["the hand-off link has already been used"] * 7)


@pytest.mark.django_db(transaction=True)
def test_the_demo_servers_request_log_never_holds_the_token(tmp_path):  # type: ignore[no-untyped-def]
    setup = (
        "from django.contrib.auth import get_user_model\n"
        "from reviewer.models import Study\n"
        "get_user_model().objects.create_user('reader', password='handoff-test-pw')\n"
        "Study.objects.create(study_uid='1.2.826.0.1.99.1', orthanc_id='demo-study-1')\n"
    )
    with demo_server(tmp_path / "var", setup=setup) as server:
        app_headers = {"User-Agent": UA, "Host": server.app_host}
        viewer_headers = {"User-Agent": UA, "Host": server.viewer_host}
        with (
            httpx.Client(base_url=server.url, headers=app_headers, timeout=30) as app,
            httpx.Client(base_url=server.url, headers=viewer_headers, timeout=30) as viewer,
        ):
            login = app.get("/accounts/login/")
            signed_in = app.post("/accounts/login/", data={"username": "reader", "password": "handoff-test-pw",
                                                           "csrfmiddlewaretoken": _csrf(login.content)})  # fmt: skip
            assert signed_in.status_code == 302, signed_in.text
            location = urlsplit(app.get("/viewer/open/1.2.826.0.1.99.1/").headers["location"])
            token = location.fragment
            assert token
            page = viewer.get(f"{location.path}?{location.query}")  # a browser never sends the fragment
            assert page.status_code == 200
            target = parse_qs(location.query)["next"][0]
            done = viewer.post("/viewer/handoff/", data={"token": token, "next": target,
                                                        "csrfmiddlewaretoken": _csrf(page.content)})  # fmt: skip
            assert done.status_code == 302
            assert done.headers["location"] == target
            assert viewer.get("/viewer/auth/").status_code == 204
        time.sleep(0.5)
        log = server.log_text()
    assert "GET /viewer/open/1.2.826.0.1.99.1/" in log, log
    assert "GET /viewer/handoff/?next=" in log, log
    assert "POST /viewer/handoff/" in log
    assert token not in log
    assert token.split(":")[-1] not in log  # not even its signature
