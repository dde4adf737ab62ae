"""The work of a run: fetch each study over DICOMweb, check its scope, preprocess it, gather its
facts (request attributes, the patient's prior studies), run the pipeline's agents on all the
studies at once and store the drafts. Everything that touches ``ml/`` goes through
``reviewer.ml_bridge``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from reviewer import ml_bridge
from reviewer.integrations.fetch import FetchedStudy, StudyNotInOrthanc, fetch_study
from reviewer.integrations.orthanc import dicomweb
from reviewer.models import Draft, DraftJob, ModelVersion, Series
from reviewer.selectors.model_versions import active_pipeline
from reviewer.services.drafting.jobs import BadInput, DraftTimeLimit, OutOfScope, advance, check_deadline
from reviewer.services.drafting.storage import store_draft

logger = logging.getLogger(__name__)

# faults that retrying cannot mend: the job fails with the reason
BAD_INPUT = (BadInput, DraftTimeLimit, StudyNotInOrthanc, ml_bridge.NoUsableSeries)


def pipeline_folder(model_version: ModelVersion | None) -> str:
    """Where the worker finds the pipeline: the job's ModelVersion.artifact_uri, else
    SPINEREVIEW_PIPELINE_DIR, else (demo/test, SPINEREVIEW_PIPELINE_BOOTSTRAP) the cached
    bootstrap pipeline of SPINEREVIEW_PIPELINE_PRESET, trained on first use."""
    uri = model_version.artifact_uri if model_version else ""
    if uri:
        path = Path(uri.removeprefix("file://"))
        if not path.is_dir():
            raise BadInput(f"model version {model_version}: artifact folder {path} does not exist")
        return str(path)
    if settings.SPINEREVIEW_PIPELINE_DIR:
        path = Path(settings.SPINEREVIEW_PIPELINE_DIR)
        if not path.is_dir():
            raise BadInput(f"SPINEREVIEW_PIPELINE_DIR {path} does not exist")
        return str(path)
    if settings.SPINEREVIEW_PIPELINE_BOOTSTRAP:
        return ml_bridge.ensure_tiny_pipeline(preset=settings.SPINEREVIEW_PIPELINE_PRESET)
    raise BadInput("no drafting pipeline configured: set SPINEREVIEW_PIPELINE_DIR or a model version's artifact")


def preload_pipeline() -> str | None:
    """Load the active pipeline into this worker process (called once at worker start)."""
    _, model_version = active_pipeline()
    folder = pipeline_folder(model_version)
    t0 = time.perf_counter()
    ml_bridge.load_pipeline(folder)
    logger.info("pipeline %s loaded in %.1f s", folder, time.perf_counter() - t0)
    return folder


def fetch(job: DraftJob) -> FetchedStudy:
    return fetch_study(job.study.study_uid)


@dataclass
class Prepared:
    """One study ready for the agents."""

    job: DraftJob
    fetched: FetchedStudy
    study: object  # ml StudyData
    skipped: list[dict[str, str]]
    prep_s: float
    facts: object = None  # ml StudyFacts: request attributes, classified series, prior studies
    scope: dict | None = None  # the scope check's decision (region, sequences found and missing)


def _first(item: dict, tag: str) -> str:
    values = item.get(tag, {}).get("Value") or [""]
    return str(values[0])


def patient_studies(fetched: FetchedStudy) -> list[dict[str, str]] | None:
    """The same patient's studies in Orthanc up to this study's date (QIDO-RS by PatientID with a
    StudyDate range), for the draft's COMPARISON; the bridge keeps those acquired before this
    one. [] when the study has no PatientID or date to search by; None when the search failed
    (the draft then says the priors could not be searched, rather than "none"). A hit counts only
    when its IssuerOfPatientID equals this study's (empty equals empty): one PatientID from two
    hospitals can be two people. The issuer is compared here, not searched by, because an empty
    QIDO filter value matches anything."""
    first = next((v[0] for v in fetched.series.values() if v), None)
    patient_id = str(getattr(first, "PatientID", "") or "")
    issuer = str(getattr(first, "IssuerOfPatientID", "") or "").strip()
    study_date = str(getattr(first, "StudyDate", "") or "")
    if not patient_id or not study_date or any(c in patient_id for c in "*?\\"):
        return []
    try:
        hits = dicomweb().search_for_studies(
            search_filters={"PatientID": patient_id, "StudyDate": f"-{study_date}"},
            fields=["StudyDescription", "StudyTime", "PatientID", "IssuerOfPatientID"],
        )
    except Exception as exc:
        logger.warning("study %s: searching the patient's prior studies failed: %s", fetched.study_uid, exc)
        return None
    return [
        {"study_uid": _first(h, "0020000D"), "date": _first(h, "00080020"), "time": _first(h, "00080030"),
         "description": _first(h, "00081030")}
        for h in hits
        if _first(h, "00100020") == patient_id and _first(h, "00100021").strip() == issuer
    ]  # fmt: skip


def compute_drafts(jobs: list[DraftJob], deadline: float | None) -> dict[int, Draft | BaseException]:
    """Fetch and preprocess each job's study, run the agents on all of them at once, store the
    drafts. A job's own failure is its outcome; it does not stop the others."""
    outcomes: dict[int, Draft | BaseException] = {}
    try:
        folder = pipeline_folder(jobs[0].model_version)
        t0 = time.perf_counter()
        pipeline = ml_bridge.load_pipeline(folder)
        load_s = time.perf_counter() - t0
    except Exception as exc:
        return {job.pk: exc for job in jobs}
    ready: list[Prepared] = []
    for job in jobs:
        try:
            ready.append(prepare(job, pipeline, deadline))
        except Exception as exc:
            outcomes[job.pk] = exc
    if not ready:
        return outcomes
    for p in ready:
        note = f"preprocessed in {p.prep_s:.1f} s; running the agents" + (
            f" on a batch of {len(ready)} studies" if len(ready) > 1 else ""
        )
        advance(p.job.pk, DraftJob.State.DRAFTING, note, delay=p is ready[-1])
    t0 = time.perf_counter()
    try:
        analyses = ml_bridge.analyze_studies(pipeline, [p.study for p in ready],
                                             [[*p.fetched.skipped, *p.skipped] for p in ready],
                                             [p.facts for p in ready])  # fmt: skip
        check_deadline(deadline, "running the agents")
    except Exception as exc:
        return {**outcomes, **{p.job.pk: exc for p in ready}}
    analyze_s = time.perf_counter() - t0
    for p, analysis in zip(ready, analyses, strict=True):
        analysis["platform_timings"] = {
            "fetch_s": round(p.fetched.seconds, 3), "pipeline_load_s": round(load_s, 3),
            "preprocess_s": round(p.prep_s, 3), "analyze_s": round(analyze_s, 3), "batch_studies": len(ready),
        }  # fmt: skip
        analysis["pipeline_folder"] = folder
        analysis["scope"] = p.scope  # "forced": True when an admin overrode a refusal
        outcomes[p.job.pk] = store_draft(job_id=p.job.pk, analysis=analysis)
    return outcomes


def prepare(job: DraftJob, pipeline: object, deadline: float | None) -> Prepared:
    """Fetch one study, check its scope, preprocess it and gather its facts."""
    fetched = fetch(job)
    check_deadline(deadline, "fetching")
    if not fetched.series:
        reasons = "; ".join(f"{s['sop_uid']}: {s['reason']}" for s in fetched.skipped[:5])
        raise BadInput(f"no usable series: all {len(fetched.skipped)} image(s) were skipped ({reasons})")
    skipped_note = f"; skipped {len(fetched.skipped)} instance(s)" if fetched.skipped else ""
    advance(job.pk, DraftJob.State.ENCODING,
            f"fetched {fetched.n_instances} instances of {len(fetched.series)} series in {fetched.seconds:.1f} s"
            + skipped_note)  # fmt: skip
    scope = ml_bridge.check_scope(fetched.series)
    if scope["verdict"] != "in_scope":
        if not job.scope_override:
            raise OutOfScope(scope)
        scope["forced"] = True
    classes = dict(
        Series.objects.filter(study_id=job.study_id)
        .exclude(sequence_class="")
        .values_list("series_uid", "sequence_class")
    )
    t0 = time.perf_counter()
    study_data, skipped = ml_bridge.prepare_study(pipeline, job.study.study_uid, fetched.series, classes)
    facts = ml_bridge.study_facts(fetched.series, patient_studies(fetched))
    check_deadline(deadline, "preprocessing")
    return Prepared(job, fetched, study_data, skipped, time.perf_counter() - t0, facts, scope)
