"""Finding-level feedback, reading time and per-condition agreement with the AI.

- ``GET/POST /api/studies/<id>/finding-feedback/``: the caller's own verdicts on the findings of
  the study's drafts (agree / disagree / correct level or side). Every POST appends a row; the
  newest row per finding is the verdict. A reader never sees another reader's verdicts.
- ``POST /api/studies/<id>/reading-heartbeat/``: one "still reading" tick from the viewer;
  answers the caller's active reading time so far and their accepted/corrected/rejected counts.
- ``GET /api/finding-agreement/?model_version=name@version``: per condition, how readers judged
  the AI's findings (researchers and admins; no reader or study appears).
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewer import selectors
from reviewer.models import FindingFeedback, Study
from reviewer.permissions import RolePermission
from reviewer.roles import Role
from reviewer.services import feedback as feedback_service

R, S = Role.RADIOLOGIST, Role.RESEARCHER


class FindingFeedbackApi(APIView):
    """The caller's finding verdicts on one study: list (GET) and append (POST)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}, "POST": {R}}

    class InputSerializer(serializers.Serializer):
        finding = serializers.IntegerField(help_text="id of the AI finding judged")
        verdict = serializers.ChoiceField(choices=FindingFeedback.Verdict.choices)
        level = serializers.CharField(required=False, allow_blank=True, default="", max_length=16)
        side = serializers.CharField(required=False, allow_blank=True, default="", max_length=10)
        comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    class OutputSerializer(serializers.ModelSerializer):
        condition = serializers.CharField(source="finding.condition")

        class Meta:
            model = FindingFeedback
            fields = ["id", "finding", "condition", "draft", "verdict", "level", "side", "comment", "created_at"]

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request, pk: int) -> Response:
        study = get_object_or_404(Study, pk=pk)
        rows = selectors.finding_feedback_visible_to(request.user, study)
        return Response(self.OutputSerializer(rows, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request, pk: int) -> Response:
        study = get_object_or_404(Study, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        # invalid verdicts (400) and verdicts after sign-off (409) are answered by the API's
        # exception handler (reviewer/api/exception_handlers.py)
        row = feedback_service.record_feedback(
            study=study,
            finding_id=v["finding"],
            reader=request.user,
            verdict=v["verdict"],
            level=v["level"],
            side=v["side"],
            comment=v["comment"],
        )
        return Response(self.OutputSerializer(row).data, status=status.HTTP_201_CREATED)


class ReadingHeartbeatApi(APIView):
    """A tick of active reading from the viewer (sent only while the reader is at it)."""

    permission_classes = [RolePermission]
    allowed_roles = {"POST": {R}}

    class OutputSerializer(serializers.Serializer):
        counted = serializers.BooleanField(help_text="false after the caller's sign-off")
        active_seconds = serializers.FloatField()
        accepted = serializers.IntegerField()
        corrected = serializers.IntegerField()
        rejected = serializers.IntegerField()

    @extend_schema(request=None, responses=OutputSerializer)
    def post(self, request, pk: int) -> Response:
        study = get_object_or_404(Study, pk=pk)
        beat = feedback_service.record_heartbeat(study=study, reader=request.user)
        seconds = selectors.active_seconds(study=study, reader=request.user)
        counts = selectors.outcome_counts(study=study, reader=request.user)
        out = {"counted": beat is not None, "active_seconds": round(seconds, 1), **counts}
        return Response(self.OutputSerializer(out).data)


class FindingAgreementApi(APIView):
    """Per condition: verdicts, agreements, disagreements and corrections of the AI's findings."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {S}}

    class OutputSerializer(serializers.Serializer):
        condition = serializers.CharField()
        n = serializers.IntegerField()
        agree = serializers.IntegerField()
        disagree = serializers.IntegerField()
        corrected = serializers.IntegerField()
        agreement = serializers.FloatField(allow_null=True)

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request) -> Response:
        rows = selectors.agreement_by_condition(request.query_params.get("model_version") or None)
        return Response(self.OutputSerializer([r.to_dict() for r in rows], many=True).data)


urlpatterns = [
    path("studies/<int:pk>/finding-feedback/", FindingFeedbackApi.as_view(), name="study-finding-feedback"),
    path("studies/<int:pk>/reading-heartbeat/", ReadingHeartbeatApi.as_view(), name="study-reading-heartbeat"),
    path("finding-agreement/", FindingAgreementApi.as_view(), name="finding-agreement"),
]
