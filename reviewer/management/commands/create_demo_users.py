"""Create one demo user per role (idempotent). Passwords come from the caller, never git."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from reviewer.roles import ensure_groups

DEMO_USERS = (
    ("radiologist", "radiologist"),
    ("annotator", "annotator"),
    ("researcher", "researcher"),
    ("admin", None),
)


class Command(BaseCommand):
    help = "Create demo users radiologist/annotator/researcher/admin with the given password."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--password", required=True)

    @transaction.atomic
    def handle(self, *args, password: str, **options) -> None:
        ensure_groups()
        User = get_user_model()
        for username, group in DEMO_USERS:
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = user.is_superuser = group is None
            user.save()
            if group:
                user.groups.add(Group.objects.get(name=group))
        self.stdout.write(f"demo users: {', '.join(u for u, _ in DEMO_USERS)}")
