"""The DICOMweb proxy's upstream side: the request sent to Orthanc and its answer streamed back.

One pooled, keep-alive ``httpx.Client`` per process (``reviewer.integrations.orthanc.orthanc``)
carries every request. Frames, bulk data and rendered images are relayed byte for byte as
Orthanc sends them (``iter_raw``, up to 1 MiB per write, Orthanc's Content-Length kept): a
300-instance series is never held in memory. What a SOP Instance UID addresses never changes,
so those answers may stay in the reader's own browser (``cache_if_immutable``). STOW-RS, up to
``SPINEREVIEW_STOW_MAX_BYTES``, is split into one store per instance and answered per instance
(``reviewer.integrations.stow``: Orthanc answers a partly stored request 400 without naming the
failure).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import httpx
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.cache import patch_cache_control, patch_vary_headers

from reviewer.integrations.dicomweb_prefetch import take
from reviewer.integrations.dicomweb_routes import Kind, Refused, Target

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
# Frames and bulk data pass through in pieces of up to 1 MiB: a typical MR frame (100-500 kB)
# goes out in one write, a large one still never sits whole in memory.
RELAY_CHUNK = 1024 * 1024
FORWARD_REQUEST_HEADERS = ("accept", "content-type", "accept-encoding", "range")
# Content-Length too: the body is relayed byte for byte (``iter_raw``), and a known length spares
# the client chunked framing and lets it size its buffer once (and lets a keep-alive connection
# carry the next request).
FORWARD_RESPONSE_HEADERS = (
    "content-length", "content-encoding", "content-range", "accept-ranges", "etag", "last-modified",
)  # fmt: skip
# Pixel data is asked of Orthanc uncompressed whatever the browser accepts: Orthanc gzips each
# answer whole before sending it, which costs about ten times the transfer it saves (a 320x320
# 16-bit frame: 4 ms as it is, 48 ms gzipped to 76 % of its size, on the 2-core test machine),
# and image data barely compresses. DICOM JSON still goes as the client asked.
UNCOMPRESSED_KINDS = frozenset({Kind.FRAMES, Kind.BULK, Kind.RENDERED})

# Frames asked for "as stored" (``transfer-syntax=*``, what the viewer's image loader sends):
# Orthanc's DICOMweb plugin (1.7) answers 500 for an instance stored big endian or deflated, whose
# frames it cannot hand out as they are. The proxy then asks once more for explicit VR little
# endian, which Orthanc transcodes to and the viewer decodes; every other syntax is served as stored.
ANY_SYNTAX = re.compile(r"transfer-syntax=\*")
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"

# What a stored instance is never changes (its UID names its content): its frames, bulk data,
# rendered images and metadata may stay in the reader's browser for a reading session, and
# ``immutable`` spares even the revalidation of a reload. ``private``: never in a shared cache
# (the metadata is filtered per role); ``Vary`` on the credentials: another user of the same
# browser (a shared workstation) never gets the entry of the one before. Series- and study-level
# answers and searches are not cached: instances can still arrive.
IMMUTABLE_KINDS = frozenset({Kind.FRAMES, Kind.BULK, Kind.RENDERED, Kind.METADATA})
IMMUTABLE_MAX_AGE_S = 3600


def upstream_headers(request: HttpRequest, kind: Kind, *, filtered: bool) -> dict[str, str]:
    """The few request headers Orthanc gets (never ``X-HTTP-Method-Override`` or cookies).

    The browser's Host goes along because Orthanc builds BulkDataURIs from it and the proxy
    serves the same ``/dicom-web`` root."""
    headers = {k: v for k in FORWARD_REQUEST_HEADERS if (v := request.headers.get(k))}
    headers["host"] = request.get_host()
    # pass the browser's encoding wish through exactly (httpx would otherwise ask for gzip and
    # we would forward compressed bytes to a client that never asked for them)
    headers.setdefault("accept-encoding", "identity")
    if filtered:  # rewritten here: plain JSON from Orthanc
        headers["accept"] = "application/dicom+json"
        headers["accept-encoding"] = "identity"
    if kind in UNCOMPRESSED_KINDS:
        headers["accept-encoding"] = "identity"
    return headers


def send(client: httpx.Client, method: str, url: httpx.URL, headers: dict[str, str], kind: Kind) -> httpx.Response:
    """Orthanc's answer, its body not read yet (``stream=True``); ``httpx.HTTPError`` when
    Orthanc cannot be reached. A search or metadata answer asked for while the viewer loaded
    (``dicomweb_prefetch``) is taken from there. Frames asked for as stored that Orthanc cannot
    hand out as they are (500) are asked for once more in explicit VR little endian."""
    if method == "GET" and kind in (Kind.QIDO, Kind.METADATA) and (prefetched := take(url, headers)):
        return prefetched
    response = client.send(client.build_request(method, url, headers=headers), stream=True)
    if kind is Kind.FRAMES and response.status_code == 500 and ANY_SYNTAX.search(headers.get("accept", "")):
        response.close()
        headers = {**headers, "accept": ANY_SYNTAX.sub(f"transfer-syntax={EXPLICIT_LITTLE}", headers["accept"])}
        response = client.send(client.build_request(method, url, headers=headers), stream=True)
    return response


def relay(response: httpx.Response) -> StreamingHttpResponse:
    """Orthanc's answer passed on as it comes, byte for byte, never read whole."""

    def body() -> Iterator[bytes]:
        try:
            yield from response.iter_raw(RELAY_CHUNK)
        finally:
            response.close()

    out = StreamingHttpResponse(body(), status=response.status_code, content_type=response.headers.get("content-type"))
    for name in FORWARD_RESPONSE_HEADERS:
        if name in response.headers:
            out[name] = response.headers[name]
    return out


# Pixel data the viewer's nginx may fetch from Orthanc itself once the proxy has authorised it
# (``accel_redirect``): the bytes then never pass through Python.
ACCEL_KINDS = UNCOMPRESSED_KINDS
ACCEL_HEADER = "X-SpineReview-Accel"


def accel_prefix(request: HttpRequest, method: str, kind: Kind) -> str | None:
    """The internal nginx location to hand this request to, or None to relay it here.

    Only where the deployment says nginx fetches pixel data (``SPINEREVIEW_DICOMWEB_ACCEL``) and
    the request came through that nginx, which sets ``X-SpineReview-Accel`` to the same prefix
    (the app origin, gunicorn without nginx, keeps relaying). A client that sends the header
    itself past nginx gets only an empty answer naming the Orthanc path it asked for."""
    prefix = settings.SPINEREVIEW_DICOMWEB_ACCEL
    if not prefix or method not in ("GET", "HEAD") or kind not in ACCEL_KINDS:
        return None
    return prefix if request.headers.get(ACCEL_HEADER) == prefix else None


def accel_redirect(prefix: str, url: httpx.URL) -> HttpResponse:
    """An empty answer telling nginx to fetch ``url`` (the Orthanc URL rebuilt from the checked
    path) from Orthanc itself: ``X-Accel-Redirect`` to the internal location ``prefix``, which
    adds Orthanc's credentials and relays the bytes over kept-alive connections
    (``ohif-extension/deploy/nginx.conf``). Every check ran before; nginx serves none of this
    without the app's answer."""
    out = HttpResponse(status=200)
    out["X-Accel-Redirect"] = prefix + url.raw_path.decode("ascii")
    out["X-Accel-Buffering"] = "no"
    return out


# nginx's auth subrequest for a frame (``ohif-extension/deploy/nginx.conf``, location
# /_pixel_grant): "may this credential read this frame?". The app runs every check and answers
# 204 (yes) or 403 (not this way: nginx then asks the app for the frame itself, which answers its
# own 401/403/404/400 or hands the frame over with an X-Accel-Redirect). Its yes carries
# ``X-Accel-Expires``: for how long nginx may keep it, per credential and series (never a refusal).
GRANT_HEADER = "X-SpineReview-Pixel-Grant"
GRANT_KINDS = frozenset({Kind.FRAMES})


def grant_asked(request: HttpRequest) -> bool:
    """Whether this is the viewer nginx's grant subrequest: the grant header from the nginx that
    says it fetches pixel data itself (``accel_prefix``'s condition). A client that sends both
    headers past nginx gets a yes or no about its own credential, never pixel data."""
    prefix = settings.SPINEREVIEW_DICOMWEB_ACCEL
    return bool(prefix) and request.headers.get(ACCEL_HEADER) == prefix and request.headers.get(GRANT_HEADER) == "1"


def pixel_grant(*, series_wide: bool) -> HttpResponse:
    """The app's yes to nginx's grant subrequest. ``series_wide``: the same checks would pass for
    every frame of the path's series with this credential (no query, not a series holding one of
    the app's SRs), so nginx may keep the yes ``SPINEREVIEW_PIXEL_AUTH_TTL`` seconds keyed by
    credential and series; otherwise ``X-Accel-Expires: 0`` (nginx keeps nothing)."""
    out = HttpResponse(status=204)
    out["X-Accel-Expires"] = str(settings.SPINEREVIEW_PIXEL_AUTH_TTL if series_wide else 0)
    return out


def grant_refused() -> HttpResponse:
    """No to nginx's grant subrequest, whatever the reason: nginx then asks the app the whole way
    and the client gets the app's own refusal (nginx's auth_request passes on only 401 and 403)."""
    out = HttpResponse(status=403)
    out["X-Accel-Expires"] = "0"
    return out


def cache_if_immutable(out: HttpResponse, target: Target) -> HttpResponse:
    """``private, max-age, immutable`` on a successful answer about one SOP instance."""
    if out.status_code == 200 and target.instance_level and target.route.kind in IMMUTABLE_KINDS:
        patch_cache_control(out, private=True, max_age=IMMUTABLE_MAX_AGE_S, immutable=True)
        patch_vary_headers(out, ("Cookie", "Authorization"))
    return out


def refusal(exc: Refused) -> JsonResponse:
    return JsonResponse({"detail": exc.detail}, status=exc.status)


def unreachable(exc: Exception) -> JsonResponse:
    logger.warning("DICOMweb proxy: Orthanc unreachable: %s", exc)
    return JsonResponse({"detail": "image archive (Orthanc) is unreachable"}, status=502)


# --- STOW-RS -------------------------------------------------------------------------------------


class BodyTooLarge(Exception):
    pass


def _iter_body(request: HttpRequest, limit: int) -> Iterator[bytes]:
    sent = 0
    while chunk := request.read(CHUNK):
        sent += len(chunk)
        if sent > limit:
            raise BodyTooLarge
        yield chunk


def check_stow_body(request: HttpRequest) -> None:
    """``Refused`` unless the body is a multipart/related of DICOM parts with a boundary and a
    Content-Length within ``SPINEREVIEW_STOW_MAX_BYTES``: checked before anything is sent."""
    content_type = request.content_type or ""
    if content_type.lower() != "multipart/related":
        raise Refused(415, "STOW-RS takes multipart/related")
    part_type = (request.content_params or {}).get("type", "application/dicom").lower()
    if part_type != "application/dicom":
        raise Refused(415, "STOW-RS here takes application/dicom parts (type=application/dicom)")
    boundary = (request.content_params or {}).get("boundary", "")
    if not boundary or len(boundary) > 70 or not boundary.isascii():
        raise Refused(400, "multipart/related without a valid boundary")
    length = request.META.get("CONTENT_LENGTH") or ""
    if not length.isdigit():
        raise Refused(411, "STOW-RS needs a Content-Length")
    if int(length) > settings.SPINEREVIEW_STOW_MAX_BYTES:
        raise Refused(413, f"body larger than {settings.SPINEREVIEW_STOW_MAX_BYTES} bytes")


def store_per_instance(
    request: HttpRequest, client: httpx.Client, url: httpx.URL, headers: dict[str, str]
) -> HttpResponse:
    """STOW-RS split into one store per part and answered per instance (``reviewer.integrations.stow``)."""
    from reviewer.integrations.stow import MultipartError, iter_parts, store_parts

    boundary = request.content_params["boundary"].encode("ascii")
    limit = settings.SPINEREVIEW_STOW_MAX_BYTES
    forward = {k: v for k, v in headers.items() if k in ("host", "accept-encoding")}
    try:
        result = store_parts(iter_parts(_iter_body(request, limit), boundary), client=client, url=url, headers=forward)
    except BodyTooLarge:
        return refusal(Refused(413, f"body larger than {limit} bytes"))
    except MultipartError as exc:
        return refusal(Refused(400, f"unreadable multipart/related body: {exc}"))
    if result is None:
        return JsonResponse({"detail": "image archive (Orthanc) is unreachable"}, status=502)
    if not result.stored and not result.failed:
        return refusal(Refused(400, "multipart/related body without parts"))
    return result.response()
