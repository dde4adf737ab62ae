"""Readers assigned to studies. Admins assign (several readers per study allowed) and see all;
a radiologist sees their own assignments only (blinding: not who else reads)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewer.api.lists import ListApi, paginated_response
from reviewer.models import Assignment, Study
from reviewer.permissions import RolePermission
from reviewer.roles import Role, has_role
from reviewer.services import workflow

R = Role.RADIOLOGIST


def _visible_assignments(user) -> QuerySet[Assignment]:
    qs = Assignment.objects.select_related("reader").order_by("study_id", "created_at")
    return qs if has_role(user, Role.ADMIN) else qs.filter(reader=user)


class AssignmentSerializer(serializers.ModelSerializer):
    reader = serializers.StringRelatedField()
    reader_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Assignment
        fields = ["id", "study", "reader", "reader_id", "created_at"]
        read_only_fields = fields


class AssignmentListApi(ListApi):
    """Readers assigned to studies. Admins assign (several readers per study allowed) and see
    all; a radiologist sees their own assignments only (blinding: not who else reads)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}}  # POST: admins only
    queryset = Assignment.objects.none()
    filterset_fields = ["study", "reader"]
    ordering_fields = ["id", "study", "reader", "reader_id", "created_at"]
    OutputSerializer = AssignmentSerializer

    class InputSerializer(serializers.Serializer):
        study = serializers.PrimaryKeyRelatedField(queryset=Study.objects.all())
        readers = serializers.ListField(child=serializers.IntegerField(), min_length=1)

        class Meta:
            ref_name = "Assign"

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request, view=self, queryset=_visible_assignments(request.user),
            serializer_class=self.OutputSerializer,
        )  # fmt: skip

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer(many=True)})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        study = data.validated_data["study"]
        workflow.assign_readers(study=study, reader_ids=data.validated_data["readers"], assigned_by=request.user)
        assignments = _visible_assignments(request.user).filter(study=study)
        return Response(self.OutputSerializer(assignments, many=True).data, status=status.HTTP_201_CREATED)


class AssignmentDetailApi(APIView):
    """Readers assigned to studies. Admins assign (several readers per study allowed) and see
    all; a radiologist sees their own assignments only (blinding: not who else reads)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}}  # DELETE: admins only
    OutputSerializer = AssignmentSerializer

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        assignment = get_object_or_404(_visible_assignments(request.user), pk=pk)
        return Response(self.OutputSerializer(assignment).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        assignment = get_object_or_404(_visible_assignments(request.user), pk=pk)
        workflow.unassign_reader(study=assignment.study, reader_id=assignment.reader_id, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
