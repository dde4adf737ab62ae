"""Settings shared by every environment. Everything deployment-specific comes from the
environment (``SPINEREVIEW_*``, ``DATABASE_URL``, ``CELERY_BROKER_URL``); no secret lives in git.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("SPINEREVIEW_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("SPINEREVIEW_SECRET_KEY", "")
DEBUG = env_bool("SPINEREVIEW_DEBUG", False)
ALLOWED_HOSTS = env_list("SPINEREVIEW_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("SPINEREVIEW_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "reviewer",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # static files (admin, API docs, app.css) from STATIC_ROOT with DEBUG off, demo and deployment alike
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'spinereview.sqlite3'}"),
        conn_max_age=int(os.environ.get("SPINEREVIEW_DB_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded database (demo): a transaction that reads and then writes must take the write
    # lock when it begins (BEGIN IMMEDIATE), or two simultaneous saves both read and the second
    # fails with "database is locked" when it tries to write. Waiting writers queue for
    # ``timeout`` seconds; WAL lets readers go on while one writer works.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        transaction_mode="IMMEDIATE",
        timeout=float(os.environ.get("SPINEREVIEW_SQLITE_TIMEOUT_S", "20")),
        init_command="PRAGMA journal_mode=WAL;",
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
# Password sign-in everywhere (web form, admin, API token) goes through this backend: after
# SPINEREVIEW_LOGIN_FAILURE_LIMIT wrong passwords for one username within the window, that
# username is refused, right password or not, until the window ends (reviewer/services/access.py).
AUTHENTICATION_BACKENDS = ["reviewer.authentication.LockoutModelBackend"]
SPINEREVIEW_LOGIN_FAILURE_LIMIT = int(os.environ.get("SPINEREVIEW_LOGIN_FAILURE_LIMIT", "10"))
SPINEREVIEW_LOGIN_LOCKOUT_S = int(os.environ.get("SPINEREVIEW_LOGIN_LOCKOUT_S", "900"))
# API tokens (scripts) expire this long after they were issued; a new sign-in rotates them and
# signing out (web or DELETE /api/auth/token/) deletes them.
SPINEREVIEW_API_TOKEN_TTL_S = int(os.environ.get("SPINEREVIEW_API_TOKEN_TTL_S", str(12 * 3600)))
SESSION_COOKIE_AGE = int(os.environ.get("SPINEREVIEW_SESSION_AGE_S", str(12 * 3600)))  # one working day


def cache_config(url: str) -> dict:
    """``CACHES["default"]`` for a ``redis://`` URL, else a per-process memory cache. The cache
    holds the sign-in failure counters, the API throttle counters and the viewer hand-off nonces,
    so every process serving requests must share it: a deployment with several web workers needs
    Redis here (production.py defaults to the broker's Redis)."""
    if url.startswith(("redis://", "rediss://")):
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url, "KEY_PREFIX": "spinereview"}
    return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "spinereview"}


CACHES = {"default": cache_config(os.environ.get("SPINEREVIEW_CACHE_URL", ""))}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",  # browser; enforces CSRF
        "reviewer.authentication.ExpiringTokenAuthentication",  # scripts
    ],
    # only the sign-in endpoints name a scope (reviewer/api/auth.py); per client address
    "DEFAULT_THROTTLE_RATES": {"auth": os.environ.get("SPINEREVIEW_AUTH_THROTTLE_RATE", "20/min")},
    # proxies in front of the app whose X-Forwarded-For is trusted; 0 = the socket's address (else
    # any client could name a fresh address per request and never be throttled)
    "NUM_PROXIES": int(os.environ.get("SPINEREVIEW_NUM_PROXIES", "0")),
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "reviewer.api.schema.AutoSchema",  # names nested Input/Output serializers
    # service exceptions (validation, conflicts, Orthanc down) answered as JSON in one place
    "EXCEPTION_HANDLER": "reviewer.api.exception_handlers.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "SpineReview API",
    "DESCRIPTION": "Studies, AI drafts, report revisions, RADPEER reviews and label confirmation.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",  # served locally: hospitals are often offline
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # one stable name per choice set (else drf-spectacular guesses, and check --deploy warns)
    "ENUM_NAME_OVERRIDES": {
        "RadpeerEnum": "reviewer.models.Review.Radpeer",
        "StructuredReportSourceEnum": "reviewer.models.StructuredReport.Source",
        "LabelExtractionSourceEnum": "reviewer.models.LabelExtraction.Source",
    },
}

# --- Orthanc (pixels live only there; Django stores UIDs and derived results) -------------
ORTHANC_URL = os.environ.get("SPINEREVIEW_ORTHANC_URL", "http://127.0.0.1:8042").rstrip("/")
ORTHANC_USERNAME = os.environ.get("SPINEREVIEW_ORTHANC_USERNAME", "")
ORTHANC_PASSWORD = os.environ.get("SPINEREVIEW_ORTHANC_PASSWORD", "")
ORTHANC_DICOMWEB_ROOT = "/dicom-web"  # same path on Orthanc and on our proxy (BulkDataURIs)
ORTHANC_TIMEOUT_S = float(os.environ.get("SPINEREVIEW_ORTHANC_TIMEOUT_S", "30"))
ORTHANC_WATCH_INTERVAL_S = float(os.environ.get("SPINEREVIEW_ORTHANC_WATCH_INTERVAL_S", "2"))
# largest STOW-RS body the DICOMweb proxy forwards (JSON 413 beyond; Orthanc holds a STOW body in
# memory). The viewer nginx (client_max_body_size) must not allow less.
SPINEREVIEW_STOW_MAX_BYTES = int(os.environ.get("SPINEREVIEW_STOW_MAX_BYTES", str(1024**3)))
# behind the viewer's nginx: the internal location (e.g. /_orthanc) through which nginx fetches the
# pixel data the DICOMweb proxy authorised (X-Accel-Redirect); "" = the proxy relays it itself
SPINEREVIEW_DICOMWEB_ACCEL = os.environ.get("SPINEREVIEW_DICOMWEB_ACCEL", "").rstrip("/")
# behind the viewer's nginx: how long (seconds) nginx may keep the app's yes to "this credential
# may read the frames of this series" (X-Accel-Expires on the grant); sign-out, deactivation and a
# lost role reach frames of a series already opened within this time, everything else at once.
# 0 = nginx asks the app for every frame (docs/security.md, "Pixel data behind the viewer's nginx")
SPINEREVIEW_PIXEL_AUTH_TTL = int(os.environ.get("SPINEREVIEW_PIXEL_AUTH_TTL", "10"))
if SPINEREVIEW_PIXEL_AUTH_TTL < 0:
    raise ValueError("SPINEREVIEW_PIXEL_AUTH_TTL must be 0 (no cache) or a number of seconds")

# --- Celery ------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_ALWAYS_EAGER = env_bool("SPINEREVIEW_TASKS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True  # a killed worker's task is redelivered
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# drafting goes to the ``gpu`` queue: one solo worker per GPU serves it; a CPU-only site runs the
# same worker on the CPU (docs/drafting.md). Everything else stays on ``default``.
CELERY_TASK_ROUTES = {"reviewer.tasks.draft_study": {"queue": os.environ.get("SPINEREVIEW_DRAFT_QUEUE", "gpu")}}
CELERY_TASK_TIME_LIMIT = int(os.environ.get("SPINEREVIEW_TASK_TIME_LIMIT_S", "1800"))
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# celery beat (the `beat` service in docker-compose.yml): retries of outgoing messages whose
# delayed task was lost (a worker killed while a retry waited) are re-queued from the outbox rows
CELERY_BEAT_SCHEDULE = {
    "flush-outbox": {
        "task": "reviewer.tasks.flush_outbox",
        "schedule": float(os.environ.get("SPINEREVIEW_OUTBOX_FLUSH_S", "60")),
    },
}
# Redis redelivers an unacknowledged message (worker lost) after this many seconds; it must
# exceed the drafting hard time limit, or a long job would be handed to a second worker (which
# the job lock would then turn away, harmlessly, but wastefully).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": int(os.environ.get("SPINEREVIEW_BROKER_VISIBILITY_TIMEOUT_S", "3900"))
}
if CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] < 60:  # tests: sweep for lost messages often
    CELERY_BROKER_TRANSPORT_OPTIONS.update(unacked_restore_interval=1, unacked_restore_throttle=1)

# --- Drafting (reviewer/services/drafting.py, docs/drafting.md) ----------------------------
# Pipeline folder: ModelVersion.artifact_uri of the job's model version, else this, else (when
# bootstrapping is on: demo and tests) the preset's pipeline trained once into $SPINEREVIEW_CACHE
# (ml.agents.bootstrap: "demo" for the demo, "tiny" for the tests).
SPINEREVIEW_PIPELINE_DIR = os.environ.get("SPINEREVIEW_PIPELINE_DIR", "")
SPINEREVIEW_PIPELINE_BOOTSTRAP = env_bool("SPINEREVIEW_PIPELINE_BOOTSTRAP", False)
SPINEREVIEW_PIPELINE_PRESET = os.environ.get("SPINEREVIEW_PIPELINE_PRESET", "demo")
SPINEREVIEW_PRELOAD_PIPELINE = env_bool("SPINEREVIEW_PRELOAD_PIPELINE", True)  # load at worker start
SPINEREVIEW_DRAFT_SOFT_LIMIT_S = float(os.environ.get("SPINEREVIEW_DRAFT_SOFT_LIMIT_S", "1200"))
SPINEREVIEW_DRAFT_HARD_LIMIT_S = float(os.environ.get("SPINEREVIEW_DRAFT_HARD_LIMIT_S", "1500"))
SPINEREVIEW_DRAFT_MAX_RETRIES = int(os.environ.get("SPINEREVIEW_DRAFT_MAX_RETRIES", "10"))  # transient faults
SPINEREVIEW_DRAFT_RETRY_BACKOFF_S = float(os.environ.get("SPINEREVIEW_DRAFT_RETRY_BACKOFF_S", "5"))
SPINEREVIEW_DRAFT_MAX_ATTEMPTS = int(os.environ.get("SPINEREVIEW_DRAFT_MAX_ATTEMPTS", "3"))  # workers lost
# a drafting run takes up to this many waiting studies of the same pipeline version (one batched encode)
SPINEREVIEW_DRAFT_BATCH_STUDIES = int(os.environ.get("SPINEREVIEW_DRAFT_BATCH_STUDIES", "4"))
# fault injection for tests and demos: sleep this long at the start of each drafting stage
SPINEREVIEW_DRAFT_STAGE_DELAY_S = float(os.environ.get("SPINEREVIEW_DRAFT_STAGE_DELAY_S", "0"))

# --- ML ----------------------------------------------------------------------------------
SPINEREVIEW_CACHE = Path(os.environ.get("SPINEREVIEW_CACHE", BASE_DIR / ".cache"))
# Identifies the drafting pipeline; (study, pipeline version) is drafted at most once.
DRAFT_PIPELINE_VERSION = os.environ.get(
    "SPINEREVIEW_DRAFT_PIPELINE_VERSION", f"spinereview-{SPINEREVIEW_PIPELINE_PRESET}@bootstrap"
)
# Longest report text a save accepts (characters); a longer one is refused with 400, not stored.
SPINEREVIEW_MAX_REPORT_CHARS = int(os.environ.get("SPINEREVIEW_MAX_REPORT_CHARS", "50000"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "reviewer": {"handlers": ["console"], "level": os.environ.get("SPINEREVIEW_LOG_LEVEL", "INFO")},
        "ml": {"handlers": ["console"], "level": os.environ.get("SPINEREVIEW_LOG_LEVEL", "INFO")},
    },
}

# --- Viewer (OHIF 3.13.2 prebuilt + our extension; reviewer/viewer.py, docs/viewer.md) ----------
# The viewer lives at the root of its own origin. In development that is a second host name of
# this same process (browsers resolve *.localhost to loopback); in deployment the nginx vhost.
VIEWER_ORIGIN = os.environ.get("SPINEREVIEW_VIEWER_ORIGIN", "http://viewer.localhost:8000").rstrip("/")
# the worklist's origin: the viewer's "/" and its "Worklist" link go there ("" = OHIF's own study list)
VIEWER_APP_ORIGIN = os.environ.get("SPINEREVIEW_APP_ORIGIN", "http://localhost:8000").rstrip("/")
VIEWER_OHIF_VERSION = "3.13.2"  # the extension refuses to load on any other build (React technique)
_OHIF_DEFAULT_DIST = SPINEREVIEW_CACHE / "ohif" / f"app-{VIEWER_OHIF_VERSION}" / "package" / "dist"
VIEWER_OHIF_DIST = Path(os.environ.get("SPINEREVIEW_OHIF_DIST", _OHIF_DEFAULT_DIST))  # fetched by scripts/setup.sh
VIEWER_EXTENSION_DIST = Path(os.environ.get("SPINEREVIEW_VIEWER_EXTENSION_DIST", BASE_DIR / "ohif-extension" / "dist"))
VIEWER_POLL_S = float(os.environ.get("SPINEREVIEW_VIEWER_POLL_S", "5"))  # panel refresh while a draft is pending
# How Cornerstone draws: "auto" draws on the CPU where the browser's WebGL is a software renderer
# (SwiftShader, llvmpipe: VDI desktops, GPU-less servers), on the GPU elsewhere; "gpu" or "cpu" forces one
VIEWER_RENDERING = os.environ.get("SPINEREVIEW_VIEWER_RENDERING", "auto").strip().lower()
if VIEWER_RENDERING not in ("auto", "gpu", "cpu"):
    raise ValueError(f"SPINEREVIEW_VIEWER_RENDERING must be auto, gpu or cpu, not {VIEWER_RENDERING!r}")
# The viewer runs itself once more in a hidden frame while the reader reads the first study, so that
# the next one starts from compiled code (ohif-extension/src/warmup.ts); off: no second OHIF for
# 1.3-1.7 s on a 2-core machine (reading stations short of memory), and a second study that compiles OHIF again
VIEWER_WARMUP = env_bool("SPINEREVIEW_VIEWER_WARMUP", True)
MIDDLEWARE.append("reviewer.viewer.ViewerHostMiddleware")  # viewer host -> VIEWER_URLCONF
VIEWER_URLCONF = "webapp.viewer_urls"
if (_viewer_hostname := VIEWER_ORIGIN.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]) not in ALLOWED_HOSTS:
    ALLOWED_HOSTS.append(_viewer_hostname)

# --- Outgoing messages of signed reports (reviewer/integrations/, docs/interoperability.md) -------
# Every destination is optional except the report SR into our own Orthanc. Messages wait in the
# outbox (admin: Outbox messages) and are retried with exponential backoff while a destination is down.
SPINEREVIEW_SR_TO_ORTHANC = env_bool("SPINEREVIEW_SR_TO_ORTHANC", True)  # the signed report as DICOM SR
# Orthanc modality names (Orthanc's DicomModalities) the report SR is forwarded to by C-STORE
SPINEREVIEW_SR_FORWARD_MODALITIES = env_list("SPINEREVIEW_SR_FORWARD_MODALITIES")
SPINEREVIEW_FHIR_URL = os.environ.get("SPINEREVIEW_FHIR_URL", "").rstrip("/")  # FHIR R4 base; "" = no push
SPINEREVIEW_FHIR_TOKEN = os.environ.get("SPINEREVIEW_FHIR_TOKEN", "")  # sent as a Bearer token if set
# IssuerOfPatientID -> Patient.identifier.system, "ISSUER=uri,..." (unmapped: urn:oid:, a URI, or ours)
SPINEREVIEW_FHIR_PATIENT_ID_SYSTEMS = dict(
    item.split("=", 1) for item in env_list("SPINEREVIEW_FHIR_PATIENT_ID_SYSTEMS") if "=" in item
)
SPINEREVIEW_HL7_HOST = os.environ.get("SPINEREVIEW_HL7_HOST", "")  # RIS MLLP listener; "" = no ORU
SPINEREVIEW_HL7_PORT = int(os.environ.get("SPINEREVIEW_HL7_PORT", "2575"))
SPINEREVIEW_HL7_SENDING_APPLICATION = os.environ.get("SPINEREVIEW_HL7_SENDING_APPLICATION", "SPINEREVIEW")
SPINEREVIEW_HL7_SENDING_FACILITY = os.environ.get("SPINEREVIEW_HL7_SENDING_FACILITY", "")
SPINEREVIEW_HL7_RECEIVING_APPLICATION = os.environ.get("SPINEREVIEW_HL7_RECEIVING_APPLICATION", "RIS")
SPINEREVIEW_HL7_RECEIVING_FACILITY = os.environ.get("SPINEREVIEW_HL7_RECEIVING_FACILITY", "")
SPINEREVIEW_INTEROP_TIMEOUT_S = float(os.environ.get("SPINEREVIEW_INTEROP_TIMEOUT_S", "15"))  # per attempt
SPINEREVIEW_OUTBOX_MAX_ATTEMPTS = int(os.environ.get("SPINEREVIEW_OUTBOX_MAX_ATTEMPTS", "10"))
SPINEREVIEW_OUTBOX_BACKOFF_S = float(os.environ.get("SPINEREVIEW_OUTBOX_BACKOFF_S", "30"))  # doubles per attempt
SPINEREVIEW_OUTBOX_BACKOFF_MAX_S = float(os.environ.get("SPINEREVIEW_OUTBOX_BACKOFF_MAX_S", "3600"))
