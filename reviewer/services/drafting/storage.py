"""What a run leaves behind: the draft and its findings, the SR in Orthanc, the finished job.

A draft is stored once per job, all or nothing; a run that finds it stored (a worker lost
between the draft and its SR) writes only the SR, whose UID derives from the draft, so writing
it twice is harmless.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from reviewer.models import Draft, DraftJob, Finding, Study
from reviewer.services.audit import audit
from reviewer.services.drafting.jobs import log_state, set_study_status

logger = logging.getLogger(__name__)


@transaction.atomic
def store_draft(*, job_id: int, analysis: dict) -> Draft:
    """Draft + 17 findings from a StudyAnalysis dict, in one transaction (all or nothing)."""
    job = DraftJob.objects.select_for_update(of=("self",)).select_related("study").get(pk=job_id)
    existing = Draft.objects.filter(job=job).first()
    if existing is not None:
        return existing
    draft = Draft.objects.create(
        study=job.study,
        job=job,
        model_version=job.model_version,
        text=analysis.get("report_text", ""),
        sections=analysis.get("report_sections", {}),
        analysis=analysis,
    )
    Finding.objects.bulk_create(
        [
            Finding(
                draft=draft,
                condition=c["condition"],
                probability=float(c["probability"]),
                present=bool(c["present"]),
                level=c.get("level", "") or "",
                side=c.get("side", "") or "",
                key_slices=[
                    {
                        "series_uid": k["series_uid"],
                        "sop_uid": k["sop_uid"],
                        "index": k["index"],
                        "score": k.get("score"),
                        "frame": k.get("frame"),
                    }
                    for k in c.get("key_slices", [])
                ],
                boxes=[
                    {
                        "series_uid": b["series_uid"],
                        "sop_uid": b["sop_uid"],
                        "index": b.get("index"),
                        "xyxy": b["xyxy"],
                        "xyxy_norm": b["xyxy_norm"],
                        "score": b.get("score"),
                        "frame": b.get("frame"),
                    }
                    for b in c.get("boxes", [])
                ],
            )
            for c in analysis.get("conditions", [])
        ]
    )
    n_skipped = len(analysis.get("skipped", []))
    log_state(job, DraftJob.State.DRAFTING, f"draft {draft.pk} stored ({len(analysis.get('conditions', []))} findings"
              + (f", {n_skipped} skipped instance(s)/series" if n_skipped else "") + "); writing the SR")  # fmt: skip
    job.save()
    return draft


def write_sr(draft: Draft) -> None:
    """The draft's TID 1500 SR into Orthanc (STOW-RS) and its StructuredReport row."""
    from reviewer.integrations.sr import write_ai_sr  # highdicom: loaded by workers, not by every importer

    write_ai_sr(draft=draft)


def finish(job_id: int, draft: Draft) -> DraftJob:
    """The job is done and its study's draft ready; the skipped instances become its reason."""
    with transaction.atomic():
        job = DraftJob.objects.select_for_update().get(pk=job_id)
        skipped = draft.analysis.get("skipped", [])
        job.reason = (f"{len(skipped)} instance(s)/series skipped: "
                      + "; ".join(f"{s.get('sop_uid') or s.get('series_uid')}: {s.get('reason')}" for s in skipped[:5])
                      if skipped else "")  # fmt: skip
        job.finished_at = timezone.now()
        log_state(job, DraftJob.State.DONE, f"draft {draft.pk} ready")
        job.save()
        set_study_status(job.study_id, str(Study.Status.DRAFT_READY), job.reason)
        audit(actor=None, action="draft.ready", obj=draft, job=job.pk, pipeline=job.pipeline_version)
    logger.info("draft job %s done: draft %s", job_id, draft.pk)
    return job
