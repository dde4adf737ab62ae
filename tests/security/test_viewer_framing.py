"""Who may frame the viewer's page, through the deployed nginx (``ohif-extension/deploy/nginx.conf``,
as shipped): the viewer origin itself (its code-cache warm-up frame, ``ohif-extension/src/warmup.ts``)
and no other site (clickjacking). The Django side: ``tests/browser/test_viewer_serving.py``.

No ``django_db`` mark: the session the test makes must be committed for the app under gunicorn to
see it."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.services]


def test_the_viewer_page_may_be_framed_by_its_own_origin_only(viewer_nginx, django_db_blocker):  # type: ignore[no-untyped-def]
    """The viewer loads itself in a hidden frame (its code-cache warm-up), so its page cannot say
    DENY; every other origin is still refused (clickjacking), by the deployed nginx as by the app."""
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    with django_db_blocker.unblock():
        client = Client()
        client.force_login(get_user_model().objects.get(username=viewer_nginx.usernames["radiologist"]))
    session = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    host = settings.VIEWER_ORIGIN.split("://", 1)[1]  # the app answers nginx's auth request on the viewer host
    page = viewer_nginx.raw("GET", "/spine-review?StudyInstanceUIDs=1.2.3", role=None,
                            headers={"Host": host, "Cookie": session})  # fmt: skip
    assert page.status == 200, page.body[:300]
    assert page.headers["x-frame-options"] == "SAMEORIGIN"
    assert page.headers["content-security-policy"] == "frame-ancestors 'self'"
    assert page.headers["cache-control"] == "no-cache"
