"""API of the review workflow: reader assignment, blinding, arbitration, the annotation queue,
research statistics and exports, edit-distance recomputation. Thin: roles here, work in
``reviewer.services``."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, re_path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import APIView

from reviewer import selectors
from reviewer.api.serializers import LabelExtractionSerializer
from reviewer.models import Arbitration, Assignment, LabelExtraction, Review, Study
from reviewer.permissions import RolePermission
from reviewer.roles import Role, has_role
from reviewer.services import exports, labels, plots, stats, workflow
from reviewer.services.audit import audit

R, A, S = Role.RADIOLOGIST, Role.ANNOTATOR, Role.RESEARCHER


def _drf_error(exc: DjangoValidationError) -> ValidationError:
    return ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)


# --- assignment and blinding -------------------------------------------------------------


class AssignmentSerializer(serializers.ModelSerializer):
    reader = serializers.StringRelatedField()
    reader_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Assignment
        fields = ["id", "study", "reader", "reader_id", "created_at"]
        read_only_fields = fields


class AssignSerializer(serializers.Serializer):
    study = serializers.PrimaryKeyRelatedField(queryset=Study.objects.all())
    readers = serializers.ListField(child=serializers.IntegerField(), min_length=1)


class AssignmentViewSet(mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Readers assigned to studies. Admins assign (several readers per study allowed) and see
    all; a radiologist sees their own assignments only (blinding: not who else reads)."""

    serializer_class = AssignmentSerializer
    permission_classes = [RolePermission]
    read_roles = (R,)
    write_roles = ()  # admins only
    filterset_fields = ["study", "reader"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        qs = Assignment.objects.select_related("reader").order_by("study_id", "created_at")
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user to filter by
            return qs.none()
        return qs if has_role(self.request.user, Role.ADMIN) else qs.filter(reader=self.request.user)

    @extend_schema(request=AssignSerializer, responses=AssignmentSerializer(many=True))
    def create(self, request):  # type: ignore[no-untyped-def]
        data = AssignSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            workflow.assign_readers(
                study=data.validated_data["study"], reader_ids=data.validated_data["readers"], assigned_by=request.user
            )
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        qs = self.get_queryset().filter(study=data.validated_data["study"])
        return Response(AssignmentSerializer(qs, many=True).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance: Assignment) -> None:
        workflow.unassign_reader(study=instance.study, reader_id=instance.reader_id, actor=self.request.user)


class BlindingSerializer(serializers.Serializer):
    blinded = serializers.BooleanField()


class StudyBlindingView(APIView):
    """Set a study's blinding (admins): its readers then see neither the model identity nor
    other readers' reviews."""

    permission_classes = [RolePermission]
    read_roles = ()
    write_roles = ()

    @extend_schema(request=BlindingSerializer, responses=BlindingSerializer)
    def post(self, request, pk: int):  # type: ignore[no-untyped-def]
        data = BlindingSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        study = workflow.set_blinding(
            study=get_object_or_404(Study, pk=pk), blinded=data.validated_data["blinded"], actor=request.user
        )
        return Response({"blinded": study.blinded})


# --- arbitration ------------------------------------------------------------------------------


class ArbitrationSerializer(serializers.ModelSerializer):
    study = serializers.IntegerField(source="review.study_id", read_only=True)
    radpeer = serializers.CharField(source="review.radpeer", read_only=True)
    review_comment = serializers.CharField(source="review.comment", read_only=True)
    arbiter = serializers.StringRelatedField()

    class Meta:
        model = Arbitration
        fields = ["id", "review", "study", "radpeer", "review_comment", "state", "arbiter", "decision", "comment",
                  "created_at", "resolved_at"]  # fmt: skip
        read_only_fields = fields


class ResolveSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Review.Radpeer.choices)
    comment = serializers.CharField(allow_blank=False)


class ArbitrationViewSet(viewsets.ReadOnlyModelViewSet):
    """RADPEER 2b/3a/3b reviews awaiting (or after) arbitration. Admins see all; a radiologist
    only other readers' reviews on studies they neither read nor are assigned to."""

    serializer_class = ArbitrationSerializer
    permission_classes = [RolePermission]
    read_roles = (R,)
    action_roles = {"resolve": ((), (R,))}

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.arbitrations_for(self.request.user, state=self.request.query_params.get("state", ""))

    @extend_schema(request=ResolveSerializer, responses=ArbitrationSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):  # type: ignore[no-untyped-def]
        arbitration = self.get_object()  # 404 unless visible to this arbiter
        data = ResolveSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            arbitration = workflow.resolve_arbitration(
                arbitration_id=arbitration.pk, arbiter=request.user, **data.validated_data
            )
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        return Response(ArbitrationSerializer(arbitration).data)


# --- annotation queue --------------------------------------------------------------------------


class LabelQueueView(APIView):
    """The next reports for this annotator to confirm (see services.labels.annotation_queue)."""

    permission_classes = [RolePermission]
    read_roles = (A,)

    @extend_schema(
        parameters=[
            OpenApiParameter("strategy", str, enum=list(labels.STRATEGIES)),
            OpenApiParameter("seed", int),
            OpenApiParameter("limit", int),
        ],
        responses=LabelExtractionSerializer(many=True),
    )
    def get(self, request):  # type: ignore[no-untyped-def]
        try:
            seed = int(request.query_params.get("seed", 0))
            limit = max(1, min(int(request.query_params.get("limit", 20)), 200))
            ids = labels.annotation_queue(
                annotator=request.user, strategy=request.query_params.get("strategy", "uncertain"), seed=seed,
                limit=limit,
            )  # fmt: skip
        except ValueError as exc:
            raise ValidationError({"detail": f"seed and limit must be integers: {exc}"}) from exc
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        found = {e.pk: e for e in LabelExtraction.objects.filter(pk__in=ids)}
        return Response(LabelExtractionSerializer([found[i] for i in ids], many=True).data)


# --- statistics and exports --------------------------------------------------------------------


class StatsView(APIView):
    """RADPEER distribution (overall, per reader, per model, per scope), edit distances per
    RADPEER score, label agreement and per-condition draft accuracy (researchers, admins)."""

    permission_classes = [RolePermission]
    read_roles = (S,)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request):  # type: ignore[no-untyped-def]
        # reader names are identities: admins see them, researchers the readers' keys (the
        # ``reader_key`` of the export files)
        return Response(stats.overview(reader_keys=not has_role(request.user, Role.ADMIN)))


CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet",
                 "png": "image/png", "svg": "image/svg+xml"}  # fmt: skip


class ExportView(APIView):
    """A de-identified table as CSV or Parquet: ``reviews`` (one row per signed review),
    ``label_agreement``, ``draft_accuracy``. Columns: docs/workflow.md."""

    permission_classes = [RolePermission]
    read_roles = (S,)

    @extend_schema(
        responses={(200, "text/csv"): OpenApiTypes.BINARY, (200, "application/vnd.apache.parquet"): OpenApiTypes.BINARY}
    )
    def get(self, request, table: str, fmt: str):  # type: ignore[no-untyped-def]
        if table not in exports.TABLES or fmt not in exports.FORMATS:
            raise ValidationError(
                {"detail": f"tables: {', '.join(exports.TABLES)}; formats: {', '.join(exports.FORMATS)}"}
            )
        audit(actor=request.user, action="stats.exported", table=table, format=fmt)
        if fmt == "csv":  # streamed: rows are read and written in chunks, never all held at once
            response = StreamingHttpResponse(exports.stream_table_csv(table), content_type=CONTENT_TYPES[fmt])
        else:
            response = HttpResponse(exports.render_table(table, fmt), content_type=CONTENT_TYPES[fmt])
        response["Content-Disposition"] = f'attachment; filename="spinereview_{table}.{fmt}"'
        return response


class PlotView(APIView):
    permission_classes = [RolePermission]
    read_roles = (S,)

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY, (200, "image/svg+xml"): OpenApiTypes.BINARY})
    def get(self, request, name: str, fmt: str):  # type: ignore[no-untyped-def]
        if name not in plots.PLOTS or fmt not in plots.FORMATS:
            raise ValidationError({"detail": f"plots: {', '.join(plots.PLOTS)}; formats: {', '.join(plots.FORMATS)}"})
        return HttpResponse(plots.render(name, fmt), content_type=CONTENT_TYPES[fmt])


class RecomputeSerializer(serializers.Serializer):
    reviews = serializers.ListField(child=serializers.IntegerField(), required=False, allow_null=True, default=None)


class RecomputeEditDistancesView(APIView):
    """Recompute stored edit distances (all signed reviews, or the given ids). Admins."""

    permission_classes = [RolePermission]
    read_roles = ()
    write_roles = ()

    @extend_schema(request=RecomputeSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request):  # type: ignore[no-untyped-def]
        data = RecomputeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        n = workflow.recompute_edit_distances(review_ids=data.validated_data["reviews"], actor=request.user)
        return Response({"updated": n})


router = SimpleRouter()
router.register("assignments", AssignmentViewSet, basename="assignment")
router.register("arbitrations", ArbitrationViewSet, basename="arbitration")

urlpatterns = [
    path("studies/<int:pk>/blinding/", StudyBlindingView.as_view(), name="study-blinding"),
    path("label-queue/", LabelQueueView.as_view(), name="label-queue"),
    path("stats/", StatsView.as_view(), name="stats"),
    re_path(r"^stats/plots/(?P<name>[a-z_]+)\.(?P<fmt>png|svg)$", PlotView.as_view(), name="stats-plot"),
    re_path(r"^exports/(?P<table>[a-z_]+)\.(?P<fmt>[a-z]+)$", ExportView.as_view(), name="stats-export"),
    path("edit-distances/recompute/", RecomputeEditDistancesView.as_view(), name="edit-distances-recompute"),
    *router.urls,
]
