"""The test suite: PostgreSQL, Redis and Orthanc started by ``scripts/test`` (see scripts/services.py).

Without ``DATABASE_URL`` (a developer running one pure test by hand) it falls back to SQLite.
"""

import os

from .base import *  # noqa: F403
from .base import STATIC_ROOT, env_bool

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user factories
CELERY_TASK_ALWAYS_EAGER = False
SPINEREVIEW_PIPELINE_BOOTSTRAP = env_bool("SPINEREVIEW_PIPELINE_BOOTSTRAP", True)  # tiny pipeline, cached
SPINEREVIEW_PIPELINE_PRESET = os.environ.get("SPINEREVIEW_PIPELINE_PRESET", "tiny")
DRAFT_PIPELINE_VERSION = os.environ.get(
    "SPINEREVIEW_DRAFT_PIPELINE_VERSION", f"spinereview-{SPINEREVIEW_PIPELINE_PRESET}@bootstrap"
)
# results let a test wait on a task run by a real worker process
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or os.environ.get("CELERY_BROKER_URL") or None
WHITENOISE_USE_FINDERS = True  # as in the demo: static files from the apps' folders
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
