"""The URLconf of the viewer origin (``ViewerHostMiddleware`` in ``reviewer/viewer.py`` switches
requests for the viewer's host name to it).

OHIF's files sit at the root of that origin, so it serves the viewer's own routes first, then the
app's URLs (``api/``, ``dicom-web/``, ``accounts/``, ``admin/``: the session cookie and CSRF
token of the viewer origin reach our API calls), and last any other path as a file of OHIF's
``dist/`` with the SPA fallback. It lives here, beside ``webapp/urls.py``, because it composes
the app's URLconf; the reviewer package only provides the views."""

from __future__ import annotations

from django.urls import path, re_path

from reviewer import viewer
from webapp.urls import urlpatterns as app_urlpatterns

urlpatterns = [
    path("app-config.js", viewer.app_config_js, name="viewer-app-config"),
    path("viewer/handoff/", viewer.handoff, name="viewer-handoff"),
    path("viewer/handoff/confirm/", viewer.handoff_confirm, name="viewer-handoff-confirm"),
    path("viewer/auth/", viewer.auth_check, name="viewer-auth"),
    re_path(rf"^{viewer.EXTENSION_PREFIX}/(?P<path>.+)$", viewer.extension_file, name="viewer-extension"),
    path("", viewer.ohif_file, name="viewer-root"),
    # the app's URLs (api/, dicom-web/, accounts/, admin/) on this origin too; "" is ours
    *app_urlpatterns,
    re_path(r"^(?P<path>.+)$", viewer.ohif_file, name="viewer-file"),
]

handler404 = "webapp.urls._not_found"
