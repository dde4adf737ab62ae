"""Authentication classes: the password backend with the failed-password lockout, and DRF token
authentication that honours the token lifetime. Both are named in settings (base.py), so every
sign-in path (web form, admin, API token) and every token check (REST API, DICOMweb proxy when it
uses the configured classes) goes through them."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from reviewer.services import access


class LockoutModelBackend(ModelBackend):
    """Django's username/password check, refused outright while the username is locked out.

    Raising ``PermissionDenied`` (not returning None) makes ``authenticate()`` stop at once, so a
    locked-out username cannot be tried at all, whatever the password.
    """

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password: str | None = None,
                     **kwargs):  # fmt: skip
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        if access.login_lockout_remaining(username=username):
            raise PermissionDenied("too many failed sign-ins")
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            access.record_login_failure(username=username)
        else:
            access.clear_login_failures(username=username)
        return user


class ExpiringTokenAuthentication(TokenAuthentication):
    """``Authorization: Token <key>``, refused (and the token deleted) once it is older than
    ``SPINEREVIEW_API_TOKEN_TTL_S``."""

    def authenticate_credentials(self, key: str):
        user, token = super().authenticate_credentials(key)
        if access.api_token_expired(token):
            token.delete()
            raise exceptions.AuthenticationFailed("Token expired: sign in again (POST /api/auth/token/).")
        return user, token
