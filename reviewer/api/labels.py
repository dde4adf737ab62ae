"""Labels extracted from reports, their confirmation by annotators and the annotation queue.

Extractions carry the full report text and confirmations name their annotator: annotators and
admins only. Researchers get the agreement tables of the exports instead (no report text)."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewer import selectors
from reviewer.api.lists import ListApi, paginated_response
from reviewer.api.serializers import LabelExtractionSerializer
from reviewer.models import LabelConfirmation, LabelExtraction
from reviewer.permissions import RolePermission
from reviewer.roles import Role
from reviewer.services import labels

A = Role.ANNOTATOR


class LabelExtractionListApi(ListApi):
    """Extracted labels with the full report text: annotators (who confirm them) and admins.
    Researchers get the agreement tables of the exports instead (no report text)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {A}}
    queryset = LabelExtraction.objects.none()
    filterset_fields = ["study", "source", "extractor"]
    ordering_fields = ["id", "study", "revision", "source", "report_text", "extractor", "labels", "evidence",
                       "confidence", "created_at"]  # fmt: skip
    OutputSerializer = LabelExtractionSerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request, view=self, queryset=selectors.label_extractions(), serializer_class=self.OutputSerializer
        )


class LabelExtractionDetailApi(APIView):
    """One extraction with its report text, labels, evidence and confidence."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {A}}
    OutputSerializer = LabelExtractionSerializer

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        extraction = get_object_or_404(selectors.label_extractions(), pk=pk)
        return Response(self.OutputSerializer(extraction).data)


class LabelConfirmationSerializer(serializers.ModelSerializer):
    """A confirmation as sent (``extraction``, ``labels``, ``comment``) and as answered."""

    annotator = serializers.StringRelatedField()

    class Meta:
        model = LabelConfirmation
        fields = ["id", "extraction", "annotator", "labels", "comment", "created_at"]
        read_only_fields = ["id", "annotator", "created_at"]

    def validate_labels(self, value: dict) -> dict:
        """All 17 conditions, each -1/0/1: a confirmation is complete (as on the annotation page)."""
        try:
            return labels.validate_labels(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict.get("labels", exc.messages)) from exc


def _confirmations():
    return LabelConfirmation.objects.select_related("annotator", "extraction")


class LabelConfirmationListApi(ListApi):
    """Confirmations name their annotator: not for researchers.

    POST goes through the same service as the annotation page: all 17 labels, only
    signed/historical reports, one confirmation per annotator and extraction (a second POST
    corrects it)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {A}, "POST": {A}}
    queryset = LabelConfirmation.objects.none()
    filterset_fields = ["extraction", "annotator"]
    ordering_fields = ["id", "extraction", "annotator", "labels", "comment", "created_at"]
    InputSerializer = OutputSerializer = LabelConfirmationSerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request, view=self, queryset=_confirmations(), serializer_class=self.OutputSerializer
        )

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        confirmation = labels.confirm_labels(
            extraction=v["extraction"], annotator=request.user, labels=v["labels"], comment=v.get("comment", "")
        )
        return Response(self.OutputSerializer(confirmation).data, status=status.HTTP_201_CREATED)


class LabelConfirmationDetailApi(APIView):
    """One confirmation (annotators and admins)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {A}}
    OutputSerializer = LabelConfirmationSerializer

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(self.OutputSerializer(get_object_or_404(_confirmations(), pk=pk)).data)


class LabelQueueApi(APIView):
    """The next reports for this annotator to confirm (see selectors.annotation_queue)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {A}}
    OutputSerializer = LabelExtractionSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("strategy", str, enum=list(selectors.STRATEGIES)),
            OpenApiParameter("seed", int),
            OpenApiParameter("limit", int),
        ],
        responses=OutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        try:
            seed = int(request.query_params.get("seed", 0))
            limit = max(1, min(int(request.query_params.get("limit", 20)), 200))
        except ValueError as exc:
            raise ValidationError({"detail": f"seed and limit must be integers: {exc}"}) from exc
        ids = selectors.annotation_queue(
            annotator=request.user, strategy=request.query_params.get("strategy", "uncertain"), seed=seed, limit=limit
        )
        found = {e.pk: e for e in LabelExtraction.objects.filter(pk__in=ids)}
        return Response(self.OutputSerializer([found[i] for i in ids], many=True).data)
