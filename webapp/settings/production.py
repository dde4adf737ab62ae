"""Deployment: PostgreSQL, Redis, Celery workers, gunicorn. Everything from the environment."""

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import SECRET_KEY, env_bool

if not SECRET_KEY:
    raise ImproperlyConfigured("SPINEREVIEW_SECRET_KEY must be set in production")

DEBUG = False
SESSION_COOKIE_SECURE = env_bool("SPINEREVIEW_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
