"""De-identified research exports (CSV, Parquet, plots) and the training manifest.

De-identification (``reviewer.deid``; profile and key scheme in docs/security.md): exports carry
no patient name, patient ID, accession number, institution, date finer than a month, DICOM UID,
username or database id. Studies, patients, readers, reviews, drafts and revisions appear as
keyed hashes (HMAC-SHA256 with the site's pseudonym secret, first 20 hex digits), so rows of the
same study or reader can be grouped across exports of one site but cannot be traced back, nor
looked up in the API, without the secret. The training manifest's UIDs are keyed replacement
UIDs and its report texts and series descriptions are scrubbed of names, dates and ids.

Column names are stable and documented in docs/workflow.md; a column is never renamed, only
added (the database-id columns were dropped for their keyed counterparts: an id is an identity
for whoever can query the API).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from reviewer import deid
from reviewer.deid import KEY_HEX_DIGITS, SECRET_ENV, pseudonym, replacement_uid
from reviewer.deid import pseudonym_secret as export_secret
from reviewer.pseudonyms import Pseudonyms
from reviewer.research import reading, stats
from reviewer.research.stats import DISCREPANT, RADPEER_SCORES, SIGNIFICANT, ReviewRow

if TYPE_CHECKING:
    from ml.data import manifest as ml_manifest


def reader_key(reader_id: object, *, secret: bytes | None = None) -> str:
    """The reader's pseudonym, the same in every export and in the statistics API."""
    return pseudonym("reader", reader_id, secret=secret)


def patient_key(patient_id: str, study_uid: str, *, secret: bytes | None = None) -> str:
    """The patient's pseudonym (a study without a patient ID counts as its own patient)."""
    return pseudonym("patient", patient_id or study_uid, secret=secret)


# --- one row per review ------------------------------------------------------------------

# (name, arrow type, description) — the documented, stable export schema.
REVIEW_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("review_key", "string", "HMAC-SHA256 of the review's id with the site secret"),
    ("study_key", "string", "HMAC-SHA256 of the Study Instance UID with the site secret"),
    ("patient_key", "string", "HMAC-SHA256 of the Patient ID (else the Study Instance UID) with the site secret"),
    ("reader_key", "string", "HMAC-SHA256 of the reader's user id with the site secret"),
    ("model_version", "string", "name@version of the model that drafted (or the pipeline version)"),
    ("radpeer", "string", "the reader's RADPEER score: 1, 2a, 2b, 3a, 3b"),
    ("radpeer_level", "int64", "1, 2 or 3"),
    ("discrepancy", "bool", "RADPEER >= 2"),
    ("clinically_significant", "bool", "RADPEER 2b or 3b"),
    ("needs_arbitration", "bool", "RADPEER 2b, 3a or 3b"),
    ("arbitration_state", "string", "open, resolved, or empty"),
    ("arbitration_decision", "string", "the arbiter's RADPEER score, empty until resolved"),
    ("radpeer_final", "string", "arbitration decision if resolved, else the reader's score"),
    ("in_scope", "bool", "the reader judged the study within the model's intended scope"),
    ("signed_month", "string", "YYYY-MM of sign-off (month only: dates are quasi-identifiers)"),
    ("draft_key", "string", "HMAC-SHA256 of the id of the AI draft compared"),
    ("revision_key", "string", "HMAC-SHA256 of the id of the signed report revision compared"),
    ("char_levenshtein", "int64", "character Levenshtein distance draft -> signed (normalised text)"),
    ("char_levenshtein_norm", "float64", "char_levenshtein / max(len(draft), len(signed))"),
    ("word_levenshtein", "int64", "word Levenshtein distance"),
    ("word_levenshtein_norm", "float64", "word_levenshtein / max(words(draft), words(signed))"),
    ("wer", "float64", "word error rate of the draft against the signed report (jiwer)"),
    ("impression_word_levenshtein_norm", "float64", "word_levenshtein_norm of the IMPRESSION section"),
    ("impression_wer", "float64", "WER of the IMPRESSION section"),
)
REVIEW_COLUMN_NAMES = tuple(c[0] for c in REVIEW_COLUMNS)


def review_export_rows(rows: Iterable[ReviewRow] | None = None) -> list[dict]:
    """De-identified rows (``REVIEW_COLUMNS``) of the signed reviews."""
    return list(iter_review_export_rows(rows))


def iter_review_export_rows(rows: Iterable[ReviewRow] | None = None) -> Iterator[dict]:
    """``review_export_rows`` one at a time (default: every signed review, read in chunks)."""
    rows = stats.iter_review_rows(chunk_size=EXPORT_CHUNK) if rows is None else rows
    key = Pseudonyms(export_secret())
    for r in rows:
        resolved = r.arbitration_state == "resolved" and r.arbitration_decision
        yield (
            {
                "review_key": key("review", r.review_id),
                "study_key": key("study", r.study_uid),
                "patient_key": key("patient", r.patient_id or r.study_uid),
                "reader_key": key.reader(r.reader_id),
                "model_version": r.model_version,
                "radpeer": r.radpeer,
                "radpeer_level": int(r.radpeer[0]) if r.radpeer else None,
                "discrepancy": r.radpeer in DISCREPANT,
                "clinically_significant": r.radpeer in SIGNIFICANT,
                "needs_arbitration": r.radpeer in ("2b", "3a", "3b"),
                "arbitration_state": r.arbitration_state or "",
                "arbitration_decision": r.arbitration_decision or "",
                "radpeer_final": r.arbitration_decision if resolved else r.radpeer,
                "in_scope": bool(r.in_scope),
                "signed_month": r.signed_at.strftime("%Y-%m") if r.signed_at else "",
                "draft_key": key("draft", r.draft_id) if r.draft_id is not None else None,
                "revision_key": key("revision", r.revision_id) if r.revision_id is not None else None,
                "char_levenshtein": r.char_levenshtein,
                "char_levenshtein_norm": r.char_levenshtein_norm,
                "word_levenshtein": r.word_levenshtein,
                "word_levenshtein_norm": r.word_levenshtein_norm,
                "wer": r.wer,
                "impression_word_levenshtein_norm": r.impression_word_levenshtein_norm,
                "impression_wer": r.impression_wer,
            }
        )


LABEL_AGREEMENT_COLUMNS = (
    ("condition", "string", "condition key (docs/paper.md)"),
    ("n_confirmations", "int64", "annotator confirmations compared with the extractor"),
    ("extractor_accuracy", "float64", "share of confirmations equal to the extractor's label (ternary)"),
    ("extractor_kappa", "float64", "Cohen's kappa extractor vs annotator (ternary)"),
    ("n_double_annotated", "int64", "reports labelled by two annotators"),
    ("inter_annotator_agreement", "float64", "share of double-annotated reports where both agree"),
    ("inter_annotator_kappa", "float64", "Cohen's kappa between the first two annotators"),
)

DRAFT_ACCURACY_COLUMNS = (
    ("condition", "string", "condition key"),
    ("scope", "string", "all, in_scope or out_of_scope (the reader's in-scope flag)"),
    ("n", "int64", "reviews with a definite (0/1) label in both the signed report and the draft"),
    ("prevalence", "float64", "share present in the signed reports"),
    ("tp", "int64", ""),
    ("fn", "int64", ""),
    ("tn", "int64", ""),
    ("fp", "int64", ""),
    ("sensitivity", "float64", "tp / (tp + fn) of the draft's labels"),
    ("specificity", "float64", "tn / (tn + fp)"),
    ("auroc", "float64", "AUROC of Finding.probability against the signed-report label"),
    ("n_auroc", "int64", "reviews in the AUROC (definite reference label and a probability)"),
)

TABLES: dict[str, tuple[tuple[tuple[str, str, str], ...], Callable[[], Iterable[dict]]]] = {
    "reviews": (REVIEW_COLUMNS, iter_review_export_rows),
    "label_agreement": (LABEL_AGREEMENT_COLUMNS, lambda: stats.cached_label_tables()[0]),
    "draft_accuracy": (DRAFT_ACCURACY_COLUMNS, lambda: stats.cached_label_tables()[1]),
    "reading": (reading.READING_COLUMNS, reading.iter_reading_rows),  # reading time, finding outcomes
}
FORMATS = ("csv", "parquet")
EXPORT_CHUNK = 2000  # reviews per database round trip and per streamed CSV chunk


def table_rows(table: str) -> tuple[tuple[tuple[str, str, str], ...], list[dict]]:
    columns, rows = iter_table_rows(table)
    return columns, list(rows)


def iter_table_rows(table: str) -> tuple[tuple[tuple[str, str, str], ...], Iterable[dict]]:
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    columns, produce = TABLES[table]
    return columns, produce()


def to_csv(columns: tuple[tuple[str, str, str], ...], rows: Iterable[dict]) -> bytes:
    """CSV with a header row; missing values are empty cells, booleans ``true``/``false``."""
    return b"".join(iter_csv(columns, rows))


def iter_csv(columns: tuple[tuple[str, str, str], ...], rows: Iterable[dict]) -> Iterator[bytes]:
    """``to_csv`` in chunks of ``EXPORT_CHUNK`` rows (the same bytes), for a streamed response."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = [c[0] for c in columns]
    writer.writerow(names)
    for i, row in enumerate(rows, 1):
        writer.writerow([_csv_cell(row.get(n)) for n in names])
        if i % EXPORT_CHUNK == 0:
            yield buf.getvalue().encode()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue().encode()


def stream_table_csv(table: str) -> Iterator[bytes]:
    """A table as CSV chunks, reading the reviews in chunks as it goes (``StreamingHttpResponse``)."""
    columns, rows = iter_table_rows(table)
    return iter_csv(columns, rows)


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


_ARROW_TYPES = {"int64": "int64", "float64": "float64", "string": "string", "bool": "bool_"}


def to_parquet(columns: tuple[tuple[str, str, str], ...], rows: list[dict]) -> bytes:
    """Parquet with an explicit schema (types do not depend on the data) and the column
    descriptions as field metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {k: getattr(pa, v) for k, v in _ARROW_TYPES.items()}

    schema = pa.schema(
        [pa.field(name, types[kind](), nullable=True, metadata={"description": desc}) for name, kind, desc in columns]
    )
    table = pa.Table.from_pylist([{c[0]: row.get(c[0]) for c in columns} for row in rows], schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def render_table(table: str, fmt: str) -> bytes:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    columns, rows = table_rows(table)
    return to_csv(columns, rows) if fmt == "csv" else to_parquet(columns, rows)


def write_exports(
    out_dir: Path, *, formats: Iterable[str] = FORMATS, plots: Iterable[str] = ("png", "svg")
) -> list[Path]:
    """Every table in every format, the plots, and a README of the columns, into ``out_dir``."""
    from reviewer.research import plots as plotting

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for table in TABLES:
        columns, data = table_rows(table)
        for fmt in formats:
            path = out_dir / f"{table}.{fmt}"
            path.write_bytes(to_csv(columns, data) if fmt == "csv" else to_parquet(columns, data))
            written.append(path)
    bundle = stats.cached_bundle()
    figures = stats.overview(reader_keys=True)
    summary = {
        "radpeer": figures["radpeer"],
        "radpeer_by_model": figures["radpeer_by_model"],
        "radpeer_by_reader": figures["radpeer_by_reader"],
        "edit_distance_by_radpeer": figures["edit_distance"],
        "spearman_radpeer_word_levenshtein_norm": figures["spearman_word_norm"],
    }
    path = out_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    written.append(path)
    for name in plotting.PLOTS:
        for fmt in plots:
            path = out_dir / f"{name}.{fmt}"
            path.write_bytes(plotting.render(name, fmt, data=bundle))
            written.append(path)
    return written


def reader_breakdown(rows: list[ReviewRow], *, secret: bytes | None = None) -> dict[str, dict]:
    """RADPEER summary per reader, keyed by ``reader_key`` (never by name): the files and the
    statistics API use the same keys, so a researcher can relate them without identities."""
    key = secret if secret is not None else export_secret()
    return {reader_key(k, secret=key): v for k, v in stats.radpeer_by(rows, "reader_id").items()}


# --- training manifest (corrections flow back into training) ---------------------------------


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


__all__ = [
    "FORMATS",
    "KEY_HEX_DIGITS",
    "RADPEER_SCORES",
    "REVIEW_COLUMNS",
    "SECRET_ENV",
    "TABLES",
    "export_secret",
    "patient_key",
    "pseudonym",
    "reader_breakdown",
    "reader_key",
    "render_table",
    "review_export_rows",
    "stream_table_csv",
    "write_exports",
    "write_training_manifest",
]
