"""Research statistics, plots and de-identified exports (researchers and admins).

Nothing here names a patient or a reader: admins see reader names in the overview, researchers
the readers' keys (the ``reader_key`` of the export files)."""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from reviewer.permissions import RolePermission
from reviewer.research import exports, plots, stats
from reviewer.roles import Role, has_role
from reviewer.services.audit import audit

S = Role.RESEARCHER
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet",
                 "png": "image/png", "svg": "image/svg+xml"}  # fmt: skip


class StatsApi(APIView):
    """RADPEER distribution (overall, per reader, per model, per scope), edit distances per
    RADPEER score, label agreement and per-condition draft accuracy (researchers, admins)."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {S}}

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        return Response(stats.overview(reader_keys=not has_role(request.user, Role.ADMIN)))


class ExportApi(APIView):
    """A de-identified table as CSV or Parquet: ``reviews`` (one row per signed review),
    ``label_agreement``, ``draft_accuracy``. Columns: docs/workflow.md."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {S}}

    @extend_schema(
        responses={(200, "text/csv"): OpenApiTypes.BINARY, (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY}
    )
    def get(self, request: Request, table: str, fmt: str) -> HttpResponse | StreamingHttpResponse:
        if table not in exports.TABLES or fmt not in exports.FORMATS:
            raise ValidationError(
                {"detail": f"tables: {', '.join(exports.TABLES)}; formats: {', '.join(exports.FORMATS)}"}
            )
        audit(actor=request.user, action="stats.exported", table=table, format=fmt)
        response: HttpResponse | StreamingHttpResponse
        if fmt == "csv":  # streamed: rows are read and written in chunks, never all held at once
            response = StreamingHttpResponse(exports.stream_table_csv(table), content_type=CONTENT_TYPES[fmt])
        else:
            response = HttpResponse(exports.render_table(table, fmt), content_type=CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="spinereview_{table}.{fmt}"'
        return response


class PlotApi(APIView):
    """One statistics plot as PNG or SVG."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {S}}

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY, (200, "image/svg+xml"): OpenApiTypes.BINARY})
    def get(self, request: Request, name: str, fmt: str) -> HttpResponse:
        if name not in plots.PLOTS or fmt not in plots.FORMATS:
            raise ValidationError({"detail": f"plots: {', '.join(plots.PLOTS)}; formats: {', '.join(plots.FORMATS)}"})
        return HttpResponse(plots.render(name, fmt), content_type=CONTENT_TYPES[fmt])
