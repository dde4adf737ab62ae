"""The audit trail (admins only): who did what to which object, newest first."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewer.api.lists import ListApi, paginated_response
from reviewer.models import AuditEvent
from reviewer.permissions import RolePermission
from reviewer.roles import Role


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.StringRelatedField()

    class Meta:
        model = AuditEvent
        fields = ["id", "actor", "action", "object_type", "object_id", "data", "at"]


def _events():
    return AuditEvent.objects.select_related("actor")


class AuditEventListApi(ListApi):
    """Audit events, filtered by ``action``, ``object_type`` and ``object_id``."""

    permission_classes = [RolePermission]
    allowed_roles: dict[str, set[Role]] = {}  # admins only
    queryset = AuditEvent.objects.none()
    filterset_fields = ["action", "object_type", "object_id"]
    ordering_fields = ["id", "actor", "action", "object_type", "object_id", "data", "at"]
    OutputSerializer = AuditEventSerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(
            request=request, view=self, queryset=_events(), serializer_class=self.OutputSerializer
        )


class AuditEventDetailApi(APIView):
    """One audit event."""

    permission_classes = [RolePermission]
    allowed_roles: dict[str, set[Role]] = {}  # admins only
    OutputSerializer = AuditEventSerializer

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, pk: int) -> Response:
        return Response(self.OutputSerializer(get_object_or_404(_events(), pk=pk)).data)
