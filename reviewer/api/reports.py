"""A reader's report on a study: the revisions of their own chain and the signature.

Saves and signatures go through ``reviewer.services.reports``; its refusals (a stale parent, a
signed report, a missing comment) reach the client through ``reviewer.api.exception_handlers``
(400 or 409)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewer import selectors
from reviewer.api.serializers import DB_ID_MAX, ReviewSerializer, RevisionSerializer
from reviewer.models import Review
from reviewer.permissions import RolePermission
from reviewer.roles import Role
from reviewer.services import reports

R = Role.RADIOLOGIST


class StudyRevisionsApi(APIView):
    """GET: the revisions the caller may read (their own chain; blinding policy in
    ``selectors.revisions_visible_to``). POST: a save to the caller's own chain; after
    sign-off only an addendum (with ``reason``)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}, "POST": {R}}
    OutputSerializer = RevisionSerializer

    class InputSerializer(serializers.Serializer):
        text = serializers.CharField(allow_blank=False, trim_whitespace=False)
        sections = serializers.DictField(required=False, default=dict)
        parent = serializers.IntegerField(
            allow_null=True, required=True, min_value=1, max_value=DB_ID_MAX,
            help_text="the revision of your report being edited, null if none",
        )  # fmt: skip
        reason = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=2000,
            help_text="after sign-off: why the report is amended (the save becomes an addendum)",
        )  # fmt: skip

        class Meta:
            ref_name = "RevisionCreate"

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        study = get_object_or_404(selectors.study_list(), pk=pk)
        revisions = selectors.revisions_visible_to(request.user, study)
        return Response(self.OutputSerializer(revisions, many=True).data)

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request, pk: int) -> Response:
        study = get_object_or_404(selectors.study_list(), pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        revision = reports.save_revision(
            study=study, author=request.user, text=v["text"], sections=v["sections"], parent_id=v["parent"],
            reason=v["reason"],
        )  # fmt: skip
        return Response(self.OutputSerializer(revision).data, status=status.HTTP_201_CREATED)


class StudySignApi(APIView):
    """Sign the caller's report with a RADPEER score (signed reviews are final)."""

    permission_classes = [RolePermission]
    allowed_roles = {"POST": {R}}
    OutputSerializer = ReviewSerializer

    class InputSerializer(serializers.Serializer):
        radpeer = serializers.ChoiceField(choices=Review.Radpeer.choices)
        comment = serializers.CharField(allow_blank=True, required=False, default="")
        in_scope = serializers.BooleanField(required=False, default=True)
        revision = serializers.IntegerField(
            required=False, allow_null=True, default=None, min_value=1, max_value=DB_ID_MAX,
            help_text="the head of your report (default); null signs the AI draft if you saved nothing",
        )  # fmt: skip

        class Meta:
            ref_name = "Sign"

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        study = get_object_or_404(selectors.study_list(), pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        review = reports.sign_review(
            study=study, reader=request.user, radpeer=v["radpeer"], comment=v["comment"],
            in_scope=v["in_scope"], revision_id=v["revision"],
        )  # fmt: skip
        return Response(self.OutputSerializer(review).data, status=status.HTTP_201_CREATED)
