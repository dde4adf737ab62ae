"""The Celery application. Tasks live in ``reviewer/tasks.py`` and take ids only."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.local")

app = Celery("spinereview")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
