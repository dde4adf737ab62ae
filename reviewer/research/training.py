"""The de-identified training manifest: signed reports, confirmed labels and corrected boxes flow
back into training (``ml.data.manifest`` format), with keyed replacement UIDs and scrubbed text.

Why apart from the research tables (``exports``): it reads different tables (series, structured
reports, finding boxes, reader verdicts) and leaves the site as one folder written by a shell
user, not through the API; the key scheme is the same (``reviewer.deid``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from reviewer import deid
from reviewer.deid import pseudonym, replacement_uid
from reviewer.deid import pseudonym_secret as export_secret
from reviewer.research import reading

if TYPE_CHECKING:
    from ml.data import manifest as ml_manifest


def patient_key(patient_id: str, study_uid: str, *, secret: bytes | None = None) -> str:
    """The patient's pseudonym (a study without a patient ID counts as its own patient)."""
    return pseudonym("patient", patient_id or study_uid, secret=secret)


@dataclass
class TrainingExportSummary:
    studies: int
    confirmed_labels: int
    extracted_labels: int
    reader_boxes: int
    ai_boxes: int


def _consensus(confirmations: list[dict]) -> dict[str, int]:
    """Annotators' labels per condition; where two annotators disagree the label is -1
    (uncertain: excluded from training, as in the paper)."""
    out: dict[str, int] = {}
    for labels in confirmations:
        for key, value in labels.items():
            out[key] = value if out.get(key, value) == value else -1
    return out


def training_entries(*, include_extracted: bool = False) -> Iterator[tuple[ml_manifest.StudyEntry, dict]]:
    """(StudyEntry, ground-truth dict) for every study with a signed report or confirmed labels.

    Labels: the annotators' confirmed labels of the study's reports (consensus); with
    ``include_extracted`` the extractor's labels of the signed report where none is confirmed.
    Boxes: the newest reader-corrected DICOM SR's boxes, else the newest AI SR, else the
    draft's finding boxes.

    De-identified: every UID (study, series, SOP instance, SR) is the keyed replacement UID
    (``deid.replacement_uid``, PS3.15 action U), report texts, series descriptions and box
    labels are scrubbed of names, dates and ids (``deid.site_scrubber``). Series carry no path:
    their pixels come from a copy of the images de-identified with the same key
    (``deid.deidentify_dataset`` gives the same UIDs), not from the clinical archive.
    """
    from reviewer import ml_bridge
    from reviewer.models import Finding, LabelConfirmation, LabelExtraction, Review, Series, StructuredReport, Study

    manifest = ml_bridge.training_manifest()
    SeriesEntry, StudyEntry = manifest.SeriesEntry, manifest.StudyEntry
    key = export_secret()
    scrub = deid.site_scrubber()
    signed = {}
    for study_id, text in (
        Review.objects.filter(signed_at__isnull=False)
        .order_by("study_id", "signed_at")
        .values_list("study_id", "signed_revision__text")
    ):
        signed[study_id] = text  # the latest signature wins
    confirmed: dict[int, list[dict]] = {}
    for study_id, labels in LabelConfirmation.objects.filter(extraction__study__isnull=False).values_list(
        "extraction__study_id", "labels"
    ):
        confirmed.setdefault(study_id, []).append(labels)
    extracted = dict(
        LabelExtraction.objects.filter(source=LabelExtraction.Source.SIGNED_REPORT, study__isnull=False)
        .order_by("study_id", "id")
        .values_list("study_id", "labels")
    )
    study_ids = sorted(set(signed) | set(confirmed))
    series: dict[int, list] = {}
    for s in Series.objects.filter(study_id__in=study_ids).order_by("series_number", "id"):
        series.setdefault(s.study_id, []).append(
            SeriesEntry(series_uid=replacement_uid(s.series_uid, secret=key), path=None,
                        description=scrub(s.description) or "",
                        sequence_class=s.sequence_class or None,
                        plane=s.plane if s.plane in ("sagittal", "axial", "coronal") else None)
        )  # fmt: skip
    srs: dict[int, dict[str, StructuredReport]] = {}
    for sr in StructuredReport.objects.filter(study_id__in=study_ids).order_by("created_at", "id"):
        srs.setdefault(sr.study_id, {})[sr.source] = sr  # newest per source
    finding_boxes: dict[int, list[dict]] = {}
    for study_id, condition, boxes in (
        Finding.objects.filter(draft__study_id__in=study_ids)
        .order_by("draft__created_at", "id")
        .values_list("draft__study_id", "condition", "boxes")
    ):
        for box in boxes or []:
            finding_boxes.setdefault(study_id, []).append({"condition": condition, **box})
    verdicts = reading.training_feedback(study_ids, key=key)  # readers' per-finding verdicts
    for study in Study.objects.filter(pk__in=study_ids).order_by("id"):
        if study.pk in confirmed:
            labels, label_source = _consensus(confirmed[study.pk]), "confirmed"
        elif include_extracted and study.pk in extracted:
            labels, label_source = extracted[study.pk], "extracted"
        else:
            labels, label_source = {}, "none"
        by_source = srs.get(study.pk, {})
        if "reader" in by_source:
            sr, box_source, boxes = by_source["reader"], "reader", by_source["reader"].boxes
        elif "ai" in by_source:
            sr, box_source, boxes = by_source["ai"], "ai", by_source["ai"].boxes
        else:
            sr, box_source, boxes = (
                None,
                "ai" if finding_boxes.get(study.pk) else "none",
                finding_boxes.get(study.pk, []),
            )
        study_key = pseudonym("study", study.study_uid, secret=key)
        study_uid = replacement_uid(study.study_uid, secret=key)
        entry = StudyEntry(
            study_uid=study_uid,
            patient_key=patient_key(study.patient_id, study.study_uid, secret=key),
            series=series.get(study.pk, []),
            report=scrub(signed.get(study.pk)),
            labels=labels,
            ground_truth=f"ground_truth/{study_key}.json",
        )
        truth = {
            "study_uid": study_uid,
            "study_key": study_key,
            "label_source": label_source,
            "box_source": box_source,
            "structured_report_sop_uid": replacement_uid(sr.sop_instance_uid, secret=key) if sr else None,
            "boxes": [_deidentified_box(box, key, scrub) for box in boxes or []],
            "finding_feedback": verdicts.get(study.pk, []),
        }
        yield entry, truth


def _deidentified_box(box: dict, key: bytes, scrub: deid.Scrubber) -> dict:
    """A box with its UIDs replaced (as in the de-identified images) and free text scrubbed;
    coordinates and the condition are kept."""
    out: dict = {}
    for name, value in box.items():
        if name.endswith("_uid") and isinstance(value, str) and value:
            out[name] = replacement_uid(value, secret=key)
        elif isinstance(value, str) and name != "condition":
            out[name] = scrub(value)
        else:
            out[name] = value
    return out


def write_training_manifest(out_dir: Path, *, include_extracted: bool = False) -> TrainingExportSummary:
    """``out_dir/manifest.jsonl`` (ml.data.manifest format) + ``out_dir/ground_truth/*.json``."""
    from reviewer import ml_bridge

    write_manifest = ml_bridge.training_manifest().write_manifest
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ground_truth").mkdir(exist_ok=True)
    entries = []
    counts = {"confirmed": 0, "extracted": 0, "reader": 0, "ai": 0}
    for entry, truth in training_entries(include_extracted=include_extracted):
        ground_truth = cast(str, entry.ground_truth)  # training_entries names every entry's file
        (out_dir / ground_truth).write_text(json.dumps(truth, indent=1, sort_keys=True))
        counts[truth["label_source"]] = counts.get(truth["label_source"], 0) + 1
        counts[truth["box_source"]] = counts.get(truth["box_source"], 0) + 1
        entries.append(entry)
    n = write_manifest(out_dir / "manifest.jsonl", entries)
    return TrainingExportSummary(n, counts["confirmed"], counts["extracted"], counts["reader"], counts["ai"])
