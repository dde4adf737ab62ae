"""The test suite: PostgreSQL, Redis and Orthanc started by ``scripts/test`` (see tests/harness.py).

Without ``DATABASE_URL`` (a developer running one pure test by hand) it falls back to SQLite.
"""

from .base import *  # noqa: F403

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user factories
CELERY_TASK_ALWAYS_EAGER = False
