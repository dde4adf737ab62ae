"""The app origin's URLs: the API (all of it in ``reviewer/api/urls.py``), the health check, the
DICOMweb proxy, the viewer hand-off and the pages."""

from django.urls import include, path, re_path

from reviewer import label_pages, pages, viewer
from reviewer.health import health
from reviewer.integrations.dicomweb_proxy import dicomweb_proxy

urlpatterns = [
    path("api/health/", health, name="health"),
    path("api/", include("reviewer.api.urls")),
    path("viewer/open/<str:study_uid>/", viewer.open_study, name="viewer-open"),
    re_path(r"^dicom-web/(?P<path>.*)$", dicomweb_proxy, name="dicomweb-proxy"),
    path("studies/<int:pk>/assign/", pages.assign, name="study-assign"),
    path("studies/<int:pk>/force-draft/", pages.force_draft, name="study-force-draft"),
    path("arbitration/", pages.arbitration_queue, name="arbitration-queue"),
    path("arbitration/<int:pk>/", pages.arbitration_detail, name="arbitration-detail"),
    path("labels/", label_pages.label_queue, name="label-queue-page"),
    path("labels/<int:pk>/", label_pages.label_confirm, name="label-confirm"),
    path("statistics/", pages.statistics, name="statistics"),
    path("statistics/reading/", pages.reading_statistics, name="reading-statistics"),
    path("", pages.worklist, name="worklist"),
]
