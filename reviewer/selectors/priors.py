"""Priors: the same patient's earlier studies in the app, beside the draft, each with the newest
signed report the caller may read.

Why the matching is strict (same PatientID and issuer): putting another person's study beside a
draft is worse than showing no prior at all."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import F, Q

from reviewer.models import ReportRevision, Review, Study
from reviewer.selectors.blinding import blinded_for


@dataclass
class PriorReport:
    """A prior's signed report as the viewer shows it: the signed text, or its newest addendum
    (the full amended text); ``reader`` is None where the prior is blinded for the caller."""

    text: str
    signed_at: object  # datetime
    reader: str | None
    is_addendum: bool
    addendum_reason: str


@dataclass
class Prior:
    study: Study
    report: PriorReport | None


PRIORS_MAX = 20


def _prior_report(prior: Study, user) -> PriorReport | None:
    """The newest signed report of ``prior`` the caller may read. Only signed reports are shown
    (never work in progress). A blinded prior the caller is reading themselves (assigned, or a
    review not yet signed) shows no other reader's report until they sign, as on the study itself."""
    blinded = blinded_for(user, prior)
    reviews = Review.objects.filter(study=prior, signed_at__isnull=False, signed_revision__isnull=False)
    if blinded:
        reading = (
            prior.assignments.filter(reader=user).exists()
            or Review.objects.filter(study=prior, reader=user, signed_at__isnull=True).exists()
        )
        if reading and not reviews.filter(reader=user).exists():
            return None
    review = reviews.select_related("reader", "signed_revision").order_by("-signed_at", "-id").first()
    if review is None:
        return None
    signed = review.signed_revision
    addenda = ReportRevision.objects.filter(
        study=prior, author=review.reader, is_addendum=True, is_conflict=False, created_at__gte=signed.created_at
    )
    newest = addenda.order_by("-created_at", "-id").first() or signed
    return PriorReport(
        text=newest.text,
        signed_at=review.signed_at,
        reader=None if blinded else str(review.reader),
        is_addendum=newest.is_addendum,
        addendum_reason=newest.addendum_reason,
    )


def priors_for(study: Study, *, user) -> list[Prior]:
    """The same patient's earlier studies in the app (same PatientID and IssuerOfPatientID, an
    earlier study date, or received earlier where a date is missing), newest first, each with the
    newest signed report ``user`` may read. A study without a PatientID has no priors: nothing
    links it to another.

    The issuer must match exactly, an empty one only an empty one: two hospitals can give one
    PatientID to two people, and a study without an issuer cannot be told apart from either of
    them, so putting another person's study beside the draft is worse than showing no prior."""
    if not study.patient_id:
        return []
    qs = Study.objects.filter(patient_id=study.patient_id, patient_id_issuer=study.patient_id_issuer)
    qs = qs.exclude(pk=study.pk)
    if study.study_date:
        qs = qs.filter(Q(study_date__lt=study.study_date) | Q(study_date__isnull=True, created_at__lt=study.created_at))
    else:
        qs = qs.filter(created_at__lt=study.created_at)
    qs = qs.order_by(F("study_date").desc(nulls_last=True), "-created_at", "-id")[:PRIORS_MAX]
    return [Prior(p, _prior_report(p, user)) for p in qs]
