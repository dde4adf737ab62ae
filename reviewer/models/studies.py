"""What the archive holds, mirrored: studies, their series, and the cursor of Orthanc's change feed.
Pixels live only in Orthanc; these rows hold UIDs and what the app derives from them."""

from __future__ import annotations

from django.db import models


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


class OrthancCursor(models.Model):
    """Last processed sequence number of Orthanc's change feed (one row per Orthanc)."""

    orthanc_url = models.CharField(max_length=300, unique=True)
    last_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)
