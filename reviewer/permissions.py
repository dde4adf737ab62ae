"""Who may call what, from the roles of ``reviewer.roles``.

An API view names the roles admitted per HTTP method, ``allowed_roles = {"GET": {R, A}, "POST":
{R}}``, and ``RolePermission`` reads it; admins are always admitted, and a method the view does
not name is for admins only. Denials are 403 for authenticated users and 401 for anonymous ones.
Pages use ``role_required``, the same rule for function views."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from typing import Any

from rest_framework.permissions import SAFE_METHODS, BasePermission

from reviewer.roles import Role, has_role

AllowedRoles = Mapping[str, Set[Role]]


class RolePermission(BasePermission):
    """Admit a request when the user has a role the view's ``allowed_roles`` names for its method.

    HEAD and OPTIONS follow GET: they reveal no more than a read. One class for every endpoint,
    so the whole role policy is the ``allowed_roles`` lines of ``reviewer/api/``."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        allowed: AllowedRoles = getattr(view, "allowed_roles", {})
        method = "GET" if request.method in SAFE_METHODS else request.method
        return has_role(request.user, Role.ADMIN, *allowed.get(method, ()))


def role_required(*roles: Role) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Page decorator: anonymous users go to the login page, users without one of ``roles``
    (admins always pass) get 403 — the pages' counterpart of ``RolePermission``."""
    from functools import wraps

    from django.contrib.auth.views import redirect_to_login
    from django.core.exceptions import PermissionDenied

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, Role.ADMIN, *roles):
                raise PermissionDenied("your role cannot open this page")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
