"""Same-origin DICOMweb proxy: the viewer reaches Orthanc only through here.

The proxy holds the app's Orthanc credentials, and Orthanc's REST API (``/system``,
``/tools/*``, ``DELETE /studies/<id>``, ``/patients/<id>/archive``) sits one path segment above
the DICOMweb root. So nothing the client sends is passed on as it came:

- the path is decoded until stable and must be *exactly* one of the DICOMweb routes the viewer
  needs (QIDO, WADO-RS metadata / frames / rendered / bulk data / retrieve, STOW-RS), UIDs in the
  DICOM UID grammar; anything with a ``%``, ``.``/``..`` segment, backslash, NUL, empty segment or
  non-ASCII byte is refused before routing (and the raw request URI, where the server keeps it,
  is checked too, so an encoded separator cannot hide behind the server's decoding);
- each route admits its own methods and roles (whole Part-10 instances only for admins, STOW
  for radiologists and admins); everything else is 404/405/403;
- query parameters are allow-listed per route (QIDO matching keys must be DICOM keywords or
  tags; no ``_method`` or other unknown parameter reaches Orthanc, which would honour it);
- the upstream URL is rebuilt from the validated parts and checked to stay under the DICOMweb root;
- only a few request headers are forwarded (no ``X-HTTP-Method-Override``).

Identities are admin-only (README's role table): for every other role the DICOM JSON of QIDO and
metadata answers is rewritten without the identifying attributes (``IDENTITY_TAGS``, every
private attribute), and QIDO matching on them is refused, so a search cannot be an oracle; a
blinded reader gets neither the rows nor the paths of other readers' box SRs.

The work is split by responsibility: ``dicomweb_routes`` (the allow-list, pure),
``dicomweb_identities`` (identities and blinding, the JSON rewrite) and ``dicomweb_relay``
(Orthanc's side: headers, streaming, cache headers, STOW per instance). This module is the view
that puts them in order: authenticate, resolve, authorise, then relay or rewrite. Behind the
viewer's nginx, pixel data (frames, bulk data, rendered) is not relayed here: the answer, once
every check has passed, is an ``X-Accel-Redirect`` to the Orthanc URL the proxy rebuilt, which
nginx fetches itself (``SPINEREVIEW_DICOMWEB_ACCEL``, ``dicomweb_relay.accel_redirect``). For a
frame nginx first asks the same checks' yes or no alone (its grant subrequest,
``dicomweb_relay.grant_asked``) and may keep a yes that holds for the whole series for
``SPINEREVIEW_PIXEL_AUTH_TTL`` seconds, per credential (``_series_wide``; docs/security.md).

Also: comma-separated ``includefield`` is split (OHIF sends ``a,b``; Orthanc's DICOMweb 1.7 only
honours repeated parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.authentication import CSRFCheck, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request
from rest_framework.settings import api_settings

from reviewer.integrations.dicomweb_access import StudySRs, prime
from reviewer.integrations.dicomweb_identities import (
    IDENTITY_TAGS,
    HiddenSRs,
    filtered_json,
    hidden_srs,
    is_identifying,
)
from reviewer.integrations.dicomweb_relay import (
    GRANT_KINDS,
    IMMUTABLE_MAX_AGE_S,
    accel_prefix,
    accel_redirect,
    cache_if_immutable,
    check_stow_body,
    grant_asked,
    grant_refused,
    pixel_grant,
    refusal,
    relay,
    send,
    store_per_instance,
    unreachable,
    upstream_headers,
)
from reviewer.integrations.dicomweb_routes import (
    IDENTITY_ROLES,
    READ_ROLES,
    Kind,
    Refused,
    Target,
    resolve,
    upstream_params,
    upstream_url,
)
from reviewer.integrations.orthanc import orthanc
from reviewer.roles import has_role

__all__ = [
    "IDENTITY_TAGS",
    "IMMUTABLE_MAX_AGE_S",
    "Kind",
    "Refused",
    "dicomweb_proxy",
    "is_identifying",
    "resolve",
    "upstream_params",
    "upstream_url",
]


def _authenticate(request: HttpRequest) -> tuple[Any, bool]:
    """(user, by_session): the configured token authentication first (scripts), then the
    session. The session's CSRF check is done later on the plain request: DRF's reads
    ``request.POST`` through a parser-less Request, which fails on multipart/related."""
    drf_request = Request(request)
    for backend_class in api_settings.DEFAULT_AUTHENTICATION_CLASSES:
        if issubclass(backend_class, SessionAuthentication):
            continue
        result = backend_class().authenticate(drf_request)
        if result is not None:
            return result[0], False
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_active:
        return user, True
    return None, False


def _csrf_failure(request: HttpRequest) -> str | None:
    """Django's CSRF check on the plain request (the header token; ``request.POST`` of a
    multipart/related body is empty and reads nothing)."""
    check = CSRFCheck(lambda _request: HttpResponse())
    check.process_request(request)
    return check.process_view(request, None, (), {})


_JSON_ACCEPT = ("application/dicom+json", "application/json", "*/*", "application/*")


def _check_json_accept(request: HttpRequest) -> None:
    accept = request.headers.get("accept", "")
    media = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    if media and not any(m in _JSON_ACCEPT for m in media):
        raise Refused(406, "only application/dicom+json is served to your role")


@csrf_exempt  # CSRF is enforced below for session writes, on the plain request
def dicomweb_proxy(request: HttpRequest, path: str) -> HttpResponse:
    """Forward one allow-listed DICOMweb request to Orthanc (see the module docstring); to the
    viewer nginx's grant subrequest for a frame, only the checks' yes or no (``pixel_grant``)."""
    checked = _check(request, path)
    if grant_asked(request):
        if (
            isinstance(checked, HttpResponse)
            or checked.target.route.kind not in GRANT_KINDS
            or checked.method not in ("GET", "HEAD")
        ):
            return grant_refused()
        return pixel_grant(series_wide=_series_wide(request, checked))
    if isinstance(checked, HttpResponse):
        return checked
    target, url, method, kind = checked.target, checked.url, checked.method, checked.target.route.kind
    if prefix := accel_prefix(request, method, kind):  # nginx relays the pixel data itself
        return cache_if_immutable(accel_redirect(prefix, url), target)
    headers = upstream_headers(request, kind, filtered=checked.filtered)
    client = orthanc()
    if kind is Kind.STOW:
        return store_per_instance(request, client, url, headers)
    try:
        response = send(client, method, url, headers, kind)
    except httpx.HTTPError as exc:
        return unreachable(exc)
    if checked.filtered and method == "GET":
        return cache_if_immutable(filtered_json(response, checked.hidden), target)
    return cache_if_immutable(relay(response), target)


@dataclass(frozen=True)
class _Checked:
    """A request that passed every check: what the answer is made from."""

    target: Target
    method: str
    url: httpx.URL
    filtered: bool
    hidden: HiddenSRs
    study_srs: StudySRs


def _check(request: HttpRequest, path: str) -> _Checked | HttpResponse:
    """Every check, in order: authenticate, resolve, authorise; the refusal as the answer."""
    try:
        user, by_session = _authenticate(request)
    except (AuthenticationFailed, PermissionDenied) as exc:
        return JsonResponse({"detail": str(exc.detail)}, status=403)
    if user is None:
        return JsonResponse({"detail": "authentication required"}, status=401)
    raw_uri = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    method = request.method or ""
    try:  # pure: the path's study is needed for one cache read of the roles and the study's SRs
        target: Target | Refused = resolve(path, method, raw_uri)
    except Refused as exc:
        target = exc
    study_srs = prime(user, target.uids[0] if isinstance(target, Target) else None)
    if not has_role(user, *READ_ROLES):
        return JsonResponse({"detail": "your role may not view images"}, status=403)
    identities = has_role(user, *IDENTITY_ROLES)
    try:
        if isinstance(target, Refused):
            raise target
        kind = target.route.kind
        if not has_role(user, *target.route.roles):
            verb = "store" if kind is Kind.STOW else f"fetch {kind.value} of"
            raise Refused(403, f"your role may not {verb} images")
        if not identities and any(is_identifying(t) for t in target.bulk_tags):
            raise Refused(403, "patient identities are admin-only")
        hidden = hidden_srs(user, *target.uids, study_srs or StudySRs())
        if hidden.names_any(target.segments):
            raise Refused(404, "not found")
        params = upstream_params(request, kind, identities=identities)
        filtered = not identities and kind in (Kind.QIDO, Kind.METADATA)
        if filtered:
            _check_json_accept(request)
        if kind is Kind.STOW:
            check_stow_body(request)
            if by_session and (reason := _csrf_failure(request)):
                raise Refused(403, f"CSRF Failed: {reason}")
        url = upstream_url(target.segments, params)
    except Refused as exc:
        return refusal(exc)
    return _Checked(target, method, url, filtered, hidden, study_srs or StudySRs())


def _series_wide(request: HttpRequest, checked: _Checked) -> bool:
    """Whether the checks that passed for this frame pass for every frame of its series with the
    same credential, so that nginx may keep the yes per credential and series: no query (nginx's
    key has none), and a series that holds none of the app's SRs (whose blinding is decided per
    reader, SR and instance: always asked). Roles and credentials are the same for every frame."""
    _study, series_uid, _instance = checked.target.uids
    return (
        not request.META.get("QUERY_STRING")
        and series_uid is not None
        and not checked.study_srs.touched_by(series_uid, None)
    )
