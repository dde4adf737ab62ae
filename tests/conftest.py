"""Shared fixtures. The real services (PostgreSQL, Redis, Orthanc) are started around the
whole run by ``scripts/test`` (``python -m scripts.services run -- pytest``), which exports
their addresses. Run by hand without them, service tests are skipped with a reason; under
``SPINEREVIEW_REQUIRE_SERVICES=1`` (the test command, CI) a missing service is an error."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _need(var: str) -> str:
    value = os.environ.get(var)
    if value:
        return value
    if os.environ.get("SPINEREVIEW_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{var} is not set although services are required (run via scripts/test)")
    pytest.skip(f"{var} not set: run the suite with scripts/test, which starts the services")


@pytest.fixture(scope="session")
def orthanc_url() -> str:
    return _need("SPINEREVIEW_ORTHANC_URL")


@pytest.fixture(scope="session")
def orthanc_auth(orthanc_url: str) -> tuple[str, str]:
    return (os.environ["SPINEREVIEW_ORTHANC_USERNAME"], os.environ["SPINEREVIEW_ORTHANC_PASSWORD"])


@pytest.fixture(scope="session")
def orthanc_http(orthanc_url: str, orthanc_auth: tuple[str, str]) -> Iterator[httpx.Client]:
    """The tests' own REST client, on the app's transport: a test polling Orthanc meets the same
    closed keep-alive connections as the app does, and must resend its reads the same way."""
    from reviewer.integrations.orthanc import StaleConnectionRetry

    with httpx.Client(base_url=orthanc_url, auth=orthanc_auth, timeout=30, transport=StaleConnectionRetry()) as client:
        yield client


@pytest.fixture
def orthanc_settings(settings, orthanc_url: str, orthanc_auth: tuple[str, str]):  # type: ignore[no-untyped-def]
    """Point the app at the test Orthanc (and drop the cached client afterwards)."""
    from reviewer.integrations.orthanc import orthanc

    settings.ORTHANC_URL = orthanc_url
    settings.ORTHANC_USERNAME, settings.ORTHANC_PASSWORD = orthanc_auth
    orthanc.cache_clear()
    yield settings
    orthanc.cache_clear()


@pytest.fixture
def empty_orthanc(orthanc_http: httpx.Client) -> httpx.Client:
    """Orthanc with no studies and an empty change log, so each test sees only its own events."""
    for study_id in orthanc_http.get("/studies").json():
        orthanc_http.delete(f"/studies/{study_id}")
    orthanc_http.delete("/changes")
    return orthanc_http


@pytest.fixture
def role_user(db) -> Callable[[str], object]:  # type: ignore[no-untyped-def]
    """Factory: a user with one role (radiologist / annotator / researcher / admin)."""
    from tests.factories import UserFactory

    def make(role: str, **kwargs):  # type: ignore[no-untyped-def]
        return UserFactory(role=role, **kwargs)

    return make


@pytest.fixture
def api_as(role_user):  # type: ignore[no-untyped-def]
    """Factory: a DRF APIClient logged in (session) as a fresh user with the role; None = anonymous."""
    from rest_framework.test import APIClient

    def make(role: str | None, *, csrf: bool = False) -> APIClient:
        client = APIClient(enforce_csrf_checks=csrf)
        if role:
            user = role_user(role)
            client.force_login(user)
            client.user = user  # type: ignore[attr-defined]
        return client

    return make


def wait_for(predicate: Callable[[], object], timeout: float = 30, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
