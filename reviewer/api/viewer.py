"""Endpoints the OHIF review panels need beyond the study API (ohif-extension/src/api.ts).

- ``GET  /api/viewer/studies/<study_uid>/``: everything the panels show in one round trip
  (study status, newest draft with findings and similar cases, draft job, the head revision of
  the caller's own report chain, the caller's review, the newest box SR they may see, the
  draft's provenance: which agent call each finding sentence states, which sentences of the
  caller's report are the AI's, what the consistency check changed; the patient's priors with
  their signed reports), so a study opened before its draft exists can poll one URL;
- ``POST /api/studies/<id>/boxes/``: a reader's corrected box set, stored as a new SR version
  (``reviewer.integrations.sr.write_reader_sr``; nothing is replaced);
- ``GET  /api/viewer/next-study/?after=<id>``: the next study waiting for review, in the worklist's reading
  order (shortcut).

Radiologists read and write, admins always; not researchers (study UID, report text and names,
as the study API).
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ml.agents.analysis import ConditionResult
from ml.agents.report.provenance import annotate, check_summary, sentence_links
from ml.conditions import CONDITIONS
from ml.report_sections import viewer_vocabulary
from reviewer import selectors
from reviewer.api import serializers as s
from reviewer.models import Draft, DraftJob, ReportRevision, StructuredReport, Study
from reviewer.permissions import RolePermission
from reviewer.roles import Role

R = Role.RADIOLOGIST


class StructuredReportSerializer(serializers.ModelSerializer):
    author = serializers.StringRelatedField()

    class Meta:
        model = StructuredReport
        fields = ["id", "source", "parent", "author", "sop_instance_uid", "series_instance_uid",
                  "series_description", "boxes", "created_at"]  # fmt: skip


class BoxSerializer(serializers.Serializer):
    """One box of a reader's set (part of ``StudyBoxesApi``'s input)."""

    condition = serializers.CharField()
    sop_uid = serializers.CharField()
    series_uid = serializers.CharField(required=False, allow_blank=True)
    xyxy = serializers.ListField(child=serializers.FloatField(), min_length=4, max_length=4)
    label = serializers.CharField(required=False, allow_blank=True, default="")
    frame = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=1, help_text="frame of a multi-frame image"
    )


def _head_sr(study: Study, user) -> StructuredReport | None:
    """The newest reader SR, else the AI SR of the newest draft. A blinded reader gets only
    their own reader SRs: another reader's boxes, name and timing are theirs to keep."""
    readers = study.structured_reports.filter(source=StructuredReport.Source.READER)
    if selectors.blinded_for(user, study):
        readers = readers.filter(author=user)
    reader = readers.order_by("-created_at").first()
    return reader or study.structured_reports.filter(source=StructuredReport.Source.AI).order_by("-created_at").first()


class SentenceLinkSerializer(serializers.Serializer):
    """A finding sentence of the draft and the agent call it states (``ml.agents.report.provenance``)."""

    section = serializers.CharField()
    sentence = serializers.CharField(help_text="the sentence's text, whitespace collapsed, numbering dropped")
    condition = serializers.CharField()
    level = serializers.CharField(allow_blank=True)
    side = serializers.CharField(allow_blank=True)
    probability = serializers.FloatField()
    present = serializers.BooleanField()
    stated = serializers.IntegerField(help_text="1 stated, -1 hedged")


class AnnotatedSentenceSerializer(serializers.Serializer):
    section = serializers.CharField(allow_blank=True)
    sentence = serializers.CharField()
    origin = serializers.ChoiceField(choices=["ai", "typed"])
    conditions = serializers.ListField(child=serializers.CharField())


class CheckChangeSerializer(serializers.Serializer):
    action = serializers.CharField()
    section = serializers.CharField(allow_blank=True)
    sentence = serializers.CharField(allow_blank=True)
    condition = serializers.CharField(allow_blank=True)
    reason = serializers.CharField(allow_blank=True)
    replacement = serializers.CharField(allow_blank=True, required=False, default="")


class DraftProvenanceSerializer(serializers.Serializer):
    """Where the draft's sentences came from and what the consistency check did."""

    links = SentenceLinkSerializer(many=True)
    current = AnnotatedSentenceSerializer(many=True, help_text="the caller's report now (head revision, else draft)")
    check_summary = serializers.DictField(child=serializers.IntegerField(), help_text="changes counted by action")
    changes = CheckChangeSerializer(many=True)
    residual = serializers.ListField(child=serializers.DictField())


class PriorReportSerializer(serializers.Serializer):
    text = serializers.CharField()
    signed_at = serializers.DateTimeField()
    reader = serializers.CharField(allow_null=True, help_text="null where the prior is blinded for the caller")
    is_addendum = serializers.BooleanField()
    addendum_reason = serializers.CharField(allow_blank=True)


class PriorSerializer(serializers.Serializer):
    """An earlier study of the same patient (``reviewer.selectors.priors_for``)."""

    id = serializers.IntegerField(source="study.pk")
    study_uid = serializers.CharField(source="study.study_uid")
    study_date = serializers.DateField(source="study.study_date", allow_null=True)
    description = serializers.CharField(source="study.description")
    modalities = serializers.CharField(source="study.modalities")
    status = serializers.CharField(source="study.status")
    report = PriorReportSerializer(allow_null=True)


def draft_provenance(draft: Draft, head: ReportRevision | None) -> dict:
    """The draft's sentence links (computed from its text and its findings), the caller's
    current report annotated sentence by sentence, and the consistency check's changes."""
    thresholds = {c.get("condition"): c.get("threshold", 0.5) for c in (draft.analysis or {}).get("conditions", [])}
    calls = [
        ConditionResult(f.condition, f.probability, f.present, thresholds.get(f.condition, 0.5), f.level, f.side)
        for f in draft.findings.all()
    ]
    links = sentence_links(draft.text, calls)
    check = (draft.analysis or {}).get("report_check") or {}
    return {
        "links": [link.to_dict() for link in links],
        "current": [a.to_dict() for a in annotate(head.text if head else draft.text, draft.text, links)],
        "check_summary": check_summary(check),
        "changes": check.get("changes") or [],
        "residual": check.get("residual") or [],
    }


class ViewerStudyApi(APIView):
    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}}

    @extend_schema(responses=dict)
    def get(self, request: Request, study_uid: str) -> Response:
        study = get_object_or_404(selectors.study_list(), study_uid=study_uid)
        draft = selectors.drafts_for(study.pk).order_by("-created_at").first()
        job = study.draft_jobs.order_by("-queued_at").first()
        head = selectors.head_revision(study, author=request.user)  # the caller's own chain, never another's
        review = study.reviews.filter(reader=request.user).first()
        sr = _head_sr(study, request.user)
        analysis = draft.analysis if draft else {}
        ctx = {"request": request}  # the serializers apply blinding (reviewer.selectors.blinding) per user
        sr_data = StructuredReportSerializer(sr).data if sr else None
        if sr_data and selectors.blinded_for(request.user, study):
            sr_data["series_description"] = None  # the AI SR's description names the pipeline version
        return Response(
            {
                "study": s.StudySerializer(study, context=ctx).data,
                "draft": s.DraftSerializer(draft, context=ctx).data if draft else None,
                "similar_cases": analysis.get("similar_cases", []) if isinstance(analysis, dict) else [],
                "job": s.DraftJobSerializer(job, context=ctx).data if job else None,
                "head_revision": s.RevisionSerializer(head).data if head else None,
                "review": s.ReviewSerializer(review).data if review else None,
                "structured_report": sr_data,
                "conditions": [{"key": c.key, "name": c.name, "category": c.category} for c in CONDITIONS],
                "job_pending": bool(job and job.state not in (DraftJob.State.DONE, DraftJob.State.FAILED)),
                "report_sections": viewer_vocabulary(),  # the viewer cuts sections as ml.report_sections does
                "draft_provenance": DraftProvenanceSerializer(draft_provenance(draft, head)).data if draft else None,
                "priors": PriorSerializer(selectors.priors_for(study, user=request.user), many=True).data,
            }
        )


class StudyBoxesApi(APIView):
    """Store the reader's corrected box set as a new SR version (400: a box that cannot be
    encoded; 503: Orthanc did not answer, nothing saved)."""

    permission_classes = [RolePermission]
    allowed_roles = {"POST": {R}}
    OutputSerializer = StructuredReportSerializer

    class InputSerializer(serializers.Serializer):
        parent = serializers.IntegerField(allow_null=True, help_text="the SR that was edited; null for none")
        boxes = BoxSerializer(many=True, help_text="the complete box set the reader wants")

        class Meta:
            ref_name = "BoxesSave"

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request, pk: int) -> Response:
        from reviewer.integrations import sr as sr_service  # imports highdicom: only when saving

        study = get_object_or_404(Study, pk=pk)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        parent_id = data.validated_data["parent"]
        parent = get_object_or_404(StructuredReport, pk=parent_id, study=study) if parent_id else None
        row = sr_service.write_reader_sr(
            study=study, parent=parent, author=request.user, boxes=data.validated_data["boxes"]
        )
        return Response(self.OutputSerializer(row).data, status=status.HTTP_201_CREATED)


class NextStudyApi(APIView):
    """The next study the caller should read, in the worklist's reading order
    (``reviewer.selectors.next_unread_study``: a waiting draft the caller has not signed, urgent
    AI findings first, then oldest received), after study ``after``."""

    permission_classes = [RolePermission]
    allowed_roles = {"GET": {R}}

    @extend_schema(responses=dict)
    def get(self, request: Request) -> Response:
        after = request.query_params.get("after")
        study = selectors.next_unread_study(
            user=request.user, after_id=int(after) if after and after.isdigit() else None
        )
        if study is None:
            return Response({"detail": "no further study waiting for review"}, status=status.HTTP_404_NOT_FOUND)
        return Response({"id": study.pk, "study_uid": study.study_uid})
