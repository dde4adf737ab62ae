"""The viewer origin: OHIF's prebuilt ``dist/`` (untouched) at the root of its own origin.

Why a separate origin: OHIF 3.13.2 compiles the public path ``/`` into its bundles and CSS, so it
cannot live under a sub-path of the app (DESIGN.md §4). In development the viewer origin is a
second host name of the *same* Django process (``SPINEREVIEW_VIEWER_ORIGIN``, default
``http://viewer.localhost:8000``; any ``*.localhost`` name resolves to loopback in browsers):
``ViewerHostMiddleware`` switches requests for that host to this module's URLconf, which serves

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
with a signed, 60-second token (``open_study`` -> ``handoff``) instead of asking for a second login.
"""

from __future__ import annotations

import json
import mimetypes
import re
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core import signing
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, re_path
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET

from reviewer.models import Study

HANDOFF_SALT = "spinereview.viewer.handoff"
HANDOFF_MAX_AGE_S = 60
MODE_ROUTE = "spine-review"  # routeName of our mode (ohif-extension/src/mode)
EXTENSION_PREFIX = "spinereview"  # URL folder of our bundle on the viewer origin
_HASHED = re.compile(r"\.[0-9a-f]{16,}\.(js|css|wasm)$|^[0-9a-f]{16}\.(wasm|woff2?)$")
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".mjs")


def viewer_host() -> str:
    return urlsplit(settings.VIEWER_ORIGIN).netloc.lower()


class ViewerHostMiddleware:
    """Requests whose Host is the viewer origin's use the viewer URLconf (``reviewer.viewer``)."""

    def __init__(self, get_response):  # type: ignore[no-untyped-def]
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.get_host().lower() == viewer_host():
            request.urlconf = "reviewer.viewer"
        return self.get_response(request)


# --- app origin --------------------------------------------------------------------------------


def viewer_url(study_uid: str) -> str:
    """The viewer URL that opens one study in our mode (relative to the viewer origin)."""
    return f"/{MODE_ROUTE}?" + urlencode({"StudyInstanceUIDs": study_uid})


@login_required
@require_GET
def open_study(request: HttpRequest, study_uid: str) -> HttpResponse:
    """``/viewer/open/<study_uid>/`` on the app origin: hand the user over to the viewer origin."""
    get_object_or_404(Study, study_uid=study_uid)
    token = signing.dumps({"u": request.user.pk, "h": request.user.get_session_auth_hash()}, salt=HANDOFF_SALT)
    query = urlencode({"token": token, "next": viewer_url(study_uid)})
    return redirect(f"{settings.VIEWER_ORIGIN}/viewer/handoff/?{query}")


# --- viewer origin -----------------------------------------------------------------------------


@require_GET
def handoff(request: HttpRequest) -> HttpResponse:
    """Log the user of a fresh handoff token in on this origin, then go to ``next``."""
    target = request.GET.get("next", "/")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts=None) or not target.startswith("/"):
        return HttpResponseBadRequest("next must be a path on this origin")
    try:
        data = signing.loads(request.GET.get("token", ""), salt=HANDOFF_SALT, max_age=HANDOFF_MAX_AGE_S)
    except signing.BadSignature:
        # expired or forged: an ordinary login on this origin still works
        return redirect_to_login(target)
    user = get_user_model().objects.filter(pk=data.get("u"), is_active=True).first()
    if user is None or user.get_session_auth_hash() != data.get("h"):
        return redirect_to_login(target)  # password changed since the token was made
    if not (request.user.is_authenticated and request.user.pk == user.pk):
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect(target)


def auth_check(request: HttpRequest) -> HttpResponse:
    """nginx ``auth_request`` target in deployment: 204 when logged in, 401 otherwise."""
    return HttpResponse(status=204 if request.user.is_authenticated else 401)


def _extension_urls(origin: str = "") -> tuple[str, str]:
    base = f"{origin}/{EXTENSION_PREFIX}"
    return f"{base}/extension.js", f"{base}/mode.js"


def app_config_js(request: HttpRequest) -> HttpResponse:
    """OHIF's ``window.config``, rendered per request (the origin is the request's own)."""
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
                    "thumbnailRendering": "wadors",
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
        },
    }
    body = (
        "// Rendered by SpineReview (reviewer/viewer.py); do not edit by hand.\n"
        f"window.config = {json.dumps(config, indent=1)};\n"
    )
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-store"
    return response


def _serve(folder: Path, relative: str, *, fallback: Path | None) -> HttpResponse:
    root = folder.resolve()
    target = (root / relative).resolve() if relative else root / "index.html"
    if not target.is_relative_to(root):
        raise Http404("outside the viewer folder")
    if not target.is_file():
        if fallback is None:
            raise Http404(relative)
        target = fallback
    content_type, _ = mimetypes.guess_type(target.name)
    response = FileResponse(target.open("rb"), content_type=content_type or "application/octet-stream")
    hashed = bool(_HASHED.search(target.name))
    response["Cache-Control"] = "public, max-age=31536000, immutable" if hashed else "no-cache"
    return response


def _dist() -> Path:
    dist = Path(settings.VIEWER_OHIF_DIST)
    if not (dist / "index.html").is_file():
        raise Http404(f"OHIF dist not found at {dist}: run scripts/setup.sh (fetches @ohif/app)")
    return dist


@login_required
def extension_file(request: HttpRequest, path: str) -> HttpResponse:
    folder = Path(settings.VIEWER_EXTENSION_DIST)
    if not folder.is_dir():
        raise Http404(f"extension bundle not built at {folder}: run scripts/setup.sh")
    response = _serve(folder, path, fallback=None)
    response["Cache-Control"] = "no-cache"  # not content-hashed: revalidate
    return response


@login_required
def ohif_file(request: HttpRequest, path: str = "") -> HttpResponse:
    if not path and settings.VIEWER_APP_ORIGIN:
        # OHIF's own study list would list every study in Orthanc: the worklist is the app's
        return redirect(f"{settings.VIEWER_APP_ORIGIN}/")
    dist = _dist()
    return _serve(dist, path, fallback=dist / "index.html")


def _viewer_urlpatterns() -> list:
    from webapp.urls import urlpatterns as app_urlpatterns

    return [
        path("app-config.js", app_config_js, name="viewer-app-config"),
        path("viewer/handoff/", handoff, name="viewer-handoff"),
        path("viewer/auth/", auth_check, name="viewer-auth"),
        re_path(rf"^{EXTENSION_PREFIX}/(?P<path>.+)$", extension_file, name="viewer-extension"),
        path("", ohif_file, name="viewer-root"),
        # the app's URLs (api/, dicom-web/, accounts/, admin/) on this origin too; "" is ours
        *app_urlpatterns,
        re_path(r"^(?P<path>.+)$", ohif_file, name="viewer-file"),
    ]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    # Django reads ``urlpatterns`` when this module is used as a URLconf; built lazily so that
    # importing the views from reviewer/urls.py does not import webapp.urls (a cycle).
    if name == "urlpatterns":
        return _viewer_urlpatterns()
    raise AttributeError(name)
