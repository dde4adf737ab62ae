"""Sign-in hardening: the failed-password lockout, API token lifetime, and the one-time viewer
hand-off token.

Everything short-lived lives in the default cache (Redis in deployment, shared by every web
worker; a per-process memory cache in the single-process demo and in tests):

- failed passwords are counted per username for ``SPINEREVIEW_LOGIN_FAILURE_LIMIT`` attempts in a
  window of ``SPINEREVIEW_LOGIN_LOCKOUT_S`` seconds from the first failure; at the limit the
  username is refused, the right password included, until the window ends. Counting per username
  (not per address) keeps one hospital NAT address from locking out everyone behind it; the
  per-address rate of the token endpoint is DRF's throttle (``reviewer/api/auth_views.py``).
- a hand-off token carries a random nonce that the cache holds for the token's lifetime; the first
  redemption deletes it (an atomic delete in Redis and in the memory cache), so a replay fails.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

# --- failed-password lockout ---------------------------------------------------------------------


def _failure_key(username: str) -> str:
    # hashed: a username may hold characters a cache key must not, and keys show in Redis dumps
    digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return f"auth:failures:{digest}"


def login_lockout_remaining(*, username: str) -> int:
    """Seconds until ``username`` may try a password again; 0 when it is not locked out."""
    key = _failure_key(username)
    count = cache.get(key) or 0
    if count < settings.SPINEREVIEW_LOGIN_FAILURE_LIMIT:
        return 0
    since = cache.get(f"{key}:since") or time.time()
    return max(1, int(since + settings.SPINEREVIEW_LOGIN_LOCKOUT_S - time.time()))


def record_login_failure(*, username: str) -> int:
    """Count one wrong password for ``username``; returns the count in the current window."""
    key, window = _failure_key(username), settings.SPINEREVIEW_LOGIN_LOCKOUT_S
    cache.add(f"{key}:since", time.time(), window)
    cache.add(key, 0, window)  # the window starts at the first failure; incr keeps its expiry
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, window)
        return 1


def clear_login_failures(*, username: str) -> None:
    """A successful sign-in forgets the failures of that username."""
    key = _failure_key(username)
    cache.delete_many([key, f"{key}:since"])


# --- API tokens ------------------------------------------------------------------------------------


def api_token_expires_at(token: Token) -> datetime:
    return token.created + timedelta(seconds=settings.SPINEREVIEW_API_TOKEN_TTL_S)


def api_token_expired(token: Token) -> bool:
    return timezone.now() >= api_token_expires_at(token)


@transaction.atomic
def issue_api_token(*, user: AbstractBaseUser) -> Token:
    """A fresh token for ``user``; the previous one (if any) stops working. Rotating on every
    sign-in bounds what a leaked token is worth to one sign-in's lifetime."""
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user)


@transaction.atomic
def revoke_api_tokens(*, user: AbstractBaseUser) -> int:
    """Delete the user's API token (sign-out). Returns how many were deleted."""
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted


# --- viewer hand-off -------------------------------------------------------------------------------

HANDOFF_SALT = "spinereview.viewer.handoff"
HANDOFF_MAX_AGE_S = 60


class HandoffRefused(Exception):
    """The hand-off token cannot sign anyone in (forged, expired, replayed, another browser)."""


@dataclass(frozen=True)
class HandoffGrant:
    user: AbstractBaseUser


def user_agent_digest(user_agent: str) -> str:
    """What the token remembers of the browser that asked for it (not the string itself)."""
    return hashlib.sha256(user_agent.encode("utf-8", "replace")).hexdigest()[:24]


def _nonce_key(nonce: str) -> str:
    return f"viewer:handoff:{nonce}"


def issue_handoff_token(*, user: AbstractBaseUser, user_agent: str) -> str:
    """A signed token that signs ``user`` in on the viewer origin once, from this browser, within
    ``HANDOFF_MAX_AGE_S`` seconds."""
    nonce = secrets.token_urlsafe(18)
    cache.set(_nonce_key(nonce), user.pk, HANDOFF_MAX_AGE_S + 5)
    payload = {"u": user.pk, "h": user.get_session_auth_hash(), "n": nonce, "a": user_agent_digest(user_agent)}
    return signing.dumps(payload, salt=HANDOFF_SALT)


def redeem_handoff_token(*, token: str, user_agent: str) -> HandoffGrant:
    """Check the token and consume its nonce; raises ``HandoffRefused`` with the reason.

    The browser check comes before the nonce is consumed: a copy of the link replayed from another
    browser is refused without spending the token, so its rightful owner can still use it.
    """
    try:
        data = signing.loads(token, salt=HANDOFF_SALT, max_age=HANDOFF_MAX_AGE_S)
    except signing.SignatureExpired as exc:
        raise HandoffRefused("the hand-off link has expired") from exc
    except signing.BadSignature as exc:
        raise HandoffRefused("the hand-off link is not valid") from exc
    if not isinstance(data, dict) or not all(k in data for k in ("u", "h", "n", "a")):
        raise HandoffRefused("the hand-off link is not valid")
    if not secrets.compare_digest(str(data["a"]), user_agent_digest(user_agent)):
        raise HandoffRefused("the hand-off link was issued to another browser")
    if cache.get(_nonce_key(str(data["n"]))) != data["u"] or not cache.delete(_nonce_key(str(data["n"]))):
        raise HandoffRefused("the hand-off link has already been used")
    user = get_user_model().objects.filter(pk=data["u"], is_active=True).first()
    if user is None or not secrets.compare_digest(user.get_session_auth_hash(), str(data["h"])):
        raise HandoffRefused("the account changed since the link was issued")  # password changed, deactivated
    return HandoffGrant(user=user)
