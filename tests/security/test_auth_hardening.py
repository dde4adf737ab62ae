"""Sign-in and deployment hardening, tried as an attacker would: password guessing against the
token endpoint and the sign-in page (lockout per username, throttle per address), API token
lifetime, rotation and sign-out, the health endpoint's details, ``check --deploy`` under the
production settings, and the demo server (DEBUG off, loopback host names only, static files)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from datetime import timedelta

import httpx
import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.conftest import ROOT
from tests.factories import UserFactory
from tests.security.demo_server import demo_server

pytestmark = pytest.mark.django_db
PASSWORD = "right-horse-battery"


@pytest.fixture(autouse=True)
def _fresh_counters():  # type: ignore[no-untyped-def]
    """Failure counters and throttles live in the cache: each test starts and leaves it empty."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def victim():  # type: ignore[no-untyped-def]
    user = UserFactory(role="radiologist")
    user.set_password(PASSWORD)
    user.save()
    return user


def _token(client: APIClient, username: str, password: str, address: str = "10.0.0.1"):  # type: ignore[no-untyped-def]
    return client.post("/api/auth/token/", {"username": username, "password": password}, REMOTE_ADDR=address)


# --- password guessing -------------------------------------------------------------------------


def test_thirty_wrong_passwords_then_the_right_one_is_refused_with_429(victim):  # type: ignore[no-untyped-def]
    client = APIClient()
    codes = [_token(client, victim.username, f"guess-{i}").status_code for i in range(30)]
    assert set(codes) <= {400, 429}
    assert codes[0] == 400
    right = _token(client, victim.username, PASSWORD)
    assert right.status_code == 429, right.content
    assert "token" not in right.json()
    assert int(right["Retry-After"]) > 0


def test_the_lockout_is_per_username_and_holds_from_any_address_and_on_the_sign_in_page(victim):  # type: ignore[no-untyped-def]
    client = APIClient()
    for i in range(30):  # each guess from another address: the per-address throttle never fires
        assert _token(client, victim.username, f"guess-{i}", address=f"10.1.{i}.1").status_code in (400, 429)
    # the right password from a fresh address: refused (locked out, not throttled)
    assert _token(client, victim.username, PASSWORD, address="10.9.9.9").status_code == 429
    page = Client()
    response = page.post("/accounts/login/", {"username": victim.username, "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many failed sign-ins" in response.content
    assert "_auth_user_id" not in page.session
    # someone else is not affected
    other = UserFactory(role="radiologist")
    other.set_password(PASSWORD)
    other.save()
    assert _token(client, other.username, PASSWORD, address="10.9.9.8").status_code == 200


def test_the_admin_sign_in_is_locked_out_too(db):  # type: ignore[no-untyped-def]
    boss = UserFactory(role="admin")
    boss.set_password(PASSWORD)
    boss.save()
    assert Client().post("/admin/login/", {"username": boss.username, "password": PASSWORD}).status_code == 302
    admin = Client()
    for i in range(30):
        admin.post("/admin/login/", {"username": boss.username, "password": f"guess-{i}"})
    response = admin.post("/admin/login/", {"username": boss.username, "password": PASSWORD})
    assert response.status_code == 200  # the form again, not the redirect into the admin
    assert "_auth_user_id" not in admin.session


def test_the_sign_in_page_locks_out_too_and_the_lockout_ends_after_its_window(victim, settings):  # type: ignore[no-untyped-def]
    settings.SPINEREVIEW_LOGIN_LOCKOUT_S = 2
    page = Client()
    for i in range(settings.SPINEREVIEW_LOGIN_FAILURE_LIMIT):
        assert page.post("/accounts/login/", {"username": victim.username, "password": f"x{i}"}).status_code == 200
    assert page.post("/accounts/login/", {"username": victim.username, "password": PASSWORD}).status_code == 429
    time.sleep(2.5)
    response = page.post("/accounts/login/", {"username": victim.username, "password": PASSWORD})
    assert response.status_code == 302
    assert page.session["_auth_user_id"] == str(victim.pk)


def test_the_token_endpoint_is_throttled_per_address_and_a_forged_forwarded_for_does_not_escape(db):  # type: ignore[no-untyped-def]
    client = APIClient()
    codes = [
        client.post(
            "/api/auth/token/",
            {"username": f"nobody{i}", "password": "x"},
            REMOTE_ADDR="10.2.0.1",
            HTTP_X_FORWARDED_FOR=f"192.0.2.{i}",
        ).status_code
        for i in range(25)
    ]
    assert codes[:20] == [400] * 20
    assert codes[20:] == [429] * 5


# --- API tokens ------------------------------------------------------------------------------------


def _token_refused(client: APIClient) -> bool:
    response = client.get("/api/studies/")
    return response.status_code == 403 and response.json()["detail"] == "Invalid token."


def test_tokens_expire_after_their_lifetime(victim, settings):  # type: ignore[no-untyped-def]
    body = _token(APIClient(), victim.username, PASSWORD).json()
    assert "expires_at" in body
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {body['token']}")
    assert client.get("/api/studies/").status_code == 200
    Token.objects.filter(key=body["token"]).update(
        created=timezone.now() - timedelta(seconds=settings.SPINEREVIEW_API_TOKEN_TTL_S + 1)
    )
    expired = client.get("/api/studies/")
    assert expired.status_code == 403  # DRF's answer when session authentication comes first
    assert "expired" in expired.json()["detail"]
    assert not Token.objects.filter(key=body["token"]).exists()


@pytest.mark.parametrize("url", ["/api/studies/", "/dicom-web/studies"])
def test_an_expired_token_opens_neither_the_api_nor_the_dicomweb_proxy(victim, settings, url):  # type: ignore[no-untyped-def]
    key = _token(APIClient(), victim.username, PASSWORD).json()["token"]
    Token.objects.filter(key=key).update(
        created=timezone.now() - timedelta(seconds=settings.SPINEREVIEW_API_TOKEN_TTL_S + 1)
    )
    response = Client().get(url, HTTP_AUTHORIZATION=f"Token {key}")
    assert response.status_code == 403  # refused before anything is forwarded to Orthanc
    assert "expired" in response.json()["detail"]


def test_a_new_sign_in_rotates_the_token(victim):  # type: ignore[no-untyped-def]
    first = _token(APIClient(), victim.username, PASSWORD).json()["token"]
    second = _token(APIClient(), victim.username, PASSWORD).json()["token"]
    assert first != second
    old = APIClient()
    old.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert _token_refused(old)
    new = APIClient()
    new.credentials(HTTP_AUTHORIZATION=f"Token {second}")
    assert new.get("/api/studies/").status_code == 200


def test_signing_out_deletes_the_token_by_api_and_on_the_web(victim):  # type: ignore[no-untyped-def]
    key = _token(APIClient(), victim.username, PASSWORD).json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.delete("/api/auth/token/").status_code == 204
    assert _token_refused(client)

    key = _token(APIClient(), victim.username, PASSWORD).json()["token"]
    web = Client()
    assert web.post("/accounts/login/", {"username": victim.username, "password": PASSWORD}).status_code == 302
    web.post("/accounts/logout/")
    assert "_auth_user_id" not in web.session
    script = APIClient()
    script.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert _token_refused(script)


# --- health ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [None, "radiologist", "researcher"])
def test_health_shows_no_internals_to_anyone_but_admins(settings, role):  # type: ignore[no-untyped-def]
    from reviewer.integrations.orthanc import orthanc

    settings.ORTHANC_URL = "http://127.0.0.1:9"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    client = Client()
    if role:
        client.force_login(UserFactory(role=role))
    admin = Client()
    admin.force_login(UserFactory(role="admin"))
    orthanc.cache_clear()
    try:
        public, detailed = client.get("/api/health/"), admin.get("/api/health/")
    finally:
        orthanc.cache_clear()
    assert public.status_code == detailed.status_code == 503
    assert public.json() == {"ok": False, "checks": {"database": {"ok": True}, "orthanc": {"ok": False},
                                                     "broker": {"ok": True}, "models": {"ok": True}}}  # fmt: skip
    assert b"127.0.0.1:9" not in public.content
    assert "127.0.0.1:9" in detailed.json()["checks"]["orthanc"]["detail"]  # admins still see why


# --- deployment settings ---------------------------------------------------------------------------


def test_check_deploy_under_the_production_settings_reports_nothing():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPINEREVIEW_", "DJANGO_"))}
    env.update(DJANGO_SETTINGS_MODULE="webapp.settings.production", SPINEREVIEW_SECRET_KEY=secrets.token_urlsafe(64))
    code = "import django; django.setup(); from django.core.management import call_command; " \
           "call_command('check', deploy=True, fail_level='WARNING')"  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in output, output
    assert "WARNING" not in output


def test_the_demo_runs_without_debug_on_loopback_names_only_and_serves_static_files(tmp_path):  # type: ignore[no-untyped-def]
    with demo_server(tmp_path / "var") as server, httpx.Client(base_url=server.url, timeout=30) as http:
        css = http.get("/static/reviewer/app.css", headers={"Host": server.app_host})
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")
        assert http.get("/static/admin/css/base.css", headers={"Host": server.app_host}).status_code == 200
        assert http.get("/static/reviewer/app.css", headers={"Host": server.viewer_host}).status_code == 200
        missing = http.get("/no-such-page/", headers={"Host": server.app_host})
        assert missing.status_code == 404
        assert "DEBUG = True" not in missing.text
        assert "Traceback" not in missing.text
        for host in ("evil.example", f"evil.example:{server.port}", "10.0.0.1"):
            assert http.get("/accounts/login/", headers={"Host": host}).status_code == 400, host
        assert http.get("/accounts/login/", headers={"Host": f"127.0.0.1:{server.port}"}).status_code == 200
