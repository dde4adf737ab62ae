"""Demo / development on one machine: SQLite, in-process tasks, no Redis needed.

The secret key is generated once into ``var/`` (never committed), so sessions survive restarts.
DEBUG is off unless ``SPINEREVIEW_DEBUG=1`` (tracebacks and settings would otherwise be shown to
anyone who reaches the port), and only loopback host names are served (base.py:
``SPINEREVIEW_ALLOWED_HOSTS`` adds others). Static files come from the apps' folders through
WhiteNoise, so no ``collectstatic`` is needed.
"""

import os
import secrets

from .base import *  # noqa: F403
from .base import STATIC_ROOT, VAR_DIR, env_bool

DEBUG = env_bool("SPINEREVIEW_DEBUG", False)
VAR_DIR.mkdir(parents=True, exist_ok=True)
_key_file = VAR_DIR / "secret_key"
if not _key_file.exists():
    _key_file.write_text(secrets.token_urlsafe(50))
    _key_file.chmod(0o600)
SECRET_KEY = _key_file.read_text().strip()

CELERY_TASK_ALWAYS_EAGER = env_bool("SPINEREVIEW_TASKS_EAGER", True)
# the watcher drafts the studies of one pass together (requesting.drafts_together): up to 8 in one
# run, the pipeline's own batch (studies_per_batch), where a worker of a deployment takes 4
SPINEREVIEW_DRAFT_BATCH_STUDIES = int(os.environ.get("SPINEREVIEW_DRAFT_BATCH_STUDIES", "8"))
SPINEREVIEW_PIPELINE_BOOTSTRAP = env_bool("SPINEREVIEW_PIPELINE_BOOTSTRAP", True)  # the demo preset, cached
WHITENOISE_USE_FINDERS = True  # serve app and package static folders directly
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise also serves collectstatic's output, if any
