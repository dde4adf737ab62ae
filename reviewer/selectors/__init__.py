"""Reads: querysets and answers the views, pages, integrations and research use, with the joins
they need (no N+1) and the visibility rules (blinding, roles). Nothing here writes; writes are
``reviewer.services``.

One module per topic; everything is re-exported here so callers write ``selectors.worklist(...)``
without knowing which module holds it."""

from reviewer.selectors.blinding import (
    BLINDED_ANALYSIS_KEYS,
    blind_analysis,
    blinded_for,
    finding_feedback_visible_to,
    reader_srs_hidden_from,
    reviews_visible_to,
    revisions_visible_to,
)
from reviewer.selectors.feedback import (
    HEARTBEAT_SECONDS,
    OUTCOME,
    ConditionAgreement,
    active_seconds,
    agreement_by_condition,
    credited_seconds,
    current_feedback,
    feedback_of,
    outcome_counts,
)
from reviewer.selectors.labels import (
    ANNOTATED_SOURCES,
    MAX_ANNOTATORS,
    STRATEGIES,
    annotation_queue,
    label_extractions,
    min_confidence,
)
from reviewer.selectors.model_versions import active_pipeline
from reviewer.selectors.priors import PRIORS_MAX, Prior, PriorReport, priors_for
from reviewer.selectors.reports import chain_of, head_revision, revisions_for
from reviewer.selectors.studies import (
    READING_ORDER,
    URGENT_CONDITIONS,
    WORKLIST_SORTS,
    drafts_for,
    next_unread_study,
    study_list,
    with_reading_priority,
    worklist,
    worklist_rows,
    worklist_status_counts,
)
from reviewer.selectors.workflow import arbitrations_for, can_arbitrate, radiologists

__all__ = [
    "ANNOTATED_SOURCES",
    "BLINDED_ANALYSIS_KEYS",
    "HEARTBEAT_SECONDS",
    "MAX_ANNOTATORS",
    "OUTCOME",
    "PRIORS_MAX",
    "READING_ORDER",
    "STRATEGIES",
    "URGENT_CONDITIONS",
    "WORKLIST_SORTS",
    "ConditionAgreement",
    "Prior",
    "PriorReport",
    "active_pipeline",
    "active_seconds",
    "agreement_by_condition",
    "annotation_queue",
    "arbitrations_for",
    "blind_analysis",
    "blinded_for",
    "can_arbitrate",
    "chain_of",
    "credited_seconds",
    "current_feedback",
    "drafts_for",
    "feedback_of",
    "finding_feedback_visible_to",
    "head_revision",
    "label_extractions",
    "min_confidence",
    "next_unread_study",
    "outcome_counts",
    "priors_for",
    "radiologists",
    "reader_srs_hidden_from",
    "reviews_visible_to",
    "revisions_for",
    "revisions_visible_to",
    "study_list",
    "with_reading_priority",
    "worklist",
    "worklist_rows",
    "worklist_status_counts",
]
