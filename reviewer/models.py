"""Data model. Pixels live only in Orthanc; rows here hold UIDs and derived results.

Immutability rules that the rest of the code relies on:
- a ``Draft`` (AI output) is never edited once written;
- a ``ReportRevision`` is never edited: every save appends one, with author and time;
- an ``AuditEvent`` is append-only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from ml.conditions import CONDITION_KEYS


class ImmutableModel(models.Model):
    """A row that may be created but never updated (drafts, revisions, audit events)."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise ValueError(f"{type(self).__name__} rows are immutable; create a new one instead")
        super().save(*args, **kwargs)


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


class Study(models.Model):
    class Status(models.TextChoices):
        AWAITING_DRAFT = "awaiting_draft", "Awaiting draft"
        DRAFTING = "drafting", "Drafting"
        DRAFT_READY = "draft_ready", "Draft ready"
        IN_REVIEW = "in_review", "In review"
        SIGNED = "signed", "Signed"
        FAILED = "failed", "Draft failed"
        # not drafted by design (the reason says why): an MR that is no readable spine MRI, and
        # studies of other modalities (CT, CR, XA, ...) that the spine pipeline does not apply to
        OUT_OF_SCOPE = "out_of_scope", "Not drafted"
        NOT_APPLICABLE = "not_applicable", "Not applicable"

    study_uid = models.CharField(max_length=64, unique=True)
    orthanc_id = models.CharField(max_length=64, unique=True)
    # Identities: visible to admins only (serializers enforce it).
    patient_id = models.CharField(max_length=64, blank=True)
    # IssuerOfPatientID (0010,0021): the authority that assigned patient_id. Two hospitals can
    # hand out the same PatientID to different people, so a patient is the pair, never the id.
    patient_id_issuer = models.CharField(max_length=64, blank=True)
    patient_name = models.CharField(max_length=200, blank=True)
    accession_number = models.CharField(max_length=64, blank=True)
    study_date = models.DateField(null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)
    modalities = models.CharField(max_length=64, blank=True)
    institution = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.AWAITING_DRAFT)
    status_reason = models.TextField(blank=True)
    # Multi-reader studies: readers do not see each other's reviews nor which model drafted.
    blinded = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "-created_at"]),
            models.Index(fields=["patient_id", "patient_id_issuer"], name="study_patient_identity"),  # priors
        ]
        verbose_name_plural = "studies"

    def __str__(self) -> str:
        return self.study_uid


class Series(models.Model):
    class SequenceClass(models.TextChoices):
        T1 = "T1", "T1-weighted"
        T2 = "T2", "T2-weighted (incl. STIR, Dixon)"
        OTHER = "other", "Other"

    class Plane(models.TextChoices):
        SAGITTAL = "sagittal"
        AXIAL = "axial"
        CORONAL = "coronal"
        OBLIQUE = "oblique"
        UNKNOWN = "unknown"

    study = models.ForeignKey(Study, related_name="series", on_delete=models.CASCADE)
    series_uid = models.CharField(max_length=64, unique=True)
    orthanc_id = models.CharField(max_length=64, unique=True)
    series_number = models.IntegerField(null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)
    modality = models.CharField(max_length=16, blank=True)
    manufacturer = models.CharField(max_length=100, blank=True)
    instance_count = models.PositiveIntegerField(default=0)
    sequence_class = models.CharField(max_length=8, choices=SequenceClass.choices, blank=True)
    sequence_subtype = models.CharField(max_length=32, blank=True)
    plane = models.CharField(max_length=10, choices=Plane.choices, blank=True)
    classification_confidence = models.FloatField(null=True, blank=True)
    classification_reasons = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["study", "series_number", "id"]
        verbose_name_plural = "series"

    def __str__(self) -> str:
        return f"{self.series_number or '-'} {self.description}"


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


class ReportRevision(ImmutableModel):
    """Every save of a report. Each reader has their own chain per study (the revisions they
    authored, rooted at the AI draft), so no reader ever edits, signs or sees another reader's
    text by accident: blinding holds by construction. ``parent`` is the revision of that chain
    the author was editing; a save whose parent is not the chain's current head is kept too,
    flagged as a conflict, so nothing is lost. After sign-off a change is an addendum (a new
    revision flagged ``is_addendum`` with a reason), never a silent edit."""

    study = models.ForeignKey(Study, related_name="revisions", on_delete=models.CASCADE)
    number = models.PositiveIntegerField()  # 1, 2, ... within the author's chain (no gaps from others)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    draft = models.ForeignKey(Draft, null=True, blank=True, on_delete=models.PROTECT)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    text = models.TextField()
    sections = models.JSONField(default=dict, blank=True)
    is_conflict = models.BooleanField(default=False)
    is_addendum = models.BooleanField(default=False)
    addendum_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "author", "number"]
        constraints = [
            models.UniqueConstraint(fields=["study", "author", "number"], name="unique_revision_number_per_chain"),
            # backstops of the save service's lock: a chain never forks silently
            models.UniqueConstraint(
                fields=["parent"], condition=Q(is_conflict=False), name="one_accepted_child_per_revision"
            ),
            models.UniqueConstraint(
                fields=["study", "author"],
                condition=Q(parent__isnull=True, is_conflict=False),
                name="one_root_per_chain",
            ),
            models.CheckConstraint(condition=Q(is_addendum=False) | ~Q(addendum_reason=""), name="addendum_has_reason"),
        ]


class Review(models.Model):
    """One reader's RADPEER review of a study's AI draft, signed at most once."""

    class Radpeer(models.TextChoices):
        CONCUR = "1", "1 — Concur with interpretation"
        MISS_UNLIKELY_SIGNIFICANT = "2a", "2a — Understandable miss, unlikely clinically significant"
        MISS_LIKELY_SIGNIFICANT = "2b", "2b — Understandable miss, likely clinically significant"
        SHOULD_MAKE_UNLIKELY_SIGNIFICANT = "3a", "3a — Should be made most of the time, unlikely significant"
        SHOULD_MAKE_LIKELY_SIGNIFICANT = "3b", "3b — Should be made most of the time, likely significant"

    ARBITRATION_SCORES = ("2b", "3a", "3b")

    study = models.ForeignKey(Study, related_name="reviews", on_delete=models.CASCADE)
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="reviews", on_delete=models.PROTECT)
    draft = models.ForeignKey(Draft, null=True, blank=True, on_delete=models.PROTECT)
    radpeer = models.CharField(max_length=2, choices=Radpeer.choices, blank=True)
    comment = models.TextField(blank=True)
    in_scope = models.BooleanField(default=True)
    signed_revision = models.ForeignKey(ReportRevision, null=True, blank=True, on_delete=models.PROTECT)
    signed_at = models.DateTimeField(null=True, blank=True)
    edit_distance = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "reader"], name="one_review_per_reader")]
        ordering = ["-created_at"]

    @property
    def needs_arbitration(self) -> bool:
        return self.radpeer in self.ARBITRATION_SCORES


class Assignment(models.Model):
    """A reader assigned to a study (several per study for multi-reader studies)."""

    study = models.ForeignKey(Study, related_name="assignments", on_delete=models.CASCADE)
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="assignments", on_delete=models.PROTECT)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, related_name="+", on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["study", "reader"], name="one_assignment_per_reader")]
        ordering = ["created_at"]


class Arbitration(models.Model):
    """A review scored 2b/3a/3b goes to arbitration; an arbiter confirms or changes the score."""

    class State(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"

    review = models.OneToOneField(Review, related_name="arbitration", on_delete=models.CASCADE)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    arbiter = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT)
    decision = models.CharField(max_length=2, choices=Review.Radpeer.choices, blank=True)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]


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


class LabelExtraction(ImmutableModel):
    """Ternary labels for the 17 conditions extracted from one report text by one extractor."""

    class Source(models.TextChoices):
        SIGNED_REPORT = "signed_report"
        DRAFT = "draft"
        HISTORICAL = "historical"

    study = models.ForeignKey(Study, null=True, blank=True, related_name="label_extractions", on_delete=models.CASCADE)
    revision = models.ForeignKey(ReportRevision, null=True, blank=True, on_delete=models.CASCADE)
    source = models.CharField(max_length=20, choices=Source.choices)
    report_text = models.TextField()
    extractor = models.CharField(max_length=100)
    labels = models.JSONField()  # {condition_key: -1|0|1}
    evidence = models.JSONField(default=dict, blank=True)  # {condition_key: "sentence"}
    confidence = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]


class LabelConfirmation(models.Model):
    extraction = models.ForeignKey(LabelExtraction, related_name="confirmations", on_delete=models.CASCADE)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    labels = models.JSONField()  # the annotator's final {condition_key: -1|0|1}
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["extraction", "annotator"], name="one_confirmation_per_annotator")
        ]
        ordering = ["-created_at"]


class AuditEvent(ImmutableModel):
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["object_type", "object_id"])]


class OrthancCursor(models.Model):
    """Last processed sequence number of Orthanc's change feed (one row per Orthanc)."""

    orthanc_url = models.CharField(max_length=300, unique=True)
    last_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)


class FindingFeedback(ImmutableModel):
    """One reader's verdict on one AI finding: agree, disagree (the AI's present/absent call is
    wrong) or correct (right condition, another level or side). Rows are never edited: a reader
    who changes their mind adds a row, the newest row per (reader, finding) is their verdict,
    and the history stays for the training export's provenance."""

    class Verdict(models.TextChoices):
        AGREE = "agree"
        DISAGREE = "disagree"
        CORRECT = "correct"

    study = models.ForeignKey(Study, related_name="finding_feedback", on_delete=models.CASCADE)
    draft = models.ForeignKey(Draft, related_name="finding_feedback", on_delete=models.PROTECT)
    finding = models.ForeignKey(Finding, related_name="feedback", on_delete=models.PROTECT)
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="finding_feedback", on_delete=models.PROTECT)
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    level = models.CharField(max_length=16, blank=True)  # the reader's level (correct), else blank
    side = models.CharField(max_length=10, blank=True)  # the reader's side (correct), else blank
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "reader", "finding", "created_at", "id"]
        indexes = [models.Index(fields=["study", "reader", "finding", "-created_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(verdict="correct") | (Q(level="") & Q(side="")), name="feedback_level_only_on_correct"
            ),
        ]


class ReadingHeartbeat(ImmutableModel):
    """A "still reading" tick from the viewer: sent while the study is visible and the reader
    has used keyboard or mouse recently. Active reading time is summed from these on the server
    (``reviewer.selectors.active_seconds``), so idle gaps never count."""

    study = models.ForeignKey(Study, related_name="reading_heartbeats", on_delete=models.CASCADE)
    reader = models.ForeignKey(settings.AUTH_USER_MODEL, related_name="reading_heartbeats", on_delete=models.PROTECT)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "reader", "at"]
        indexes = [models.Index(fields=["study", "reader", "at"])]


class OutboxMessage(models.Model):
    """One message to another system (PACS, RIS, FHIR server) about one signed report or addendum.

    Written in the transaction that signs, sent afterwards by ``reviewer.tasks.send_outbox_message``:
    a destination that is down delays a message, never loses it. Each attempt is counted and its
    error kept; after ``SPINEREVIEW_OUTBOX_MAX_ATTEMPTS`` the row stays ``failed`` until an admin
    re-sends it (reviewer/integrations/outbox.py, docs/interoperability.md)."""

    class Kind(models.TextChoices):
        SR_STORE = "sr_store", "Report SR stored into Orthanc"
        SR_FORWARD = "sr_forward", "Report SR forwarded by C-STORE"
        FHIR_PUSH = "fhir_push", "FHIR Bundle pushed"
        HL7_ORU = "hl7_oru", "HL7 v2 ORU^R01 over MLLP"

    class State(models.TextChoices):
        PENDING = "pending"  # waiting for its first or next attempt
        SENT = "sent"
        FAILED = "failed"  # attempts exhausted (or a permanent refusal): an admin re-sends it

    study = models.ForeignKey(Study, related_name="outbox_messages", on_delete=models.CASCADE)
    revision = models.ForeignKey(ReportRevision, related_name="outbox_messages", on_delete=models.PROTECT)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    destination = models.CharField(max_length=100)  # "orthanc", an Orthanc modality name, a URL or host:port
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    response = models.JSONField(default=dict, blank=True)  # what the destination answered (ACK id, Location, ...)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["revision", "kind", "destination"], name="one_message_per_destination")
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.kind} -> {self.destination} ({self.state})"


class ReviewStatistics(models.Model):
    """Per signed review, the numbers the research statistics read, so that a cold statistics
    view reads one narrow table instead of joining reviews, drafts, label extractions and findings
    (seconds at 100,000 reviews). Written only by ``reviewer.services.statistics`` in the same
    transaction as the change (sign-off, arbitration, label extraction, recomputed distances);
    ``manage.py rebuild_statistics`` recomputes every row. ``packed``: see
    ``reviewer.research.aggregates.REVIEW_DTYPE``. The model version's name is joined at read
    time, so a renamed version needs no rewrite."""

    review = models.OneToOneField(Review, primary_key=True, related_name="+", on_delete=models.CASCADE)
    reader_id = models.BigIntegerField()
    model_version_id = models.BigIntegerField(null=True)
    pipeline_version = models.CharField(max_length=100, blank=True)
    in_scope = models.BooleanField()
    radpeer = models.CharField(max_length=2, blank=True)
    arbitration_state = models.CharField(max_length=10, blank=True)  # "" without arbitration
    packed = models.BinaryField()


class ConfirmationStatistics(models.Model):
    """Per label confirmation, the annotator's and the extractor's labels as two vectors
    (``reviewer.research.aggregates.CONFIRMATION_DTYPE``), for the label agreement; kept like
    ``ReviewStatistics``."""

    confirmation = models.OneToOneField(LabelConfirmation, primary_key=True, related_name="+", on_delete=models.CASCADE)
    extraction_id = models.BigIntegerField()
    annotator_id = models.BigIntegerField()
    packed = models.BinaryField()
