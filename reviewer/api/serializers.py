"""Representations shared by several endpoints (a study, a draft, a revision, a review...).

A serializer used by one endpoint only is nested in that endpoint's API class as its
``InputSerializer`` / ``OutputSerializer``; the ones here appear in several answers (the study
API and the viewer's one-round-trip payload, a revision list and a 409 conflict) and must stay
alike. Patient identities are included for admins only; blinding is applied per requesting user
(pass ``context={"request": request}``)."""

from __future__ import annotations

from rest_framework import serializers

from ml.conditions import BY_KEY
from reviewer.models import (
    Draft,
    DraftJob,
    Finding,
    LabelExtraction,
    ModelVersion,
    ReportRevision,
    Review,
    Series,
    StructuredReport,
    Study,
)
from reviewer.roles import Role, has_role
from reviewer.selectors import blind_analysis, blinded_for


def _blinded(serializer: serializers.BaseSerializer, study: Study) -> bool:
    """Blinding (Study.blinded) for the requesting user; see reviewer.selectors.blinding."""
    request = serializer.context.get("request")
    return blinded_for(request.user if request else None, study)


class SeriesSerializer(serializers.ModelSerializer):
    class Meta:
        model = Series
        fields = [
            "id", "series_uid", "series_number", "description", "modality", "manufacturer",
            "instance_count", "sequence_class", "sequence_subtype", "plane",
            "classification_confidence", "classification_reasons",
        ]  # fmt: skip


class StudySerializer(serializers.ModelSerializer):
    series = SeriesSerializer(many=True, read_only=True)
    IDENTITY_FIELDS = ("patient_id", "patient_name", "accession_number", "institution")

    class Meta:
        model = Study
        fields = [
            "id", "study_uid", "study_date", "description", "modalities", "status", "status_reason",
            "created_at", "updated_at", "series",
            "patient_id", "patient_name", "accession_number", "institution",
        ]  # fmt: skip
        read_only_fields = fields

    def to_representation(self, instance: Study) -> dict:
        data = super().to_representation(instance)
        request = self.context.get("request")
        if not (request and has_role(request.user, Role.ADMIN)):
            for name in self.IDENTITY_FIELDS:
                data.pop(name, None)
        return data


class FindingSerializer(serializers.ModelSerializer):
    condition_name = serializers.SerializerMethodField()

    class Meta:
        model = Finding
        fields = ["id", "condition", "condition_name", "probability", "present", "level", "side", "key_slices",
                  "boxes"]  # fmt: skip

    def get_condition_name(self, obj: Finding) -> str:
        return BY_KEY[obj.condition].name if obj.condition in BY_KEY else obj.condition


class DraftJobSerializer(serializers.ModelSerializer):
    model_version = serializers.StringRelatedField()
    draft = serializers.SerializerMethodField(help_text="id of the job's draft, null until it is stored")

    class Meta:
        model = DraftJob
        fields = ["id", "pipeline_version", "model_version", "state", "reason", "attempts", "queued_at",
                  "started_at", "finished_at", "log", "draft"]  # fmt: skip

    def get_draft(self, obj: DraftJob) -> int | None:
        draft = getattr(obj, "draft", None)
        return draft.pk if draft is not None else None

    def to_representation(self, instance: DraftJob) -> dict:
        data = super().to_representation(instance)
        if _blinded(self, instance.study):
            data["pipeline_version"] = None  # blinded readers do not learn which model drafted
            data["model_version"] = None
        return data


class DraftStructuredReportSerializer(serializers.ModelSerializer):
    class Meta:
        model = StructuredReport
        fields = ["id", "source", "parent", "sop_instance_uid", "series_instance_uid", "series_description",
                  "boxes", "created_at"]  # fmt: skip


class DraftSerializer(serializers.ModelSerializer):
    """A draft with its findings; ``similar_cases``, ``skipped`` and ``timings`` are lifted out of
    ``analysis`` (the full StudyAnalysis) for clients that only want those."""

    findings = FindingSerializer(many=True, read_only=True)
    model_version = serializers.StringRelatedField()
    similar_cases = serializers.SerializerMethodField()
    skipped = serializers.SerializerMethodField(help_text="instances/series left out: [{series_uid, sop_uid, reason}]")
    timings = serializers.SerializerMethodField(help_text="seconds per agent family and platform step")
    structured_reports = DraftStructuredReportSerializer(many=True, read_only=True)

    class Meta:
        model = Draft
        fields = ["id", "study", "job", "model_version", "text", "sections", "analysis", "created_at", "findings",
                  "similar_cases", "skipped", "timings", "structured_reports"]  # fmt: skip

    def get_similar_cases(self, obj: Draft) -> list[dict]:
        return list((obj.analysis or {}).get("similar_cases", []))

    def get_skipped(self, obj: Draft) -> list[dict]:
        return list((obj.analysis or {}).get("skipped", []))

    def get_timings(self, obj: Draft) -> dict[str, float]:
        analysis = obj.analysis or {}
        out = {a["name"]: a["seconds"] for a in analysis.get("agents", []) if "name" in a}
        out.update({k: v for k, v in analysis.get("platform_timings", {}).items() if k.endswith("_s")})
        return out

    def to_representation(self, instance: Draft) -> dict:
        data = super().to_representation(instance)
        if _blinded(self, instance.study):
            data["model_version"] = None
            data["analysis"] = blind_analysis(data.get("analysis") or {})
            data["analysis"].pop("pipeline_folder", None)
            for sr in data["structured_reports"]:
                sr["series_description"] = None  # the AI SR's description names the pipeline version
        return data


class RevisionSerializer(serializers.ModelSerializer):
    author = serializers.StringRelatedField()
    parent = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = ReportRevision
        fields = [
            "id",
            "number",
            "parent",
            "draft",
            "author",
            "text",
            "sections",
            "is_conflict",
            "is_addendum",
            "addendum_reason",
            "created_at",
        ]
        read_only_fields = ["id", "number", "parent", "draft", "author", "is_conflict", "is_addendum",
                            "addendum_reason", "created_at"]  # fmt: skip


DB_ID_MAX = 2**63 - 1  # a larger id cannot exist: refuse it here (400) instead of overflowing the database


class ReviewSerializer(serializers.ModelSerializer):
    reader = serializers.StringRelatedField()
    needs_arbitration = serializers.BooleanField(read_only=True)

    class Meta:
        model = Review
        fields = ["id", "study", "reader", "draft", "radpeer", "comment", "in_scope", "signed_revision",
                  "signed_at", "edit_distance", "needs_arbitration"]  # fmt: skip
        read_only_fields = fields


class LabelExtractionSerializer(serializers.ModelSerializer):
    class Meta:
        model = LabelExtraction
        fields = ["id", "study", "revision", "source", "report_text", "extractor", "labels", "evidence",
                  "confidence", "created_at"]  # fmt: skip
        read_only_fields = fields


class ModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "version",
            "description",
            "artifact_uri",
            "metadata",
            "is_active",
            "created_at",
        ]
        read_only_fields = ["id", "created_at"]
