"""Studies received from Orthanc: the list and one study, its drafts and draft jobs, a new draft
request and the study's blinding.

Not for researchers: a study carries its UID, date and description, and its revisions and
reviews carry report text and reader names; researchers work from the pseudonymised statistics
and exports (``reviewer.deid``), whose keys cannot be looked up here."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewer import selectors
from reviewer.api.lists import ListApi, paginated_response
from reviewer.api.serializers import DraftJobSerializer, DraftSerializer, StudySerializer
from reviewer.models import Study
from reviewer.permissions import RolePermission
from reviewer.roles import Role
from reviewer.services import workflow
from reviewer.services.audit import audit
from reviewer.services.drafting import request_draft

R, A = Role.RADIOLOGIST, Role.ANNOTATOR


class StudyFilter(filters.FilterSet):
    date_from = filters.DateFilter(field_name="study_date", lookup_expr="gte")
    date_to = filters.DateFilter(field_name="study_date", lookup_expr="lte")
    modality = filters.CharFilter(field_name="modalities", lookup_expr="icontains")

    class Meta:
        model = Study
        fields = ["status", "study_uid"]


class StudyListApi(ListApi):
    """Studies with their series and sequence classification, newest first."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R, A}}
    queryset = Study.objects.none()
    filterset_class = StudyFilter
    ordering_fields = ["created_at", "study_date", "status"]
    OutputSerializer = StudySerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request, view=self, queryset=selectors.study_list(), serializer_class=self.OutputSerializer
        )


class StudyDetailApi(APIView):
    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R, A}}
    OutputSerializer = StudySerializer

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        study = get_object_or_404(selectors.study_list(), pk=pk)
        return Response(self.OutputSerializer(study, context={"request": request}).data)


class StudyDraftsApi(APIView):
    """The study's drafts with their findings (model identity hidden from blinded readers)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}}
    OutputSerializer = DraftSerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        study = get_object_or_404(selectors.study_list(), pk=pk)
        drafts = selectors.drafts_for(study.pk)
        return Response(self.OutputSerializer(drafts, many=True, context={"request": request}).data)


class StudyJobsApi(APIView):
    """The study's draft jobs, queued, running and finished."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}}
    OutputSerializer = DraftJobSerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request, pk: int) -> Response:
        study = get_object_or_404(selectors.study_list(), pk=pk)
        jobs = study.draft_jobs.all()
        return Response(self.OutputSerializer(jobs, many=True, context={"request": request}).data)


class StudyRedraftApi(APIView):
    """Queue a draft with a given pipeline version (default: the active one). Admins.
    ``force_scope`` drafts a study the scope check refused (e.g. a spine MRI without a sagittal
    T2 that a radiologist still wants read); the draft's analysis records the override."""

    permission_classes = [RolePermission]
    allowed_roles: dict[str, set[Role]] = {}  # admins only
    OutputSerializer = DraftJobSerializer

    class InputSerializer(serializers.Serializer):
        pipeline_version = serializers.CharField(required=False, allow_null=True, default=None, max_length=200)
        force_scope = serializers.BooleanField(required=False, default=False)

        class Meta:
            ref_name = "RedraftRequest"

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        study = get_object_or_404(selectors.study_list(), pk=pk)
        force_scope = data.validated_data["force_scope"]
        # a failed job of the same version is queued again (e.g. after the archive was repaired)
        job, created = request_draft(
            study=study,
            pipeline_version=data.validated_data["pipeline_version"],
            retry_failed=True,
            force_scope=force_scope,
        )
        audit(
            actor=request.user,
            action="draft.requested",
            obj=study,
            job=job.pk,
            created=created,
            force_scope=force_scope,
        )
        return Response(self.OutputSerializer(job).data, status=201 if created else 200)


class StudyBlindingApi(APIView):
    """Set a study's blinding (admins): its readers then see neither the model identity nor
    other readers' reviews."""

    permission_classes = [RolePermission]
    allowed_roles: dict[str, set[Role]] = {}  # admins only

    class InputSerializer(serializers.Serializer):
        blinded = serializers.BooleanField()

        class Meta:
            ref_name = "Blinding"

    @extend_schema(request=InputSerializer, responses=InputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        study = workflow.set_blinding(
            study=get_object_or_404(Study, pk=pk), blinded=data.validated_data["blinded"], actor=request.user
        )
        return Response({"blinded": study.blinded}, status=status.HTTP_200_OK)
