"""Thin DRF views: permissions per role, reads from selectors, writes through services."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from reviewer import selectors
from reviewer.api import serializers as s
from reviewer.models import AuditEvent, LabelConfirmation, ModelVersion, Study
from reviewer.permissions import IsAdmin, RolePermission
from reviewer.roles import Role
from reviewer.services import reports
from reviewer.services.audit import audit
from reviewer.services.drafting import request_draft

R, A, S = Role.RADIOLOGIST, Role.ANNOTATOR, Role.RESEARCHER


def _drf_error(exc: DjangoValidationError) -> ValidationError:
    return ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)


class StudyFilter(filters.FilterSet):
    date_from = filters.DateFilter(field_name="study_date", lookup_expr="gte")
    date_to = filters.DateFilter(field_name="study_date", lookup_expr="lte")
    modality = filters.CharFilter(field_name="modalities", lookup_expr="icontains")

    class Meta:
        model = Study
        fields = ["status", "study_uid"]


class StudyViewSet(viewsets.ReadOnlyModelViewSet):
    """Studies received from Orthanc, with series and their sequence classification.

    Not for researchers: a study carries its UID, date and description, and its revisions and
    reviews carry report text and reader names; researchers work from the pseudonymised
    statistics and exports (``reviewer.deid``), whose keys cannot be looked up here."""

    serializer_class = s.StudySerializer
    permission_classes = [RolePermission]
    read_roles = (R, A)
    action_roles = {
        "drafts": ((R,), ()),
        "jobs": ((R,), ()),
        "revisions": ((R,), (R,)),
        "sign": ((), (R,)),
        "reviews": ((R,), ()),
        "redraft": ((), ()),  # admins only
    }
    filterset_class = StudyFilter
    ordering_fields = ["created_at", "study_date", "status"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.study_list()

    @extend_schema(responses=s.DraftSerializer(many=True))
    @action(detail=True)
    def drafts(self, request, pk=None):  # type: ignore[no-untyped-def]
        study = self.get_object()
        return Response(s.DraftSerializer(selectors.drafts_for(study.pk), many=True, context={"request": request}).data)

    @extend_schema(responses=s.DraftJobSerializer(many=True))
    @action(detail=True)
    def jobs(self, request, pk=None):  # type: ignore[no-untyped-def]
        study = self.get_object()
        return Response(s.DraftJobSerializer(study.draft_jobs.all(), many=True, context={"request": request}).data)

    @extend_schema(request=s.RevisionCreateSerializer, responses=s.RevisionSerializer(many=True))
    @action(detail=True, methods=["get", "post"])
    def revisions(self, request, pk=None):  # type: ignore[no-untyped-def]
        """GET: the revisions the caller may read (their own chain; blinding policy in
        ``selectors.revisions_visible_to``). POST: a save to the caller's own chain; after
        sign-off only an addendum (with ``reason``)."""
        study = self.get_object()
        if request.method == "GET":
            return Response(s.RevisionSerializer(selectors.revisions_visible_to(request.user, study), many=True).data)
        data = s.RevisionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            revision = reports.save_revision(
                study=study,
                author=request.user,
                text=data.validated_data["text"],
                sections=data.validated_data["sections"],
                parent_id=data.validated_data["parent"],
                reason=data.validated_data["reason"],
            )
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        except reports.ReportSigned as exc:
            return Response({"detail": str(exc), "signed": True}, status=status.HTTP_409_CONFLICT)
        except reports.RevisionConflict as conflict:
            return Response(
                {
                    "detail": "Someone saved this report meanwhile. Your text is kept as a conflicting "
                    "revision; merge it into the current one and save again.",
                    "saved": s.RevisionSerializer(conflict.saved).data,
                    "head": s.RevisionSerializer(conflict.head).data if conflict.head else None,
                },
                status=status.HTTP_409_CONFLICT,
            )
        return Response(s.RevisionSerializer(revision).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.SignSerializer, responses=s.ReviewSerializer)
    @action(detail=True, methods=["post"])
    def sign(self, request, pk=None):  # type: ignore[no-untyped-def]
        study = self.get_object()
        data = s.SignSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        try:
            review = reports.sign_review(
                study=study, reader=request.user, radpeer=v["radpeer"], comment=v["comment"],
                in_scope=v["in_scope"], revision_id=v["revision"],
            )  # fmt: skip
        except DjangoValidationError as exc:
            raise _drf_error(exc) from exc
        return Response(s.ReviewSerializer(review).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=s.ReviewSerializer(many=True))
    @action(detail=True)
    def reviews(self, request, pk=None):  # type: ignore[no-untyped-def]
        study = self.get_object()
        qs = selectors.reviews_visible_to(request.user, study.pk)
        return Response(s.ReviewSerializer(qs, many=True).data)

    @extend_schema(request=None, responses=s.DraftJobSerializer)
    @action(detail=True, methods=["post"])
    def redraft(self, request, pk=None):  # type: ignore[no-untyped-def]
        """Queue a draft with a given pipeline version (default: the active one)."""
        study = self.get_object()
        # a failed job of the same version is queued again (e.g. after the archive was repaired)
        job, created = request_draft(
            study=study, pipeline_version=request.data.get("pipeline_version"), retry_failed=True
        )
        audit(actor=request.user, action="draft.requested", obj=study, job=job.pk, created=created)
        return Response(s.DraftJobSerializer(job).data, status=201 if created else 200)


class ReviewViewSet(viewsets.ReadOnlyModelViewSet):
    """RADPEER reviews: admins see all, radiologists their own. Researchers get the reviews as
    the pseudonymised ``reviews`` export table, not here (reader names, comments, study ids)."""

    serializer_class = s.ReviewSerializer
    permission_classes = [RolePermission]
    read_roles = (R,)
    filterset_fields = ["study", "radpeer", "in_scope"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.reviews_visible_to(self.request.user)


class LabelExtractionViewSet(viewsets.ReadOnlyModelViewSet):
    """Extracted labels with the full report text: annotators (who confirm them) and admins.
    Researchers get the agreement tables of the exports instead (no report text)."""

    serializer_class = s.LabelExtractionSerializer
    permission_classes = [RolePermission]
    read_roles = (A,)
    filterset_fields = ["study", "source", "extractor"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.label_extractions()


class LabelConfirmationViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = s.LabelConfirmationSerializer
    permission_classes = [RolePermission]
    read_roles = (A,)  # confirmations name their annotator: not for researchers
    write_roles = (A,)
    filterset_fields = ["extraction", "annotator"]

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return LabelConfirmation.objects.select_related("annotator", "extraction")

    def perform_create(self, serializer):  # type: ignore[no-untyped-def]
        """The same service as the annotation page: all 17 labels, only signed/historical
        reports, one confirmation per annotator and extraction (a second POST corrects it)."""
        from django.core.exceptions import ValidationError as DjangoValidationError
        from rest_framework.exceptions import ValidationError

        from reviewer.services.labels import confirm_labels

        d = serializer.validated_data
        try:
            serializer.instance = confirm_labels(
                extraction=d["extraction"],
                annotator=self.request.user,
                labels=d["labels"],
                comment=d.get("comment", ""),
            )
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from exc


class ModelVersionViewSet(viewsets.ModelViewSet):
    """Drafting pipeline versions; exactly one may be active (set by an admin)."""

    serializer_class = s.ModelVersionSerializer
    permission_classes = [RolePermission]
    read_roles = (R, A, S)
    write_roles = ()
    queryset = ModelVersion.objects.all()

    @extend_schema(request=None, responses=s.ModelVersionSerializer)
    @action(detail=True, methods=["post"])
    @transaction.atomic
    def activate(self, request, pk=None):  # type: ignore[no-untyped-def]
        version = get_object_or_404(ModelVersion.objects.select_for_update(), pk=pk)
        ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        version.is_active = True
        version.save(update_fields=["is_active"])
        audit(actor=request.user, action="model.activated", obj=version)
        return Response(s.ModelVersionSerializer(version).data)


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = s.AuditEventSerializer
    permission_classes = [IsAdmin]
    queryset = AuditEvent.objects.select_related("actor")
    filterset_fields = ["action", "object_type", "object_id"]
