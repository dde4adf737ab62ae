"""Every API URL, in one list (included once, under ``api/``, by ``reviewer/urls.py``).

One line per endpoint and verb group; the view classes live in the module of their resource.
Names are those the DRF router gave them before (``study-list``, ``study-drafts`` ...), so
``reverse()`` callers keep working."""

from __future__ import annotations

from django.urls import include, path, re_path
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from reviewer.api import (
    assignments,
    audit,
    auth,
    interop,
    labels,
    model_versions,
    reports,
    reviews,
    stats,
    studies,
    viewer,
)

# the resources listed at /api/ (the browsable entry point), by URL name
ROOT_RESOURCES = {
    "studies": "study-list",
    "reviews": "review-list",
    "label-extractions": "labelextraction-list",
    "label-confirmations": "labelconfirmation-list",
    "model-versions": "modelversion-list",
    "audit-events": "auditevent-list",
}


@extend_schema(exclude=True)
class ApiRootApi(APIView):
    """The entry point of the browsable API: links to the main collections."""

    def get(self, request: Request) -> Response:
        return Response({key: reverse(name, request=request) for key, name in ROOT_RESOURCES.items()})


urlpatterns = [
    path("", ApiRootApi.as_view(), name="api-root"),
    path("auth/token/", auth.TokenApi.as_view(), name="api-token"),
    # studies
    path("studies/", studies.StudyListApi.as_view(), name="study-list"),
    path("studies/<int:pk>/", studies.StudyDetailApi.as_view(), name="study-detail"),
    path("studies/<int:pk>/drafts/", studies.StudyDraftsApi.as_view(), name="study-drafts"),
    path("studies/<int:pk>/jobs/", studies.StudyJobsApi.as_view(), name="study-jobs"),
    path("studies/<int:pk>/redraft/", studies.StudyRedraftApi.as_view(), name="study-redraft"),
    path("studies/<int:pk>/blinding/", studies.StudyBlindingApi.as_view(), name="study-blinding"),
    # reports and reviews
    path("studies/<int:pk>/revisions/", reports.StudyRevisionsApi.as_view(), name="study-revisions"),
    path("studies/<int:pk>/sign/", reports.StudySignApi.as_view(), name="study-sign"),
    path("studies/<int:pk>/reviews/", reviews.StudyReviewsApi.as_view(), name="study-reviews"),
    path("reviews/", reviews.ReviewListApi.as_view(), name="review-list"),
    path("reviews/<int:pk>/", reviews.ReviewDetailApi.as_view(), name="review-detail"),
    path("arbitrations/", reviews.ArbitrationListApi.as_view(), name="arbitration-list"),
    path("arbitrations/<int:pk>/", reviews.ArbitrationDetailApi.as_view(), name="arbitration-detail"),
    path("arbitrations/<int:pk>/resolve/", reviews.ArbitrationResolveApi.as_view(), name="arbitration-resolve"),
    path("edit-distances/recompute/", reviews.RecomputeEditDistancesApi.as_view(), name="edit-distances-recompute"),
    path("assignments/", assignments.AssignmentListApi.as_view(), name="assignment-list"),
    path("assignments/<int:pk>/", assignments.AssignmentDetailApi.as_view(), name="assignment-detail"),
    # labels
    path("label-extractions/", labels.LabelExtractionListApi.as_view(), name="labelextraction-list"),
    path("label-extractions/<int:pk>/", labels.LabelExtractionDetailApi.as_view(), name="labelextraction-detail"),
    path("label-confirmations/", labels.LabelConfirmationListApi.as_view(), name="labelconfirmation-list"),
    path("label-confirmations/<int:pk>/", labels.LabelConfirmationDetailApi.as_view(), name="labelconfirmation-detail"),
    path("label-queue/", labels.LabelQueueApi.as_view(), name="label-queue"),
    # drafting pipeline versions and the audit trail
    path("model-versions/", model_versions.ModelVersionListApi.as_view(), name="modelversion-list"),
    path("model-versions/<int:pk>/", model_versions.ModelVersionDetailApi.as_view(), name="modelversion-detail"),
    path(
        "model-versions/<int:pk>/activate/",
        model_versions.ModelVersionActivateApi.as_view(),
        name="modelversion-activate",
    ),
    path("audit-events/", audit.AuditEventListApi.as_view(), name="auditevent-list"),
    path("audit-events/<int:pk>/", audit.AuditEventDetailApi.as_view(), name="auditevent-detail"),
    # the OHIF panels
    path("viewer/studies/<str:study_uid>/", viewer.ViewerStudyApi.as_view(), name="viewer-study"),
    path("viewer/next-study/", viewer.NextStudyApi.as_view(), name="viewer-next-study"),
    path("studies/<int:pk>/boxes/", viewer.StudyBoxesApi.as_view(), name="study-boxes"),
    # interoperability: a signed report as a FHIR bundle
    path("studies/<int:pk>/fhir/", interop.StudyFhirApi.as_view(), name="study-fhir"),
    # research statistics and exports
    path("stats/", stats.StatsApi.as_view(), name="stats"),
    re_path(r"^stats/plots/(?P<name>[a-z_]+)\.(?P<fmt>png|svg)$", stats.PlotApi.as_view(), name="stats-plot"),
    re_path(r"^exports/(?P<table>[a-z_]+)\.(?P<fmt>[a-z]+)$", stats.ExportApi.as_view(), name="stats-export"),
    # finding verdicts, reading time, agreement (that module lists its own paths)
    path("", include("reviewer.api.feedback")),
]
