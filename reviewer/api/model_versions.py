"""Drafting pipeline versions: every role reads them; admins register, edit, remove and activate
(exactly one is active)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewer.api.lists import ListApi, paginated_response
from reviewer.api.serializers import ModelVersionSerializer
from reviewer.models import ModelVersion
from reviewer.permissions import RolePermission
from reviewer.roles import Role
from reviewer.services import model_versions

READERS = {Role.RADIOLOGIST, Role.ANNOTATOR, Role.RESEARCHER}  # writes: admins only


class ModelVersionListApi(ListApi):
    """Drafting pipeline versions; exactly one may be active (set by an admin)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": READERS}
    queryset = ModelVersion.objects.none()
    ordering_fields = ["id", "name", "version", "description", "artifact_uri", "metadata", "is_active", "created_at"]
    InputSerializer = OutputSerializer = ModelVersionSerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request, view=self, queryset=ModelVersion.objects.all(), serializer_class=self.OutputSerializer
        )

    @extend_schema(request=InputSerializer, responses={201: OutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = model_versions.create_model_version(**data.validated_data)
        return Response(self.OutputSerializer(version).data, status=status.HTTP_201_CREATED)


class ModelVersionDetailApi(APIView):
    """Drafting pipeline versions; exactly one may be active (set by an admin)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": READERS}
    InputSerializer = OutputSerializer = ModelVersionSerializer

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(self.OutputSerializer(get_object_or_404(ModelVersion, pk=pk)).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def put(self, request: Request, pk: int) -> Response:
        return self._update(request, pk, partial=False)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def patch(self, request: Request, pk: int) -> Response:
        return self._update(request, pk, partial=True)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, pk: int) -> Response:
        model_versions.delete_model_version(version=get_object_or_404(ModelVersion, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _update(self, request: Request, pk: int, *, partial: bool) -> Response:
        version = get_object_or_404(ModelVersion, pk=pk)
        data = self.InputSerializer(version, data=request.data, partial=partial)  # validators see the row
        data.is_valid(raise_exception=True)
        version = model_versions.update_model_version(version=version, **data.validated_data)
        return Response(self.OutputSerializer(version).data)


class ModelVersionActivateApi(APIView):
    """Make this version the active one (admins)."""

    permission_classes = [RolePermission]
    allowed_roles: dict[str, set[Role]] = {}  # admins only
    OutputSerializer = ModelVersionSerializer

    @extend_schema(request=None, responses=OutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        version = get_object_or_404(ModelVersion, pk=pk)
        version = model_versions.activate_model_version(version_id=version.pk, actor=request.user)
        return Response(self.OutputSerializer(version).data)
