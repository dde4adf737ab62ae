"""Same-origin DICOMweb proxy: the viewer reaches Orthanc only through here.

- checks the user (session with CSRF for writes, or token) and role;
- splits comma-separated ``includefield`` (OHIF sends ``a,b``; Orthanc's DICOMweb 1.7 only
  honours repeated parameters);
- passes the browser's Host through, because Orthanc builds BulkDataURIs from it and the proxy
  serves the same ``/dicom-web`` root, so those URIs point back at the proxy;
- streams both ways in 64 KiB chunks: a 300-instance series is never held in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request

from reviewer.roles import Role, has_role
from reviewer.services.orthanc import orthanc

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
READ_ROLES = (Role.ADMIN, Role.RADIOLOGIST, Role.ANNOTATOR)
WRITE_ROLES = (Role.ADMIN, Role.RADIOLOGIST)  # STOW-RS
FORWARD_REQUEST_HEADERS = ("accept", "content-type", "accept-encoding", "range")
FORWARD_RESPONSE_HEADERS = ("content-encoding", "content-range", "accept-ranges", "etag", "last-modified")


def _authenticate(request: HttpRequest):  # type: ignore[no-untyped-def]
    """Token first (scripts), then session; DRF's SessionAuthentication enforces CSRF."""
    drf_request = Request(request)
    for backend in (TokenAuthentication(), SessionAuthentication()):
        result = backend.authenticate(drf_request)
        if result is not None:
            return result[0]
    return None


def _upstream_params(request: HttpRequest) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for key, values in request.GET.lists():
        for value in values:
            if key.lower() == "includefield":
                params.extend((key, part.strip()) for part in value.split(",") if part.strip())
            else:
                params.append((key, value))
    return params


def _iter_body(request: HttpRequest) -> Iterator[bytes]:
    while chunk := request.read(CHUNK):
        yield chunk


@csrf_exempt  # CSRF is enforced by SessionAuthentication above, not bypassed
def dicomweb_proxy(request: HttpRequest, path: str) -> HttpResponse:
    try:
        user = _authenticate(request)
    except (AuthenticationFailed, PermissionDenied) as exc:
        return JsonResponse({"detail": str(exc.detail)}, status=403)
    if user is None:
        return JsonResponse({"detail": "authentication required"}, status=401)
    writing = request.method not in ("GET", "HEAD", "OPTIONS")
    if not has_role(user, *(WRITE_ROLES if writing else READ_ROLES)):
        return JsonResponse({"detail": "your role may not " + ("store" if writing else "view") + " images"}, status=403)
    if request.method not in ("GET", "HEAD", "POST"):
        return JsonResponse({"detail": f"{request.method} not supported"}, status=405)

    headers = {k: v for k in FORWARD_REQUEST_HEADERS if (v := request.headers.get(k))}
    headers["host"] = request.get_host()
    # pass the browser's encoding wish through exactly (httpx would otherwise ask for gzip and
    # we would forward compressed bytes to a client that never asked for them)
    headers.setdefault("accept-encoding", "identity")
    client = orthanc()
    upstream = client.build_request(
        request.method,
        f"{settings.ORTHANC_URL}{settings.ORTHANC_DICOMWEB_ROOT}/{path}",
        params=_upstream_params(request),
        headers=headers,
        content=_iter_body(request) if writing else None,
    )
    try:
        response = client.send(upstream, stream=True)
    except httpx.HTTPError as exc:
        logger.warning("DICOMweb proxy: Orthanc unreachable: %s", exc)
        return JsonResponse({"detail": "image archive (Orthanc) is unreachable"}, status=502)

    def body() -> Iterator[bytes]:
        try:
            yield from response.iter_raw(CHUNK)
        finally:
            response.close()

    out = StreamingHttpResponse(body(), status=response.status_code, content_type=response.headers.get("content-type"))
    for name in FORWARD_RESPONSE_HEADERS:
        if name in response.headers:
            out[name] = response.headers[name]
    return out
