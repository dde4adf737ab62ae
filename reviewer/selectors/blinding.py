"""Who may read what on a study: the blinding rules in one place.

Why one module: these functions decide what one reader learns of another reader's work (report
text, RADPEER scores, box SRs, finding verdicts, which model drafted). The API serializers, the
pages, the DICOMweb proxy and the priors all ask here, so a change to the policy is made once and
reviewed as the security change it is."""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet

from reviewer.models import FindingFeedback, ReportRevision, Review, StructuredReport, Study
from reviewer.roles import Role, has_role
from reviewer.selectors.feedback import feedback_of
from reviewer.selectors.reports import revisions_for

BLINDED_ANALYSIS_KEYS = ("pipeline_version", "model_versions")


def blinded_for(user: Any, study: Study) -> bool:
    """True when ``user`` reads ``study`` blinded: a blinded study, seen by a radiologist who
    is not an admin. Researchers are not readers (they analyse per model) and admins set up
    the study; both see everything."""
    return bool(study.blinded) and not has_role(user, Role.ADMIN, Role.RESEARCHER)


def blind_analysis(analysis: dict) -> dict:
    """A draft's StudyAnalysis without what names the model: pipeline and artifact versions."""
    out = {k: v for k, v in (analysis or {}).items() if k not in BLINDED_ANALYSIS_KEYS}
    if isinstance(out.get("agents"), list):
        out["agents"] = [
            {k: v for k, v in a.items() if k != "version"} if isinstance(a, dict) else a for a in out["agents"]
        ]
    return out


def revisions_visible_to(user: Any, study: Study) -> QuerySet[ReportRevision]:
    """The report revisions of ``study`` that ``user`` may read.

    Blinding policy: a reader of a blinded study sees only their own chain until they have
    signed; after signing they also see the *signed* reports of the other readers who have
    signed (each one's signed revision and its addenda), never work in progress, conflicting
    saves, or the chain of a reader who has not signed. RADPEER reviews stay private either way
    (``reviews_visible_to``). On an unblinded study, and for admins, every chain is visible.
    Researchers read no report text here (only de-identified exports), like the API."""
    qs = revisions_for(study.pk)
    if has_role(user, Role.RESEARCHER) and not has_role(user, Role.ADMIN, Role.RADIOLOGIST, Role.ANNOTATOR):
        return qs.none()
    if not blinded_for(user, study):
        return qs
    own = Q(author=user)
    signed = Review.objects.filter(study=study, signed_at__isnull=False)
    if not signed.filter(reader=user).exists():
        return qs.filter(own)
    others_signed = signed.exclude(reader=user)
    shown = Q(pk__in=others_signed.values("signed_revision_id")) | Q(
        author__in=others_signed.values("reader_id"), is_addendum=True, is_conflict=False
    )
    return qs.filter(own | shown)


def reviews_visible_to(user: Any, study_id: int | None = None) -> QuerySet[Review]:
    """Admins see every review; a radiologist sees only their own (readers are blinded to each
    other); annotators and researchers see none. Researchers, as in the API, get reviews only as
    the pseudonymised statistics and ``reviews`` export: a review carries the reader, the study
    and the comment."""
    qs = Review.objects.select_related("reader", "study", "draft__model_version", "signed_revision")
    if study_id is not None:
        qs = qs.filter(study_id=study_id)
    if has_role(user, Role.ADMIN):
        return qs
    if has_role(user, Role.RADIOLOGIST):
        return qs.filter(reader=user)
    return qs.none()


def reader_srs_hidden_from(user: Any, study_uid: str | None = None) -> tuple[frozenset[str], frozenset[str]]:
    """(series UIDs, SOP instance UIDs) of other readers' box SRs that ``user`` may not fetch
    through the DICOMweb proxy: the same blinding policy as the report text. On a blinded study
    a reader sees no other reader's boxes until both have signed; admins and researchers are
    not blinded. A series is hidden only when every SR in it is hidden (older studies kept all
    readers' SRs in one series), the SOP instances always."""
    if has_role(user, Role.ADMIN, Role.RESEARCHER):
        return frozenset(), frozenset()
    others = StructuredReport.objects.filter(
        source__in=(StructuredReport.Source.READER, StructuredReport.Source.REPORT), study__blinded=True
    ).exclude(author=user)  # box SRs and signed-report SRs alike
    if study_uid is not None:
        others = others.filter(study__study_uid=study_uid)
    signed = Review.objects.filter(study=OuterRef("study"), signed_at__isnull=False)
    hidden = (
        others.annotate(author_signed=Exists(signed.filter(reader=OuterRef("author"))))
        .annotate(user_signed=Exists(signed.filter(reader=user)))
        .exclude(author_signed=True, user_signed=True)
        .values_list("series_instance_uid", "sop_instance_uid")
    )
    series = {row[0] for row in hidden}
    sops = frozenset(row[1] for row in hidden)
    shared = StructuredReport.objects.filter(series_instance_uid__in=series).exclude(sop_instance_uid__in=sops)
    series -= set(shared.values_list("series_instance_uid", flat=True))
    return frozenset(series), sops


def finding_feedback_visible_to(user: Any, study: Study) -> QuerySet[FindingFeedback]:
    """The finding verdicts ``user`` may read on ``study``: their own only, whatever the study's
    blinding and role (a verdict is a reader's private call until it is aggregated per condition)."""
    return feedback_of(study=study, reader=user)
