"""The AI side: pipeline versions, drafting jobs, the drafts with their findings, and the DICOM SRs
of the AI's (and the readers' corrected) boxes."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from ml.conditions import CONDITION_KEYS
from reviewer.models.base import ImmutableModel
from reviewer.models.studies import Study


class ModelVersion(models.Model):
    """A deployable version of the drafting pipeline (SpineFM + agents + decoder)."""

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    artifact_uri = models.CharField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="unique_model_version"),
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model"),
        ]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"


class DraftJob(models.Model):
    """One drafting run of a study by one pipeline version (at most one per pair)."""

    class State(models.TextChoices):
        QUEUED = "queued"
        FETCHING = "fetching"
        ENCODING = "encoding"
        DRAFTING = "drafting"
        DONE = "done"
        FAILED = "failed"

    study = models.ForeignKey(Study, related_name="draft_jobs", on_delete=models.CASCADE)
    pipeline_version = models.CharField(max_length=200)
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT)
    state = models.CharField(max_length=10, choices=State.choices, default=State.QUEUED)
    reason = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    queued_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    log = models.JSONField(default=list, blank=True)  # [{"at": iso, "state": ..., "note": ...}]
    # an admin's forced draft of a study the scope check refused (not a spine MRI, no sagittal T2)
    scope_override = models.BooleanField(default=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "pipeline_version"], name="one_job_per_study_pipeline")]
        ordering = ["-queued_at"]


class Draft(ImmutableModel):
    """The AI draft report of one job. Never edited: corrections are ReportRevisions."""

    study = models.ForeignKey(Study, related_name="drafts", on_delete=models.CASCADE)
    job = models.OneToOneField(DraftJob, related_name="draft", on_delete=models.PROTECT)
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT)
    text = models.TextField()
    sections = models.JSONField(default=dict, blank=True)
    analysis = models.JSONField(default=dict, blank=True)  # full StudyAnalysis incl. timings
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        # a study's newest draft (the one the viewer and the worklist show), for one study or all
        indexes = [models.Index(fields=["study", "-created_at", "-id"], name="draft_study_newest")]


class Finding(ImmutableModel):
    draft = models.ForeignKey(Draft, related_name="findings", on_delete=models.CASCADE)
    condition = models.CharField(max_length=40, choices=[(k, k) for k in CONDITION_KEYS])
    probability = models.FloatField()
    present = models.BooleanField()
    level = models.CharField(max_length=16, blank=True)
    side = models.CharField(max_length=10, blank=True)
    key_slices = models.JSONField(default=list, blank=True)  # [{"series_uid", "sop_uid", "index"}]
    boxes = models.JSONField(default=list, blank=True)  # [{"sop_uid", "xyxy": [...], "xyxy_norm": [...]}]

    class Meta:
        ordering = ["draft", "condition"]
        constraints = [models.UniqueConstraint(fields=["draft", "condition"], name="one_finding_per_condition")]
        # the drafts that call a condition present (the worklist's urgent order and finding filter),
        # without reading the absent ones, most of the table
        indexes = [
            models.Index(fields=["condition", "draft"], condition=Q(present=True), name="finding_present_condition")
        ]


class StructuredReport(ImmutableModel):
    """A DICOM Comprehensive SR (TID 1500) stored in Orthanc: the AI's boxes and key slices of a
    draft, or a reader's corrected version (``parent`` = the SR that was edited). Never replaced:
    every correction is a new SR instance and a new row, so corrections can feed training."""

    class Source(models.TextChoices):
        AI = "ai"
        READER = "reader"
        REPORT = "report"  # a reader's signed report text (TID 2000), reviewer/integrations/report_sr.py

    study = models.ForeignKey(Study, related_name="structured_reports", on_delete=models.CASCADE)
    draft = models.ForeignKey(Draft, null=True, blank=True, related_name="structured_reports", on_delete=models.PROTECT)
    parent = models.ForeignKey("self", null=True, blank=True, related_name="children", on_delete=models.PROTECT)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    source = models.CharField(max_length=10, choices=Source.choices)
    sop_instance_uid = models.CharField(max_length=64, unique=True)
    series_instance_uid = models.CharField(max_length=64)
    orthanc_id = models.CharField(max_length=64, blank=True)
    series_description = models.CharField(max_length=64, blank=True)
    # [{"condition", "series_uid", "sop_uid", "xyxy": [x0, y0, x1, y1] (pixels), "label"}]
    boxes = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "created_at"]
