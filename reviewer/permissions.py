"""DRF permissions per role. A view lists the roles allowed to read and to write; admins are
always allowed. Denials are 403 for authenticated users and 401 for anonymous ones."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from reviewer.roles import Role, has_role


class RolePermission(BasePermission):
    """Reads for ``view.read_roles``, writes for ``view.write_roles`` (admin implied).

    A viewset may override per action: ``action_roles = {"sign": (read_roles, write_roles)}``.
    """

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        if not (request.user and request.user.is_authenticated):
            return False
        read_roles = getattr(view, "read_roles", ())
        write_roles = getattr(view, "write_roles", ())
        per_action = getattr(view, "action_roles", {}).get(getattr(view, "action", None))
        if per_action is not None:
            read_roles, write_roles = per_action
        roles = read_roles if request.method in SAFE_METHODS else write_roles
        return has_role(request.user, Role.ADMIN, *roles)


class IsAdmin(BasePermission):
    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        return bool(request.user and request.user.is_authenticated and has_role(request.user, Role.ADMIN))


def role_required(*roles: Role):  # type: ignore[no-untyped-def]
    """Page decorator: anonymous users go to the login page, users without one of ``roles``
    (admins always pass) get 403 — the pages' counterpart of ``RolePermission``."""
    from functools import wraps

    from django.contrib.auth.views import redirect_to_login
    from django.core.exceptions import PermissionDenied

    def decorator(view):  # type: ignore[no-untyped-def]
        @wraps(view)
        def wrapped(request, *args, **kwargs):  # type: ignore[no-untyped-def]
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not has_role(request.user, Role.ADMIN, *roles):
                raise PermissionDenied("your role cannot open this page")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
