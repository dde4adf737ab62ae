"""The one place that knows how to reach Orthanc (REST via pyorthanc, DICOMweb via
dicomweb-client). Both share the configured URL and credentials."""

from __future__ import annotations

import functools

import httpx
import pyorthanc
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session
from django.conf import settings


class OrthancUnavailable(RuntimeError):
    """Orthanc could not be reached (a transient fault: callers retry)."""


@functools.cache
def orthanc() -> pyorthanc.Orthanc:
    """A shared, thread-safe REST client (an httpx.Client underneath, keep-alive pooled)."""
    return pyorthanc.Orthanc(
        settings.ORTHANC_URL,
        username=settings.ORTHANC_USERNAME or None,
        password=settings.ORTHANC_PASSWORD or None,
        timeout=settings.ORTHANC_TIMEOUT_S,
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
    )


def dicomweb() -> DICOMwebClient:
    """A DICOMweb client on Orthanc's own DICOMweb root (server side: no proxy involved)."""
    session = create_session()
    if settings.ORTHANC_USERNAME:
        session.auth = (settings.ORTHANC_USERNAME, settings.ORTHANC_PASSWORD)
    return DICOMwebClient(url=settings.ORTHANC_URL + settings.ORTHANC_DICOMWEB_ROOT, session=session)


def ping() -> dict:
    """Orthanc's /system, or raise OrthancUnavailable."""
    try:
        return orthanc().get_system()
    except httpx.HTTPError as exc:
        raise OrthancUnavailable(f"Orthanc at {settings.ORTHANC_URL} unreachable: {exc}") from exc
