"""The DICOMweb proxy's allow-list: which paths, methods, roles and query parameters may reach
Orthanc, and the upstream URL rebuilt from what passed.

Orthanc's REST API (``/system``, ``/tools/*``, ``DELETE /studies/<id>``) sits one path segment
above the DICOMweb root, so nothing here is passed on as it came: the path is decoded until
stable and must be *exactly* one of the routes below (UIDs in the DICOM UID grammar), query
parameters are allow-listed per route, and the upstream URL is rebuilt from the validated parts
and checked to stay under the DICOMweb root. Pure functions of the request: no database, no
Orthanc (``tests/security/test_proxy_grammar.py`` runs them alone).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote, unquote, urlsplit

import httpx
from django.conf import settings
from django.http import HttpRequest
from pydicom.datadict import tag_for_keyword

from reviewer.integrations.dicomweb_identities import is_identifying
from reviewer.roles import Role

READ_ROLES = (Role.ADMIN, Role.RADIOLOGIST, Role.ANNOTATOR)
WRITE_ROLES = (Role.ADMIN, Role.RADIOLOGIST)  # STOW-RS
IDENTITY_ROLES = (Role.ADMIN,)  # who sees patient identities (README: admin-only)
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


def is_uid(text: str) -> bool:
    """Whether ``text`` is a UID the routes accept (the DICOM UID grammar, at most 64 characters)."""
    return len(text) <= MAX_UID and re.fullmatch(_UID, text) is not None


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
    """A resolved request: its route, its validated segments and the tags of a bulk data path."""

    route: Route
    segments: tuple[str, ...]
    bulk_tags: tuple[int, ...] = ()

    @property
    def uids(self) -> tuple[str | None, str | None, str | None]:
        """(study, series, instance) UIDs the path names, ``None`` past its depth."""
        s = self.segments
        study = s[1] if len(s) > 1 and s[0] == "studies" else None
        series = s[3] if study and len(s) > 3 and s[2] == "series" else None
        instance = s[5] if series and len(s) > 5 and s[4] == "instances" else None
        return study, series, instance

    @property
    def instance_level(self) -> bool:
        """Whether the path is under one SOP instance (``.../instances/<uid>/...``): what its UID
        names never changes."""
        return len(self.segments) > 5 and self.segments[4] == "instances"


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
