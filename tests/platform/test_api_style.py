"""The API is written one way: every endpoint an ``APIView`` class whose roles ``RolePermission``
reads from ``allowed_roles``, every path registered in ``reviewer/api/urls.py``."""

from __future__ import annotations

import pytest


def _api_views() -> list[tuple[str, type]]:
    from django.urls import URLPattern, URLResolver, get_resolver

    found: list[tuple[str, type]] = []

    def walk(patterns, prefix: str) -> None:  # type: ignore[no-untyped-def]
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern) and (prefix + str(p.pattern)).startswith("api/"):
                found.append((prefix + str(p.pattern), getattr(p.callback, "cls", None) or p.callback))

    walk(get_resolver("webapp.urls").url_patterns, "")
    return found


def test_every_api_endpoint_is_an_apiview_with_roles() -> None:
    from rest_framework.permissions import AllowAny, IsAuthenticated
    from rest_framework.viewsets import ViewSetMixin

    from reviewer.permissions import RolePermission

    views = _api_views()
    assert len(views) > 30
    offenders = []
    for route, view in views:
        if route in ("api/health/", "api/schema/", "api/docs/"):
            continue  # the health check (plain Django) and drf-spectacular's own views
        if not isinstance(view, type) or issubclass(view, ViewSetMixin):
            offenders.append((route, "not an APIView class"))
            continue
        permissions = list(view.permission_classes)
        if permissions == [AllowAny] or (route == "api/" and permissions == [IsAuthenticated]):
            continue  # the token endpoint (how callers sign in) and the browsable entry point
        if permissions != [RolePermission] or not isinstance(getattr(view, "allowed_roles", None), dict):
            offenders.append((route, "needs permission_classes = [RolePermission] and allowed_roles"))
    assert offenders == []


@pytest.mark.parametrize(
    ("method", "user_roles", "allowed", "admitted"),
    [
        ("GET", {"radiologist"}, {"GET": {"radiologist"}}, True),
        ("HEAD", {"radiologist"}, {"GET": {"radiologist"}}, True),
        ("POST", {"radiologist"}, {"GET": {"radiologist"}}, False),  # a method not named: admins only
        ("POST", {"admin"}, {}, True),
        ("GET", {"researcher"}, {"GET": {"radiologist", "annotator"}}, False),
    ],
)
def test_role_permission_reads_allowed_roles_per_method(method, user_roles, allowed, admitted) -> None:  # type: ignore[no-untyped-def]
    from types import SimpleNamespace

    from reviewer.permissions import RolePermission
    from reviewer.roles import Role

    user = SimpleNamespace(is_authenticated=True, _spinereview_roles=frozenset(Role(r) for r in user_roles))
    view = SimpleNamespace(allowed_roles={m: {Role(r) for r in rs} for m, rs in allowed.items()})
    assert RolePermission().has_permission(SimpleNamespace(user=user, method=method), view) is admitted


@pytest.mark.django_db
def test_an_unknown_api_url_answers_json_404_like_every_api_error(api_as):  # type: ignore[no-untyped-def]
    response = api_as("radiologist").get("/api/studies/abc/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Not found."}
