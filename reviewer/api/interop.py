"""The signed report of a study as a FHIR R4 Bundle (reviewer/integrations/fhir.py).

Who may read it: admins (any signed report of the study, with the patient's identities), and the
reader who signed it (their own report only, without identities, as everywhere else in the app).
Another reader of the study gets 404, whether or not a report exists: on a blinded study even
the existence of someone else's signature is not told.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewer.integrations.content import signed_report
from reviewer.integrations.fhir import build_bundle
from reviewer.models import ReportRevision, Review
from reviewer.permissions import RolePermission
from reviewer.roles import Role, has_role


def latest_signed_revision(review: Review) -> ReportRevision:
    """The reader's report as it stands: their newest addendum, else the signed revision."""
    addendum = (
        ReportRevision.objects.filter(
            study_id=review.study_id, author_id=review.reader_id, is_addendum=True, is_conflict=False
        )
        .order_by("-number")
        .first()
    )
    return addendum or review.signed_revision


class StudyFhirApi(APIView):
    """GET: the FHIR R4 Bundle (DiagnosticReport, Observations, ImagingStudy, Patient) of a signed
    report of the study. Admins may name the reader (``?reader=<user id>``; default: the most
    recent signature); a radiologist gets their own signed report."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {Role.RADIOLOGIST}}

    class InputSerializer(serializers.Serializer):
        reader = serializers.IntegerField(required=False, min_value=1)

    class OutputSerializer(serializers.Serializer):
        """The Bundle as FHIR JSON (validated against the FHIR models before it is sent)."""

        resourceType = serializers.CharField()  # FHIR JSON field name
        type = serializers.CharField()
        entry = serializers.ListField(child=serializers.DictField())

    @extend_schema(
        parameters=[OpenApiParameter("reader", OpenApiTypes.INT, description="admins: whose signed report")],
        responses=OutputSerializer,
    )
    def get(self, request: Request, pk: int) -> Response:
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        admin = has_role(request.user, Role.ADMIN)
        reviews = Review.objects.filter(study_id=pk, signed_at__isnull=False, signed_revision__isnull=False)
        if not admin:
            reviews = reviews.filter(reader=request.user)
        elif "reader" in params.validated_data:
            reviews = reviews.filter(reader_id=params.validated_data["reader"])
        review = reviews.select_related("signed_revision").order_by("-signed_at").first()
        if review is None:
            raise NotFound("no signed report of this study that you may read")
        report = signed_report(latest_signed_revision(review).pk)
        bundle = build_bundle(report, identities=admin)
        return Response(bundle, content_type="application/fhir+json")
