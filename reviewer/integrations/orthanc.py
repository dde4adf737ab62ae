"""The one place that knows how to reach Orthanc (REST via pyorthanc, DICOMweb via
dicomweb-client). Both share the configured URL and credentials."""

from __future__ import annotations

import functools
import logging

import httpx
import pyorthanc
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session
from django.conf import settings

logger = logging.getLogger(__name__)


class OrthancUnavailable(RuntimeError):
    """Orthanc could not be reached (a transient fault: callers retry)."""


# Requests that may be sent twice: reading changes nothing in Orthanc.
RESENDABLE_METHODS = frozenset({"GET", "HEAD"})
# Orthanc's searches are POSTs that only read: a lookup by UID and a find by tags.
READ_ONLY_POSTS = ("/tools/lookup", "/tools/find")


def resendable(request: httpx.Request) -> bool:
    """Whether sending ``request`` a second time can change nothing in Orthanc."""
    if request.method in RESENDABLE_METHODS:
        return True
    return request.method == "POST" and request.url.path.rstrip("/").endswith(READ_ONLY_POSTS)


class StaleConnectionRetry(httpx.HTTPTransport):
    """The keep-alive pool's transport, resending a read once when Orthanc closed the connection
    under it.

    Orthanc closes an idle keep-alive connection after a short timeout (``KeepAliveTimeout``, one
    second by default, from 1.11.3; CivetWeb's own before), while the pool keeps idle connections
    for seconds. The pool drops a connection it can see is closed, but when Orthanc's close
    crosses a request already on the wire the request ends with "Server disconnected without
    sending a response": nothing was answered, so a read (GET, HEAD, or the POSTs of
    ``/tools/lookup`` and ``/tools/find``) is sent again on a new connection instead of failing
    the reader's frame with a 502. Writes are never resent; an error after the answer began is
    not retried either (part of it may already have been relayed)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return super().handle_request(request)
        except httpx.RemoteProtocolError as exc:
            if not resendable(request):
                raise
            logger.info("Orthanc closed a kept-alive connection under %s %s (%s): sending it again",
                        request.method, request.url.path, exc)  # fmt: skip
            return super().handle_request(request)


@functools.cache
def orthanc() -> pyorthanc.Orthanc:
    """A shared, thread-safe REST client (an httpx.Client underneath, keep-alive pooled)."""
    return pyorthanc.Orthanc(
        settings.ORTHANC_URL,
        username=settings.ORTHANC_USERNAME or None,
        password=settings.ORTHANC_PASSWORD or None,
        timeout=settings.ORTHANC_TIMEOUT_S,
        transport=StaleConnectionRetry(limits=httpx.Limits(max_connections=32, max_keepalive_connections=16)),
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
