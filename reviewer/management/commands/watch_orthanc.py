"""``python manage.py watch_orthanc``: follow Orthanc's change feed and sync stable studies.

Runs forever (``--once`` for one pass). If Orthanc is down it logs and retries with backoff;
the cursor in the database means nothing is missed while either side is down.
"""

from __future__ import annotations

import logging
import time

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand

from reviewer.services.drafting import resume_queued
from reviewer.services.sync import process_changes

logger = logging.getLogger("reviewer.watch")


class Command(BaseCommand):
    help = "Follow Orthanc's change feed: stable studies become Study rows and draft jobs."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--once", action="store_true")
        parser.add_argument("--interval", type=float, default=settings.ORTHANC_WATCH_INTERVAL_S)

    def handle(self, *args, once: bool, interval: float, **options) -> None:
        resumed = resume_queued()  # in-process tasks: drafts a stopped run left queued
        if resumed:
            logger.info("drafted %d jobs a previous run left queued", resumed)
        backoff = interval
        while True:
            try:
                synced = process_changes()
                if synced:
                    logger.info("synced %d stable studies", synced)
                backoff = interval
            except httpx.HTTPError as exc:
                backoff = min(backoff * 2, 60.0)
                logger.warning("Orthanc unavailable (%s); retrying in %.0f s", exc, backoff)
                if once:
                    raise
            if once:
                return
            time.sleep(backoff)
