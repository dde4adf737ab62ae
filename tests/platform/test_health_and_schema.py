from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.services
def test_health_reports_every_dependency(client, orthanc_settings, settings):  # type: ignore[no-untyped-def]
    import os

    from tests.factories import UserFactory

    settings.CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]
    client.force_login(UserFactory(role="admin"))  # the details are for admins
    body = client.get("/api/health/").json()
    assert body["ok"] is True, body
    assert set(body["checks"]) == {"database", "orthanc", "broker", "models"}
    assert body["checks"]["database"]["detail"] == "postgresql"
    assert body["checks"]["orthanc"]["detail"].startswith("Orthanc 1.")


def test_health_is_503_when_orthanc_is_down(client, settings):  # type: ignore[no-untyped-def]
    from reviewer.integrations.orthanc import orthanc

    settings.ORTHANC_URL = "http://127.0.0.1:9"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    orthanc.cache_clear()
    try:
        response = client.get("/api/health/")
    finally:
        orthanc.cache_clear()
    assert response.status_code == 503
    assert response.json()["checks"]["orthanc"]["ok"] is False


def test_openapi_schema_validates_and_documents_the_api():  # type: ignore[no-untyped-def]
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    paths = schema["paths"]
    for expected in ("/api/studies/", "/api/studies/{id}/revisions/", "/api/studies/{id}/sign/", "/api/reviews/"):
        assert expected in paths
