"""The demo's users, created the way ``scripts/demo`` creates them (its own argv, the real
management command, the test database)."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from scripts.demo import demo_users_argv

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("password", ["-fwvPyD0I8ul", "plain_Password9", "--double-dash"])
def test_demo_users_accept_every_generated_password(password: str) -> None:
    """``secrets.token_urlsafe`` draws "-" as the first character one time in 64: such a
    password once stopped a first run (argparse took it for an option)."""
    call_command(*demo_users_argv(password))
    user = authenticate(username="radiologist", password=password)
    assert user is not None
    assert user.groups.filter(name="radiologist").exists()
    admin = authenticate(username="admin", password=password)
    assert admin is not None
    assert admin.is_superuser
