"""Deployment: PostgreSQL, Redis, Celery workers, gunicorn. Everything from the environment.

HTTPS is the default: the app redirects plain HTTP to HTTPS (behind a TLS-terminating proxy that
sets ``X-Forwarded-Proto``), sends HSTS for a year and marks cookies Secure, so that
``manage.py check --deploy`` is clean. A site that terminates TLS elsewhere and cannot forward the
header turns each part off explicitly (``SPINEREVIEW_SSL_REDIRECT=0``, ``SPINEREVIEW_HSTS_SECONDS=0``,
``SPINEREVIEW_SECURE_COOKIES=0``); check --deploy then names what was turned off.
"""

import os
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import CELERY_BROKER_URL, SECRET_KEY, cache_config, env_bool

if not SECRET_KEY:
    raise ImproperlyConfigured("SPINEREVIEW_SECRET_KEY must be set in production")

DEBUG = False
SESSION_COOKIE_SECURE = env_bool("SPINEREVIEW_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_SSL_REDIRECT = env_bool("SPINEREVIEW_SSL_REDIRECT", True)
# the container health check and nginx's auth_request reach the app over the internal network
SECURE_REDIRECT_EXEMPT = [r"^api/health/$", r"^viewer/auth/$"]
SECURE_HSTS_SECONDS = int(os.environ.get("SPINEREVIEW_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SPINEREVIEW_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SPINEREVIEW_HSTS_PRELOAD", True)


def _redis_db(url: str, db: int) -> str:
    """The same Redis server as ``url`` on another database number (the cache is kept apart
    from the Celery broker's keys)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


# Several gunicorn workers must share sign-in counters, throttles and hand-off nonces: Redis.
_cache_url = os.environ.get("SPINEREVIEW_CACHE_URL") or (
    _redis_db(CELERY_BROKER_URL, 1) if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else ""
)
if not _cache_url.startswith(("redis://", "rediss://")):
    raise ImproperlyConfigured("production needs a shared cache: set SPINEREVIEW_CACHE_URL=redis://...")
CACHES = {"default": cache_config(_cache_url)}
