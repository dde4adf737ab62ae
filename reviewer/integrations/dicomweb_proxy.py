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
private attribute), and QIDO matching on them is refused, so a search cannot be an oracle.

Also: comma-separated ``includefield`` is split (OHIF sends ``a,b``; Orthanc's DICOMweb 1.7 only
honours repeated parameters); the browser's Host is passed through, because Orthanc builds
BulkDataURIs from it and the proxy serves the same ``/dicom-web`` root; frames and bulk data
stream in 64 KiB chunks (a 300-instance series is never held in memory); STOW, up to
``SPINEREVIEW_STOW_MAX_BYTES``, is split into one store per instance and answered per instance
(``reviewer.integrations.stow``: Orthanc answers a partly stored request 400 without naming the failure).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote, unquote, urlsplit

import httpx
from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.csrf import csrf_exempt
from pydicom.datadict import tag_for_keyword
from rest_framework.authentication import CSRFCheck, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework.request import Request
from rest_framework.settings import api_settings

from reviewer.integrations.orthanc import orthanc
from reviewer.models import StructuredReport
from reviewer.roles import Role, has_role
from reviewer.selectors import reader_srs_hidden_from

logger = logging.getLogger(__name__)

CHUNK = 64 * 1024
# Frames and bulk data pass through in pieces of up to 1 MiB: a typical MR frame (100-500 kB)
# goes out in one write, a large one still never sits whole in memory.
RELAY_CHUNK = 1024 * 1024
READ_ROLES = (Role.ADMIN, Role.RADIOLOGIST, Role.ANNOTATOR)
WRITE_ROLES = (Role.ADMIN, Role.RADIOLOGIST)  # STOW-RS
IDENTITY_ROLES = (Role.ADMIN,)  # who sees patient identities (README: admin-only)
FORWARD_REQUEST_HEADERS = ("accept", "content-type", "accept-encoding", "range")
# Content-Length too: the body is relayed byte for byte (``iter_raw``), and a known length spares
# the client chunked framing and lets it size its buffer once.
FORWARD_RESPONSE_HEADERS = (
    "content-length", "content-encoding", "content-range", "accept-ranges", "etag", "last-modified",
)  # fmt: skip
MAX_PATH = 400  # a frame URL with three 64-character UIDs and a frame list is ~250
MAX_UID = 64
MAX_PARAM_VALUE = 256


class Kind(StrEnum):
    QIDO = "search"
    METADATA = "metadata"
    RETRIEVE = "retrieve"  # whole Part-10 instances: every header, identities included
    FRAMES = "frames"
    RENDERED = "rendered"
    BULK = "bulk data"
    STOW = "store"


@dataclass(frozen=True)
class Route:
    kind: Kind
    methods: frozenset[str]
    roles: tuple[Role, ...]


_READ = frozenset({"GET", "HEAD"})
ROUTES: dict[Kind, Route] = {
    Kind.QIDO: Route(Kind.QIDO, _READ, READ_ROLES),
    Kind.METADATA: Route(Kind.METADATA, _READ, READ_ROLES),
    Kind.RETRIEVE: Route(Kind.RETRIEVE, _READ, IDENTITY_ROLES),
    Kind.FRAMES: Route(Kind.FRAMES, _READ, READ_ROLES),
    Kind.RENDERED: Route(Kind.RENDERED, _READ, READ_ROLES),
    Kind.BULK: Route(Kind.BULK, _READ, READ_ROLES),
    Kind.STOW: Route(Kind.STOW, frozenset({"POST"}), WRITE_ROLES),
}

_UID = r"\d+(?:\.\d+)*"
_S = rf"studies/(?P<study>{_UID})"
_SE = rf"{_S}/series/(?P<series>{_UID})"
_I = rf"{_SE}/instances/(?P<instance>{_UID})"
_TAG = r"[0-9A-Fa-f]{8}"
# Orthanc's BulkDataURIs: .../bulk/<tag>[/<item>/<tag>...] (a path into sequences)
_PATTERNS: list[tuple[re.Pattern[str], frozenset[Kind]]] = [
    (re.compile(p), frozenset(kinds))
    for p, kinds in [
        (r"studies", {Kind.QIDO, Kind.STOW}),
        (r"series", {Kind.QIDO}),
        (r"instances", {Kind.QIDO}),
        (_S, {Kind.RETRIEVE, Kind.STOW}),
        (rf"{_S}/metadata", {Kind.METADATA}),
        (rf"{_S}/rendered", {Kind.RENDERED}),
        (rf"{_S}/series", {Kind.QIDO}),
        (rf"{_S}/instances", {Kind.QIDO}),
        (_SE, {Kind.RETRIEVE}),
        (rf"{_SE}/metadata", {Kind.METADATA}),
        (rf"{_SE}/rendered", {Kind.RENDERED}),
        (rf"{_SE}/instances", {Kind.QIDO}),
        (_I, {Kind.RETRIEVE}),
        (rf"{_I}/metadata", {Kind.METADATA}),
        (rf"{_I}/rendered", {Kind.RENDERED}),
        (rf"{_I}/frames/(?P<frames>[1-9]\d{{0,5}}(?:,[1-9]\d{{0,5}}){{0,999}})", {Kind.FRAMES}),
        (rf"{_I}/frames/(?P<frames>[1-9]\d{{0,5}})/rendered", {Kind.RENDERED}),
        (rf"{_I}/bulk/(?P<bulk>{_TAG}(?:/\d{{1,6}}/{_TAG}){{0,8}})", {Kind.BULK}),
    ]
]

# Basic-profile (DICOM PS3.15 Annex E) attributes that identify the patient, the visit or the
# people involved. Kept on purpose: UIDs (the viewer needs them), study/series dates and
# descriptions (the worklist shows them to every role), and the patient characteristics a reader
# needs (sex, age, size, weight). Group 0010 (patient) is removed whole except those.
_PATIENT_CHARACTERISTICS = frozenset({0x00100040, 0x00101010, 0x00101020, 0x00101030})
IDENTITY_TAGS = frozenset(
    {
        0x00080050,  # AccessionNumber
        0x00080051,  # IssuerOfAccessionNumberSequence
        0x00080080,  # InstitutionName
        0x00080081,  # InstitutionAddress
        0x00080082,  # InstitutionCodeSequence
        0x00080090,  # ReferringPhysicianName
        0x00080092,  # ReferringPhysicianAddress
        0x00080094,  # ReferringPhysicianTelephoneNumbers
        0x00080096,  # ReferringPhysicianIdentificationSequence
        0x00081010,  # StationName
        0x00081040,  # InstitutionalDepartmentName
        0x00081048,  # PhysiciansOfRecord
        0x00081049,  # PhysiciansOfRecordIdentificationSequence
        0x00081050,  # PerformingPhysicianName
        0x00081052,  # PerformingPhysicianIdentificationSequence
        0x00081060,  # NameOfPhysiciansReadingStudy
        0x00081062,  # PhysiciansReadingStudyIdentificationSequence
        0x00081070,  # OperatorsName
        0x00081072,  # OperatorIdentificationSequence
        0x00081080,  # AdmittingDiagnosesDescription
        0x00081120,  # ReferencedPatientSequence
        0x00181000,  # DeviceSerialNumber
        0x00200010,  # StudyID
        0x00321032,  # RequestingPhysician
        0x00321033,  # RequestingService
        0x00324000,  # StudyComments
        0x00380010,  # AdmissionID
        0x00380300,  # CurrentPatientLocation
        0x00380400,  # PatientInstitutionResidence
        0x00400006,  # ScheduledPerformingPhysicianName
        0x00400009,  # ScheduledProcedureStepID
        0x00400241,  # PerformedStationAETitle
        0x00400242,  # PerformedStationName
        0x00400243,  # PerformedLocation
        0x00400253,  # PerformedProcedureStepID
        0x00400275,  # RequestAttributesSequence
        0x00401001,  # RequestedProcedureID
        0x00402016,  # PlacerOrderNumberImagingServiceRequest
        0x00402017,  # FillerOrderNumberImagingServiceRequest
        0x0040A075,  # VerifyingObserverName
        0x0040A123,  # PersonName
        0x00700084,  # ContentCreatorName
    }
)


def is_identifying(tag: int) -> bool:
    """Whether a non-admin may not see this attribute: identity attributes and private ones
    (private attributes are vendor-defined and often carry names or ids)."""
    group = tag >> 16
    if group % 2 == 1:
        return True
    if group == 0x0010:
        return tag not in _PATIENT_CHARACTERISTICS
    return tag in IDENTITY_TAGS


def strip_identities(node: object) -> object:
    """DICOM JSON (a dataset or a list of datasets) without identifying attributes, recursing
    into sequence items."""
    if isinstance(node, list):
        return [strip_identities(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, element in node.items():
        try:
            tag = int(key, 16) if len(key) == 8 else None
        except ValueError:
            tag = None
        if tag is not None and is_identifying(tag):
            continue
        if tag is not None and isinstance(element, dict) and element.get("vr") == "SQ" and "Value" in element:
            element = {**element, "Value": [strip_identities(item) for item in element["Value"]]}
        out[key] = element
    return out


class Refused(Exception):
    """A request the proxy will not forward; becomes a JSON error answer."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


def fully_decoded(text: str) -> str:
    """Percent-decode until nothing changes (``%252e`` → ``%2e`` → ``.``)."""
    for _ in range(10):
        decoded = unquote(text)
        if decoded == text:
            return text
        text = decoded
    raise Refused(400, "path is encoded too many times")


def check_path(path: str, raw_uri: str | None = None) -> list[str]:
    """The path's segments, or ``Refused``: the first gate, before any route is matched.

    ``path`` is what the server decoded once; ``raw_uri`` the request line's target where the
    server keeps it (gunicorn ``RAW_URI``, uWSGI/mod_wsgi ``REQUEST_URI``). No legitimate
    DICOMweb path of ours contains a ``%`` (UIDs are digits and dots), so any encoding left over
    (``..%2f``, ``%252e``) or in the raw path is refused rather than interpreted."""
    if raw_uri is not None:
        raw_path = urlsplit(raw_uri).path
        if "%" in raw_path or "\\" in raw_path:
            raise Refused(400, "percent-encoded or backslash characters in the path")
    if len(path) > MAX_PATH:
        raise Refused(414, "path too long")
    if fully_decoded(path) != path:
        raise Refused(400, "percent-encoded characters in the path")
    if not path.isascii() or not path.isprintable():
        raise Refused(400, "non-ASCII or control characters in the path")
    if "\\" in path:
        raise Refused(400, "backslash in the path")
    segments = path.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise Refused(400, "empty, '.' or '..' path segment")
    return segments


@dataclass(frozen=True)
class Target:
    route: Route
    segments: tuple[str, ...]
    bulk_tags: tuple[int, ...] = ()


def resolve(path: str, method: str, raw_uri: str | None = None) -> Target:
    """The route a request asks for (``Refused`` 400/404/405 otherwise)."""
    segments = check_path(path, raw_uri)
    joined = "/".join(segments)
    for pattern, kinds in _PATTERNS:
        match = pattern.fullmatch(joined)
        if not match:
            continue
        groups = match.groupdict()
        for name in ("study", "series", "instance"):
            if groups.get(name) and len(groups[name]) > MAX_UID:
                raise Refused(400, f"{name} UID longer than {MAX_UID} characters")
        for kind in kinds:
            if method in ROUTES[kind].methods:
                bulk = groups.get("bulk") or ""
                tags = tuple(int(part, 16) for i, part in enumerate(bulk.split("/")) if bulk and i % 2 == 0)
                return Target(ROUTES[kind], tuple(segments), tags)
        allowed = sorted({m for kind in kinds for m in ROUTES[kind].methods})
        raise Refused(405, f"{method} not allowed here (allowed: {', '.join(allowed)})")
    raise Refused(404, "not a DICOMweb route this proxy serves")


_PATH_ELEMENT = re.compile(r"[0-9A-Fa-f]{8}|[A-Za-z][A-Za-z0-9]{0,63}")
_NUMBER = re.compile(r"\d{1,7}")
_RENDER_VALUE = re.compile(r"[0-9.,\-]{1,64}")


def attribute_tags(path: str) -> list[int]:
    """Tags of a QIDO attribute path (``PatientName``, ``00100010``,
    ``ReferencedStudySequence.ReferencedSOPInstanceUID``); ``Refused`` if any part is neither a
    DICOM keyword nor a tag."""
    tags = []
    for element in path.split("."):
        if not _PATH_ELEMENT.fullmatch(element):
            raise Refused(400, f"unknown query parameter {path!r}")
        tag = int(element, 16) if re.fullmatch(_TAG, element) else tag_for_keyword(element)
        if tag is None:
            raise Refused(400, f"unknown query parameter {path!r}")
        tags.append(tag)
    return tags


def upstream_params(request: HttpRequest, kind: Kind, *, identities: bool) -> list[tuple[str, str]]:
    """The allow-listed query of a request, ready for Orthanc (``includefield`` split)."""
    params: list[tuple[str, str]] = []
    for key, values in request.GET.lists():
        lowered = key.lower()
        for value in values:
            if len(value) > MAX_PARAM_VALUE or not value.isprintable() or any(c in value for c in "&;#"):
                raise Refused(400, f"query parameter {key!r} has an invalid value")
        if kind is Kind.RENDERED and lowered in ("viewport", "quality", "window"):
            if len(values) != 1 or not _RENDER_VALUE.fullmatch(values[0]):
                raise Refused(400, f"invalid {key}")
            params.append((lowered, values[0]))
            continue
        if kind is not Kind.QIDO:
            raise Refused(400, f"query parameter {key!r} is not allowed on {kind.value}")
        if lowered == "includefield":
            for value in values:
                for part in (p.strip() for p in value.split(",")):
                    if part and part != "all":
                        attribute_tags(part)
                    if part:
                        params.append(("includefield", part))
        elif lowered in ("limit", "offset"):
            if len(values) != 1 or not _NUMBER.fullmatch(values[0]):
                raise Refused(400, f"{key} must be a number")
            params.append((lowered, values[0]))
        elif lowered == "fuzzymatching":
            if len(values) != 1 or values[0] not in ("true", "false"):
                raise Refused(400, "fuzzymatching must be true or false")
            params.append((lowered, values[0]))
        else:
            tags = attribute_tags(key)
            if len(values) != 1:
                raise Refused(400, f"matching key {key!r} given more than once")
            if not identities and any(is_identifying(t) for t in tags):
                raise Refused(403, f"your role may not search on {key} (patient identities are admin-only)")
            params.append((key, values[0]))
    return params


# Orthanc (1.10) matches query values as sent, without percent-decoding them: DICOM wildcards
# and the person-name separator must arrive as themselves (``PatientName=DOE^J*``), not as
# ``%5E``/``%2A`` (which match nothing). Values are allow-listed above (no ``&``, ``;``, ``#``).
_QUERY_SAFE = "*^,-._~:/@!$'()+=?"


def upstream_url(segments: tuple[str, ...], params: list[tuple[str, str]]) -> httpx.URL:
    """Orthanc's URL for validated segments and parameters, checked to stay under the
    DICOMweb root."""
    base = httpx.URL(settings.ORTHANC_URL)
    root = base.path.rstrip("/") + settings.ORTHANC_DICOMWEB_ROOT
    path = root + "/" + "/".join(segments)
    query = "&".join(f"{key}={quote(value, safe=_QUERY_SAFE)}" for key, value in params)
    url = base.copy_with(raw_path=(path + ("?" + query if query else "")).encode("ascii"))
    if url.path != path or not url.path.startswith(root + "/") or (url.host, url.port) != (base.host, base.port):
        raise Refused(400, "path leaves the DICOMweb root")
    return url


def _authenticate(request: HttpRequest):
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


class BodyTooLarge(Exception):
    pass


def _iter_body(request: HttpRequest, limit: int) -> Iterator[bytes]:
    sent = 0
    while chunk := request.read(CHUNK):
        sent += len(chunk)
        if sent > limit:
            raise BodyTooLarge
        yield chunk


def _check_stow_body(request: HttpRequest) -> None:
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


_JSON_ACCEPT = ("application/dicom+json", "application/json", "*/*", "application/*")


def _check_json_accept(request: HttpRequest) -> None:
    accept = request.headers.get("accept", "")
    media = [part.split(";")[0].strip().lower() for part in accept.split(",") if part.strip()]
    if media and not any(m in _JSON_ACCEPT for m in media):
        raise Refused(406, "only application/dicom+json is served to your role")


def _refusal(exc: Refused) -> JsonResponse:
    return JsonResponse({"detail": exc.detail}, status=exc.status)


@csrf_exempt  # CSRF is enforced below for session writes, on the plain request
def dicomweb_proxy(request: HttpRequest, path: str) -> HttpResponse:
    """Forward one allow-listed DICOMweb request to Orthanc (see the module docstring)."""
    try:
        user, by_session = _authenticate(request)
    except (AuthenticationFailed, PermissionDenied) as exc:
        return JsonResponse({"detail": str(exc.detail)}, status=403)
    if user is None:
        return JsonResponse({"detail": "authentication required"}, status=401)
    if not has_role(user, *READ_ROLES):
        return JsonResponse({"detail": "your role may not view images"}, status=403)
    raw_uri = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
    identities = has_role(user, *IDENTITY_ROLES)
    try:
        target = resolve(path, request.method or "", raw_uri)
        kind = target.route.kind
        if not has_role(user, *target.route.roles):
            verb = "store" if kind is Kind.STOW else f"fetch {kind.value} of"
            raise Refused(403, f"your role may not {verb} images")
        if not identities and any(is_identifying(t) for t in target.bulk_tags):
            raise Refused(403, "patient identities are admin-only")
        hidden = _hidden_srs(user, target.segments)
        if any(segment in hidden.series or segment in hidden.sops for segment in target.segments):
            raise Refused(404, "not found")
        params = upstream_params(request, kind, identities=identities)
        filtered = not identities and kind in (Kind.QIDO, Kind.METADATA)
        if filtered:
            _check_json_accept(request)
        if kind is Kind.STOW:
            _check_stow_body(request)
            if by_session and (reason := _csrf_failure(request)):
                raise Refused(403, f"CSRF Failed: {reason}")
        url = upstream_url(target.segments, params)
    except Refused as exc:
        return _refusal(exc)

    headers = {k: v for k in FORWARD_REQUEST_HEADERS if (v := request.headers.get(k))}
    headers["host"] = request.get_host()
    # pass the browser's encoding wish through exactly (httpx would otherwise ask for gzip and
    # we would forward compressed bytes to a client that never asked for them)
    headers.setdefault("accept-encoding", "identity")
    if filtered:  # rewritten here: plain JSON from Orthanc
        headers["accept"] = "application/dicom+json"
        headers["accept-encoding"] = "identity"
    client = orthanc()
    if kind is Kind.STOW:
        return _store_per_instance(request, client, url, headers)
    upstream = client.build_request(request.method or "GET", url, headers=headers)
    try:
        response = client.send(upstream, stream=True)
        if kind is Kind.FRAMES and response.status_code == 500 and ANY_SYNTAX.search(headers.get("accept", "")):
            response.close()
            headers["accept"] = ANY_SYNTAX.sub(f"transfer-syntax={EXPLICIT_LITTLE}", headers["accept"])
            response = client.send(client.build_request(request.method or "GET", url, headers=headers), stream=True)
    except httpx.HTTPError as exc:
        logger.warning("DICOMweb proxy: Orthanc unreachable: %s", exc)
        return JsonResponse({"detail": "image archive (Orthanc) is unreachable"}, status=502)

    if filtered and request.method == "GET":
        return _cache_if_immutable(_filtered_json(response, hidden), target)

    def body() -> Iterator[bytes]:
        try:
            yield from response.iter_raw(RELAY_CHUNK)
        finally:
            response.close()

    out = StreamingHttpResponse(body(), status=response.status_code, content_type=response.headers.get("content-type"))
    for name in FORWARD_RESPONSE_HEADERS:
        if name in response.headers:
            out[name] = response.headers[name]
    return _cache_if_immutable(out, target)


# Frames asked for "as stored" (``transfer-syntax=*``, what the viewer's image loader sends): Orthanc's
# DICOMweb plugin (1.7) answers 500 for an instance stored big endian or deflated, whose frames it
# cannot hand out as they are. The proxy then asks once more for explicit VR little endian, which
# Orthanc transcodes to and the viewer decodes; every other syntax is served as stored.
ANY_SYNTAX = re.compile(r"transfer-syntax=\*")
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"

# What a stored instance is never changes (its UID names its content): its frames, bulk data,
# rendered images and metadata may stay in the reader's browser for a reading session, so a
# reload or a second look at the study costs no round trip. ``private``: never in a shared cache
# (the metadata is filtered per role); ``Vary`` on the credentials: another user of the same
# browser (a shared workstation) never gets the entry of the one before. Series- and study-level
# answers are not cached: instances can still arrive.
IMMUTABLE_KINDS = frozenset({Kind.FRAMES, Kind.BULK, Kind.RENDERED, Kind.METADATA})
IMMUTABLE_MAX_AGE_S = 3600


def _cache_if_immutable(out: HttpResponse, target: Target) -> HttpResponse:
    instance_level = len(target.segments) > 5 and target.segments[4] == "instances"
    if out.status_code == 200 and instance_level and target.route.kind in IMMUTABLE_KINDS:
        patch_cache_control(out, private=True, max_age=IMMUTABLE_MAX_AGE_S)
        patch_vary_headers(out, ("Cookie", "Authorization"))
    return out


def _store_per_instance(
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
        return _refusal(Refused(413, f"body larger than {limit} bytes"))
    except MultipartError as exc:
        return _refusal(Refused(400, f"unreadable multipart/related body: {exc}"))
    if result is None:
        return JsonResponse({"detail": "image archive (Orthanc) is unreachable"}, status=502)
    if not result.stored and not result.failed:
        return _refusal(Refused(400, "multipart/related body without parts"))
    return result.response()


@dataclass(frozen=True)
class HiddenSRs:
    """Other readers' box SRs a blinded reader may not see (``selectors.reader_srs_hidden_from``)."""

    series: frozenset[str] = frozenset()
    sops: frozenset[str] = frozenset()

    def covers(self, dataset: object) -> bool:
        """Whether a DICOM JSON dataset (a QIDO row or a metadata item) is one of them."""
        if not isinstance(dataset, dict):
            return False

        def first(tag: str) -> object:
            value = dataset.get(tag, {}).get("Value") if isinstance(dataset.get(tag), dict) else None
            return value[0] if value else None

        return first("0020000E") in self.series or first("00080018") in self.sops


def _hidden_srs(user, segments: tuple[str, ...]) -> HiddenSRs:
    study_uid = segments[1] if len(segments) > 1 and segments[0] == "studies" else None
    series_uid = segments[3] if study_uid and len(segments) > 3 and segments[2] == "series" else None
    instance_uid = segments[5] if series_uid and len(segments) > 5 and segments[4] == "instances" else None
    if series_uid and not _names_a_report_sr(study_uid, series_uid, instance_uid):  # type: ignore[arg-type]
        return HiddenSRs()
    series, sops = reader_srs_hidden_from(user, study_uid)
    return HiddenSRs(series, sops)


def _names_a_report_sr(study_uid: str, series_uid: str, instance_uid: str | None) -> bool:
    """Whether a series-or-instance path of ``study_uid`` can touch one of the app's SRs.

    Every hidden SR is a ``StructuredReport`` of the path's study, so an image series (no SR in
    it, nor the instance named) has nothing to hide: one indexed lookup instead of the blinding
    query, on the path every frame and series metadata request takes."""
    in_path = Q(series_instance_uid=series_uid)
    if instance_uid:
        in_path |= Q(sop_instance_uid=instance_uid)
    return StructuredReport.objects.filter(in_path, study__study_uid=study_uid).exists()


def _filtered_json(response: httpx.Response, hidden: HiddenSRs = HiddenSRs()) -> HttpResponse:
    """Orthanc's DICOM JSON without identities, and without the rows of SRs the reader is
    blinded to. Read whole (QIDO and metadata answers are small next to pixel data),
    rewritten, and streamed back out in chunks."""
    try:
        raw = response.read()
    finally:
        response.close()
    content_type = response.headers.get("content-type", "")
    if "json" not in content_type.lower():
        if response.is_success and raw:
            logger.warning("DICOMweb proxy: expected DICOM JSON from Orthanc, got %s", content_type)
            return JsonResponse({"detail": "unexpected answer from the image archive"}, status=502)
        return HttpResponse(raw, status=response.status_code, content_type=content_type or None)
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        return JsonResponse({"detail": "unexpected answer from the image archive"}, status=502)
    if data is None:
        return HttpResponse(b"", status=response.status_code, content_type=content_type)
    if response.is_success:
        if isinstance(data, list):
            data = [row for row in data if not hidden.covers(row)]
        data = strip_identities(data)
    text = json.dumps(data, separators=(",", ":")).encode()

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(text), CHUNK):
            yield text[start : start + CHUNK]

    out = StreamingHttpResponse(chunks(), status=response.status_code, content_type="application/dicom+json")
    out["Content-Length"] = str(len(text))
    return out
