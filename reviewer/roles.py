"""The four roles. Radiologists, annotators and researchers are Django groups; admin is
``is_staff``. Every endpoint names the roles it admits (see ``permissions.py``)."""

from __future__ import annotations

from enum import StrEnum

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group


class Role(StrEnum):
    RADIOLOGIST = "radiologist"
    ANNOTATOR = "annotator"
    RESEARCHER = "researcher"
    ADMIN = "admin"


GROUP_ROLES = (Role.RADIOLOGIST, Role.ANNOTATOR, Role.RESEARCHER)


def roles_of(user: AbstractBaseUser | AnonymousUser) -> frozenset[Role]:
    """The roles of a user, cached on the user object for the request."""
    if not getattr(user, "is_authenticated", False):
        return frozenset()
    cached = getattr(user, "_spinereview_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))
        cached = frozenset(r for r in GROUP_ROLES if r.value in names)
        if user.is_staff or user.is_superuser:
            cached = cached | {Role.ADMIN}
        user._spinereview_roles = cached
    return cached


def has_role(user: AbstractBaseUser | AnonymousUser, *roles: Role) -> bool:
    return bool(roles_of(user) & set(roles))


def ensure_groups() -> None:
    """Create the role groups (idempotent); called by the migration and the demo setup."""
    for role in GROUP_ROLES:
        Group.objects.get_or_create(name=role.value)
