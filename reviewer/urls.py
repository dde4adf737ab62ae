from django.urls import include, path, re_path
from rest_framework.routers import DefaultRouter

from reviewer import pages, viewer
from reviewer.api import interop, views
from reviewer.api.auth_views import TokenView
from reviewer.dicomweb_proxy import dicomweb_proxy
from reviewer.health import health

router = DefaultRouter()
router.register("studies", views.StudyViewSet, basename="study")
router.register("reviews", views.ReviewViewSet, basename="review")
router.register("label-extractions", views.LabelExtractionViewSet, basename="labelextraction")
router.register("label-confirmations", views.LabelConfirmationViewSet, basename="labelconfirmation")
router.register("model-versions", views.ModelVersionViewSet, basename="modelversion")
router.register("audit-events", views.AuditEventViewSet, basename="auditevent")

urlpatterns = [
    path("api/health/", health, name="health"),
    path("api/auth/token/", TokenView.as_view(), name="api-token"),
    path("api/studies/<int:pk>/fhir/", interop.StudyFhirApi.as_view(), name="study-fhir"),
    path("api/", include(router.urls)),
    path("api/", include("reviewer.api.viewer_views")),  # endpoints of the OHIF panels
    path("api/", include("reviewer.api.feedback")),  # finding verdicts, reading time, agreement
    path("viewer/open/<str:study_uid>/", viewer.open_study, name="viewer-open"),
    re_path(r"^dicom-web/(?P<path>.*)$", dicomweb_proxy, name="dicomweb-proxy"),
    path("api/", include("reviewer.api.workflow_views")),  # assignment, arbitration, labels, stats
    path("studies/<int:pk>/assign/", pages.assign, name="study-assign"),
    path("arbitration/", pages.arbitration_queue, name="arbitration-queue"),
    path("arbitration/<int:pk>/", pages.arbitration_detail, name="arbitration-detail"),
    path("labels/", pages.label_queue, name="label-queue-page"),
    path("labels/<int:pk>/", pages.label_confirm, name="label-confirm"),
    path("statistics/", pages.statistics, name="statistics"),
    path("", pages.worklist, name="worklist"),
]
