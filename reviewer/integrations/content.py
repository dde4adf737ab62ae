"""What every outgoing format says about one signed report or addendum, read once from the
database so that the DICOM SR, the FHIR Bundle and the HL7 message cannot disagree."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ml.conditions import BY_KEY
from ml.report_sections import sections_by_title
from reviewer import ml_bridge
from reviewer.models import Finding, ReportRevision, Review, Study


@dataclass(frozen=True)
class ConfirmedFinding:
    """A condition the signed text states as present, with the AI's level and side when the
    draft had the same condition present (the reader's text is the authority for presence)."""

    condition: str
    name: str
    level: str = ""
    side: str = ""


@dataclass
class SignedReport:
    study: Study
    revision: ReportRevision
    reader_name: str  # "Given Family" or the username
    signed_at: dt.datetime
    is_addendum: bool
    addendum_reason: str
    text: str
    sections: dict[str, str]  # heading -> text, in report order; "" heading = text before any heading
    findings: list[ConfirmedFinding] = field(default_factory=list)
    predecessor: ReportRevision | None = None  # the signed/addended revision this one amends

    @property
    def status(self) -> str:
        """FHIR DiagnosticReport.status / HL7 OBR-25 meaning: final, or amended (an addendum)."""
        return "amended" if self.is_addendum else "final"


def predecessor_of(revision: ReportRevision) -> ReportRevision | None:
    """The revision an addendum amends: the latest earlier signed or addended revision of the
    same reader's chain (None for the signed revision itself)."""
    if not revision.is_addendum:
        return None
    review = Review.objects.filter(study_id=revision.study_id, reader_id=revision.author_id).first()
    candidates = ReportRevision.objects.filter(
        study_id=revision.study_id, author_id=revision.author_id, number__lt=revision.number, is_conflict=False
    )
    signed_id = review.signed_revision_id if review is not None else None
    return candidates.filter(is_addendum=True).order_by("-number").first() or candidates.filter(pk=signed_id).first()


def signed_report(revision_id: int) -> SignedReport:
    """Assemble the content of a signed revision or addendum (read only)."""
    revision = ReportRevision.objects.select_related("study", "author", "draft").get(pk=revision_id)
    author = revision.author
    review = Review.objects.filter(study_id=revision.study_id, reader_id=author.pk).first()
    if revision.is_addendum:
        signed_at = revision.created_at
    elif review is not None and review.signed_revision_id == revision.pk and review.signed_at:
        signed_at = review.signed_at
    else:
        raise ValueError(f"revision {revision.pk} is neither a signed revision nor an addendum")
    labels = ml_bridge.extract_report_labels(revision.text).labels
    present = sorted(k for k, v in labels.items() if v == 1)
    ai: dict[str, Finding] = {}
    if revision.draft_id is not None:
        ai = {f.condition: f for f in Finding.objects.filter(draft_id=revision.draft_id, present=True)}
    findings = [
        ConfirmedFinding(k, BY_KEY[k].name, ai[k].level if k in ai else "", (ai[k].side if k in ai else "").lower())
        for k in present
    ]
    return SignedReport(
        study=revision.study,
        revision=revision,
        reader_name=(author.get_full_name() or author.get_username()).strip(),
        signed_at=signed_at,
        is_addendum=revision.is_addendum,
        addendum_reason=revision.addendum_reason,
        text=revision.text,
        sections={k: v for k, v in sections_by_title(revision.text).items() if v},
        findings=findings,
        predecessor=predecessor_of(revision),
    )


def impression(report: SignedReport) -> str:
    """The conclusion: the IMPRESSION section, else the whole text."""
    return report.sections.get("IMPRESSION") or report.text.strip()
