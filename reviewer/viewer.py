"""The viewer origin: OHIF's prebuilt ``dist/`` (untouched) at the root of its own origin.

Why a separate origin: OHIF 3.13.2 compiles the public path ``/`` into its bundles and CSS, so it
cannot live under a sub-path of the app (docs/viewer.md). In development the viewer origin is a
second host name of the *same* Django process (``SPINEREVIEW_VIEWER_ORIGIN``, default
``http://viewer.localhost:8000``; any ``*.localhost`` name resolves to loopback in browsers):
``ViewerHostMiddleware`` switches requests for that host to the viewer URLconf
(``settings.VIEWER_URLCONF``, ``webapp/viewer_urls.py``), which serves this module's views:

- ``/app-config.js``, rendered here (data source = the same-origin DICOMweb proxy, our extension
  and mode URLs, tour off);
- ``/spinereview/*``, our extension bundle (``ohif-extension/dist``);
- ``/api/``, ``/dicom-web/``, ``/accounts/``, ``/admin/`` — the app's own URLs, so the session
  cookie and CSRF token of the viewer origin reach our API calls;
- everything else from OHIF's ``dist/`` with the SPA fallback to ``index.html``; logged-in users
  only (others are sent to the login page of the viewer origin).

In deployment nginx serves ``dist/`` on a path-free vhost and asks ``/viewer/auth/`` whether the
session is logged in (``ohif-extension/deploy/nginx.conf``).

A session cookie is per host, so the app origin hands the logged-in user over to the viewer origin
with a signed, 60-second, single-use token (``open_study`` -> ``handoff``) instead of asking for a
second login. The token travels in the URL *fragment*, which browsers never send to a server, so
it is in no access log, proxy log or ``Referer``; a small page on the viewer origin reads it, drops
it from the address bar and history, and POSTs it (with the viewer origin's CSRF token). The token
is bound to the browser's User-Agent, its nonce is consumed on first use
(``reviewer.services.access``), and a browser already signed in to the viewer as someone else is
asked before its session is switched.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.crypto import constant_time_compare
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from reviewer.integrations.dicomweb_prefetch import prefetch_study
from reviewer.integrations.dicomweb_routes import READ_ROLES
from reviewer.models import Study
from reviewer.roles import has_role
from reviewer.services import access
from reviewer.services.access import HANDOFF_MAX_AGE_S, HANDOFF_SALT  # noqa: F401  (re-exported)
from reviewer.viewer_config import config_script
from reviewer.viewer_files import serve_file

logger = logging.getLogger(__name__)
HANDOFF_CONFIRM_S = 300  # how long the "switch user?" question stays answerable
_PENDING = "spinereview_viewer_handoff_pending"
MODE_ROUTE = "spine-review"  # routeName of our mode (ohif-extension/src/mode)
EXTENSION_PREFIX = "spinereview"  # URL folder of our bundle on the viewer origin
_HASHED = re.compile(r"\.[0-9a-f]{16,}\.(js|css|wasm)$|^[0-9a-f]{16}\.(wasm|woff2?)$")


def viewer_host() -> str:
    return urlsplit(settings.VIEWER_ORIGIN).netloc.lower()


class ViewerHostMiddleware:
    """Requests whose Host is the viewer origin's use the viewer URLconf (``settings.VIEWER_URLCONF``,
    composed in ``webapp/``: the reviewer package does not import the project's URLconf)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.get_host().lower() == viewer_host():
            request.urlconf = settings.VIEWER_URLCONF
        return self.get_response(request)


# --- app origin --------------------------------------------------------------------------------


def viewer_url(study_uid: str) -> str:
    """The viewer URL that opens one study in our mode (relative to the viewer origin)."""
    return f"/{MODE_ROUTE}?" + urlencode({"StudyInstanceUIDs": study_uid})


@login_required
@require_GET
def open_study(request: HttpRequest, study_uid: str) -> HttpResponse:
    """``/viewer/open/<study_uid>/`` on the app origin: hand the user over to the viewer origin.

    The token goes in the fragment (``#...``): never sent to a server, so never logged."""
    get_object_or_404(Study, study_uid=study_uid)
    token = access.issue_handoff_token(user=request.user, user_agent=request.headers.get("User-Agent", ""))
    query = urlencode({"next": viewer_url(study_uid)})
    response = redirect(f"{settings.VIEWER_ORIGIN}/viewer/handoff/?{query}#{token}")
    response["Cache-Control"] = "no-store"
    return response


# --- viewer origin -----------------------------------------------------------------------------


def _handoff_target(value: str) -> str | None:
    """``next``: a path on this origin, else None."""
    if not value.startswith("/") or not url_has_allowed_host_and_scheme(value, allowed_hosts=None):
        return None
    return value


@never_cache
@require_http_methods(["GET", "POST"])
def handoff(request: HttpRequest) -> HttpResponse:
    """GET: the page that POSTs the fragment's token. POST: redeem it, then go to ``next``.

    A browser signed in here as another user is not switched silently: it is asked
    (``handoff_confirm``). Any refusal (forged, expired, replayed, issued to another browser)
    ends at this origin's ordinary login page with the reason shown.
    """
    source = request.POST if request.method == "POST" else request.GET
    target = _handoff_target(source.get("next", "/"))
    if target is None:
        return HttpResponseBadRequest("next must be a path on this origin")
    if request.method == "GET":
        return render(request, "reviewer/viewer_handoff.html", {"next": target})
    try:
        grant = access.redeem_handoff_token(
            token=request.POST.get("token", ""), user_agent=request.headers.get("User-Agent", "")
        )
    except access.HandoffRefused as exc:
        logger.warning("viewer hand-off refused: %s", exc)
        messages.error(request, f"Please sign in: {exc}.")
        return redirect_to_login(target)
    user = grant.user
    if request.user.is_authenticated and request.user.pk != user.pk:
        request.session[_PENDING] = {"u": user.pk, "h": user.get_session_auth_hash(), "next": target,
                                     "t": time.time()}  # fmt: skip
        context = {"current": request.user.get_username(), "incoming": user.get_username(), "next": target}
        return render(request, "reviewer/viewer_handoff_confirm.html", context, status=409)
    if not request.user.is_authenticated:
        login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
    return redirect(target)


@never_cache
@require_POST
def handoff_confirm(request: HttpRequest) -> HttpResponse:
    """The answer to "switch user?": ``choice=switch`` signs the hand-off's user in, anything
    else keeps the current session. Either way the study opens."""
    pending = request.session.pop(_PENDING, None)
    if not isinstance(pending, dict) or time.time() - pending.get("t", 0) > HANDOFF_CONFIRM_S:
        messages.error(request, "That question has expired: open the study again from the worklist.")
        return redirect_to_login("/")
    target = _handoff_target(str(pending.get("next", "/"))) or "/"
    if request.POST.get("choice") != "switch":
        return redirect(target)
    user = get_user_model().objects.filter(pk=pending.get("u"), is_active=True).first()
    if user is None or not constant_time_compare(user.get_session_auth_hash(), str(pending.get("h"))):
        return redirect_to_login(target)
    login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
    return redirect(target)


def auth_check(request: HttpRequest) -> HttpResponse:
    """nginx ``auth_request`` target in deployment: 204 when logged in, 401 otherwise."""
    return HttpResponse(status=204 if request.user.is_authenticated else 401)


@lru_cache(maxsize=64)
def _digest(path: Path, mtime_ns: int, size: int) -> str:
    """A file's content digest, computed once per version of the file (its mtime and size)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def file_version(path: Path) -> str:
    """The version stamp of one of our extension's entry files ("" when it is missing)."""
    try:
        stat = path.stat()
    except OSError:
        return ""
    return _digest(path, stat.st_mtime_ns, stat.st_size)


def _extension_urls(origin: str = "") -> tuple[str, str]:
    """Our entry modules' URLs, each stamped with its content digest (``?v=``): their names never
    change, so the stamp is what lets the browser keep them for good (``extension_file``) and
    still never run a stale build."""
    base = f"{origin}/{EXTENSION_PREFIX}"
    folder = Path(settings.VIEWER_EXTENSION_DIST)
    urls = []
    for name in ("extension.js", "mode.js"):
        version = file_version(folder / name)
        urls.append(f"{base}/{name}?v={version}" if version else f"{base}/{name}")
    return urls[0], urls[1]


def _prefetch_opened_study(request: HttpRequest) -> None:
    """The page loading this config (its ``Referer``, same origin) opens a study in our mode:
    have Orthanc's answers to the viewer's first questions asked now (``dicomweb_prefetch``)."""
    page = urlsplit(request.headers.get("Referer", ""))
    if page.netloc != request.get_host() or page.path != f"/{MODE_ROUTE}" or not has_role(request.user, *READ_ROLES):
        return
    uids = parse_qs(page.query).get("StudyInstanceUIDs") or [""]
    prefetch_study(uids[0].split(",")[0], request.get_host())


def app_config_js(request: HttpRequest) -> HttpResponse:
    """OHIF's ``window.config``, rendered per request (the origin is the request's own); OHIF's
    built-in modes trimmed to those our mode uses (``viewer_config``)."""
    _prefetch_opened_study(request)
    origin = f"{request.scheme}://{request.get_host()}"
    extension_url, mode_url = _extension_urls(origin)
    dicomweb = f"{origin}{settings.ORTHANC_DICOMWEB_ROOT}"
    config = {
        "routerBasename": "/",
        "extensions": [extension_url],
        "modes": [mode_url],
        "showStudyList": True,
        "maxNumberOfWebWorkers": 2,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "defaultDataSourceName": "spinereview",
        "investigationalUseDialog": {"option": "never"},
        "customizationService": {"global": {"ohif.tours": {"$set": []}}},  # onboarding tour off
        "dataSources": [
            {
                "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
                "sourceName": "spinereview",
                "configuration": {
                    "friendlyName": "SpineReview (Orthanc via the app)",
                    "name": "spinereview",
                    "wadoUriRoot": dicomweb,
                    "qidoRoot": dicomweb,
                    "wadoRoot": dicomweb,
                    "qidoSupportsIncludeField": True,
                    "supportsReject": False,
                    "imageRendering": "wadors",
                    # thumbnails drawn by Orthanc (a 256-pixel JPEG through the proxy's rendered
                    # route), not by Cornerstone in the browser: drawing them took the page's
                    # main thread for 150-200 ms right when the first images were being drawn
                    "thumbnailRendering": "rendered",
                    "thumbnailRequestStrategy": "fetch",
                    "enableStudyLazyLoad": True,
                    "supportsFuzzyMatching": False,
                    "supportsWildcard": True,
                    "staticWado": False,
                    "singlepart": "bulkdata,video,pdf",
                    "omitQuotationForMultipartRequest": True,
                    "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
                },
            }
        ],
        "spinereview": {
            "ohifVersion": settings.VIEWER_OHIF_VERSION,
            "appOrigin": settings.VIEWER_APP_ORIGIN,
            "pollSeconds": settings.VIEWER_POLL_S,
            "rendering": settings.VIEWER_RENDERING,  # auto: the CPU where WebGL is software (viewer_config)
            "warmup": settings.VIEWER_WARMUP,  # the next study's code cache (ohif-extension/src/warmup.ts)
        },
    }
    response = HttpResponse(config_script(config), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def _dist() -> Path:
    dist = Path(settings.VIEWER_OHIF_DIST)
    if not (dist / "index.html").is_file():
        raise Http404(f"OHIF dist not found at {dist}: run scripts/setup.sh (fetches @ohif/app)")
    return dist


@login_required
def extension_file(request: HttpRequest, path: str) -> HttpResponse:
    """Our extension's files. Kept for good: the shared chunks (esbuild names them by content
    hash) and an entry module asked for with the ``?v=`` stamp of its current content (the
    app-config's URLs); anything else is revalidated."""
    folder = Path(settings.VIEWER_EXTENSION_DIST)
    if not folder.is_dir():
        raise Http404(f"extension bundle not built at {folder}: run scripts/setup.sh")
    stamp = request.GET.get("v", "")
    entry = path in ("extension.js", "mode.js") and bool(stamp) and stamp == file_version(folder / path)
    immutable = entry or path.startswith("chunks/")
    return serve_file(request, folder, path, fallback=None, immutable=immutable)


# The viewer's pages may be framed by the viewer origin itself, and by nothing else: the viewer
# loads itself in a hidden frame to warm the browser's code cache for the reader's next study
# (ohif-extension/src/warmup.ts); any other site framing it would be clickjacking. The deployed
# nginx sets the same two headers on index.html.
FRAME_HEADERS = {"X-Frame-Options": "SAMEORIGIN", "Content-Security-Policy": "frame-ancestors 'self'"}


@login_required
def ohif_file(request: HttpRequest, path: str = "") -> HttpResponse:
    if not path and settings.VIEWER_APP_ORIGIN:
        # OHIF's own study list would list every study in Orthanc: the worklist is the app's
        return redirect(f"{settings.VIEWER_APP_ORIGIN}/")
    dist = _dist()
    response = serve_file(request, dist, path, fallback=dist / "index.html", immutable=bool(_HASHED.search(path)))
    for name, value in FRAME_HEADERS.items():  # on every answer, a 304 of index.html included
        response[name] = value
    return response
