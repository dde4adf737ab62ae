"""De-identified research exports: the tables (CSV, Parquet), the summary and the plots.

De-identification (``reviewer.deid``; profile and key scheme in docs/security.md): exports carry
no patient name, patient ID, accession number, institution, date finer than a month, DICOM UID,
username or database id. Studies, patients, readers, reviews, drafts and revisions appear as
keyed hashes (HMAC-SHA256 with the site's pseudonym secret, first 20 hex digits), so rows of the
same study or reader can be grouped across exports of one site but cannot be traced back, nor
looked up in the API, without the secret. The training manifest (``reviewer.research.training``,
re-exported here) carries keyed replacement UIDs and scrubbed text.

Column names are stable and documented in docs/workflow.md; a column is never renamed, only
added (the database-id columns were dropped for their keyed counterparts: an id is an identity
for whoever can query the API).

A table is produced in chunks of rows (each row its cells in column order), so the CSV streams:
the header goes out at once, then ``EXPORT_CHUNK`` reviews per database round trip, and memory
stays flat however many reviews there are. Parquet is written whole (one row group).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from operator import attrgetter
from pathlib import Path

from reviewer.deid import KEY_HEX_DIGITS, SECRET_ENV, pseudonym
from reviewer.deid import pseudonym_secret as export_secret
from reviewer.pseudonyms import Pseudonyms
from reviewer.research import reading, stats
from reviewer.research.stats import DISCREPANT, RADPEER_SCORES, REVIEW_ROW_FIELDS, SIGNIFICANT, ReviewRow
from reviewer.research.training import TrainingExportSummary, patient_key, training_entries, write_training_manifest

Columns = tuple[tuple[str, str, str], ...]


def reader_key(reader_id: object, *, secret: bytes | None = None) -> str:
    """The reader's pseudonym, the same in every export and in the statistics API."""
    return pseudonym("reader", reader_id, secret=secret)


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
    """De-identified rows (``REVIEW_COLUMNS``) of the signed reviews, as dicts."""
    return [dict(zip(REVIEW_COLUMN_NAMES, cells, strict=True)) for chunk in review_chunks(rows) for cells in chunk]


def review_chunks(rows: Iterable[ReviewRow] | None = None, *, for_csv: bool = False) -> Iterator[list[list]]:
    """The reviews table, ``EXPORT_CHUNK`` rows at a time, each row its cells in column order
    (None where missing; with ``for_csv`` as ``iter_csv`` writes them). Default: every signed
    review, read a chunk per query (``stats.value_chunks``), never built into ``ReviewRow``
    objects or dicts, and the month of sign-off formatted by the database."""
    key = Pseudonyms(export_secret())
    if rows is not None:
        fields = attrgetter(*REVIEW_ROW_FIELDS)
        signed = REVIEW_ROW_FIELDS.index("signed_at")
        tuples = [fields(r) for r in rows]
        months = [(*t[:signed], t[signed].strftime("%Y-%m") if t[signed] else "", *t[signed + 1 :]) for t in tuples]
        yield _review_cells(months, key, for_csv)
        return
    for chunk in stats.value_chunks(stats.review_values(signed_month=True), EXPORT_CHUNK):
        # the value tuples in ReviewRow's field order (see ``stats.iter_review_rows``)
        in_row_order = [(v[0], v[1], v[2], v[3], v[4], f"{v[5]}@{v[6]}" if v[5] else (v[7] or ""), *v[8:-1],
                         v[-1] or "") for v in chunk]  # fmt: skip
        yield _review_cells(in_row_order, key, for_csv)


NEEDS_ARBITRATION = frozenset({"2b", "3a", "3b"})
_BOOL_CELLS = (7, 8, 9, 13)  # discrepancy, clinically_significant, needs_arbitration, in_scope
_NULLABLE_CELLS = (5, 6, 15, 16, 17, 18, 19, 20, 21, 22, 23)  # radpeer, its level, the draft and revision keys, numbers


def _review_cells(rows: list[tuple], key: Pseudonyms, for_csv: bool) -> list[list]:
    """The cells of ``REVIEW_COLUMNS`` for review tuples in ``ReviewRow``'s field order, with the
    month of sign-off (``YYYY-MM``) in place of ``signed_at``."""
    reader = key.reader
    out = []
    for (review_id, _study_id, study_uid, reader_id, _reader, model_version, radpeer, in_scope, month, draft_id,
         revision_id, char, char_norm, word, word_norm, wer, impression_word_norm, impression_wer, arbitration_state,
         arbitration_decision, patient_id) in rows:  # fmt: skip
        resolved = arbitration_state == "resolved" and arbitration_decision
        cells = [
            key("review", review_id),
            key("study", study_uid),
            key("patient", patient_id or study_uid),
            reader(reader_id),
            model_version,
            radpeer,
            int(radpeer[0]) if radpeer else None,
            radpeer in DISCREPANT,
            radpeer in SIGNIFICANT,
            radpeer in NEEDS_ARBITRATION,
            arbitration_state or "",
            arbitration_decision or "",
            arbitration_decision if resolved else radpeer,  # radpeer_final
            bool(in_scope),
            month or "",
            key("draft", draft_id) if draft_id is not None else None,
            key("revision", revision_id) if revision_id is not None else None,
            char,
            char_norm,
            word,
            word_norm,
            wer,
            impression_word_norm,
            impression_wer,
        ]
        if for_csv:
            for i in _BOOL_CELLS:
                cells[i] = "true" if cells[i] else "false"
            for i in _NULLABLE_CELLS:
                if cells[i] is None:
                    cells[i] = ""
        out.append(cells)
    return out


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


def _dict_chunks(columns: Columns, rows: Iterable[dict], *, for_csv: bool = False) -> Iterator[list[list]]:
    """Rows given as dicts, as chunks of cells in column order (``for_csv``: as ``iter_csv``
    writes them)."""
    names = [c[0] for c in columns]
    chunk: list[list] = []
    for row in rows:
        chunk.append([_csv_cell(row.get(n)) for n in names] if for_csv else [row.get(n) for n in names])
        if len(chunk) == EXPORT_CHUNK:
            yield chunk
            chunk = []
    yield chunk


def _csv_cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


# per table: its columns and its rows in chunks of cells (``for_csv``: as ``iter_csv`` writes them)
TABLES: dict[str, tuple[Columns, Callable[[bool], Iterator[list[list]]]]] = {
    "reviews": (REVIEW_COLUMNS, lambda for_csv: review_chunks(for_csv=for_csv)),
    "label_agreement": (
        LABEL_AGREEMENT_COLUMNS,
        lambda for_csv: _dict_chunks(LABEL_AGREEMENT_COLUMNS, stats.cached_label_tables()[0], for_csv=for_csv),
    ),
    "draft_accuracy": (
        DRAFT_ACCURACY_COLUMNS,
        lambda for_csv: _dict_chunks(DRAFT_ACCURACY_COLUMNS, stats.cached_label_tables()[1], for_csv=for_csv),
    ),
    "reading": (  # reading time and finding outcomes
        reading.READING_COLUMNS,
        lambda for_csv: _dict_chunks(reading.READING_COLUMNS, reading.iter_reading_rows(), for_csv=for_csv),
    ),
}
FORMATS = ("csv", "parquet")
EXPORT_CHUNK = 5000  # reviews per database round trip and per streamed CSV chunk (chunks of 2,000 took 30% longer)


def table_chunks(table: str, *, for_csv: bool = False) -> tuple[Columns, Iterator[list[list]]]:
    """A table's columns and its rows, in chunks of cells in column order (read as iterated)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; known: {', '.join(TABLES)}")
    columns, produce = TABLES[table]
    return columns, produce(for_csv)


def iter_csv(columns: Columns, chunks: Iterable[list[list]]) -> Iterator[bytes]:
    """CSV with a header row, one bytes chunk for the header and one per chunk of rows; the cells
    as ``table_chunks(for_csv=True)`` gives them (missing values empty, booleans ``true``/``false``)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c[0] for c in columns])
    yield buf.getvalue().encode()  # the first byte at once, before any row is read
    for chunk in chunks:
        buf.seek(0)
        buf.truncate()
        writer.writerows(chunk)
        yield buf.getvalue().encode()


def stream_table_csv(table: str) -> Iterator[bytes]:
    """A table as CSV chunks, reading the rows in chunks as it goes (``StreamingHttpResponse``)."""
    columns, chunks = table_chunks(table, for_csv=True)
    return iter_csv(columns, chunks)


_ARROW_TYPES = {"int64": "int64", "float64": "float64", "string": "string", "bool": "bool_"}


def to_parquet(columns: Columns, chunks: Iterable[list[list]]) -> bytes:
    """Parquet with an explicit schema (types do not depend on the data) and the column
    descriptions as field metadata; built column by column from the chunks of cells."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {k: getattr(pa, v) for k, v in _ARROW_TYPES.items()}
    schema = pa.schema(
        [pa.field(name, types[kind](), nullable=True, metadata={"description": desc}) for name, kind, desc in columns]
    )
    cells: list[list] = [[] for _ in columns]
    for chunk in chunks:
        for i, column in enumerate(zip(*chunk, strict=True)):
            cells[i].extend(column)
    arrays = [pa.array(values, type=field.type) for values, field in zip(cells, schema, strict=True)]
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_arrays(arrays, schema=schema), buf)
    return buf.getvalue()


def render_table(table: str, fmt: str) -> bytes:
    """A whole table as CSV or Parquet bytes."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    columns, chunks = table_chunks(table, for_csv=fmt == "csv")
    return b"".join(iter_csv(columns, chunks)) if fmt == "csv" else to_parquet(columns, chunks)


def write_exports(
    out_dir: Path, *, formats: Iterable[str] = FORMATS, plots: Iterable[str] = ("png", "svg")
) -> list[Path]:
    """Every table in every format, the plots, and a README of the columns, into ``out_dir``."""
    from reviewer.research import plots as plotting

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for table in TABLES:
        columns, chunks = table_chunks(table)
        held = list(chunks)  # read once for both formats (Parquet holds the table anyway)
        for fmt in formats:
            path = out_dir / f"{table}.{fmt}"
            if fmt == "csv":
                with path.open("wb") as f:
                    f.writelines(iter_csv(columns, ([[_csv_cell(c) for c in row] for row in chunk] for chunk in held)))
            else:
                path.write_bytes(to_parquet(columns, held))
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


__all__ = [
    "FORMATS",
    "KEY_HEX_DIGITS",
    "RADPEER_SCORES",
    "REVIEW_COLUMNS",
    "SECRET_ENV",
    "TABLES",
    "TrainingExportSummary",
    "export_secret",
    "patient_key",
    "pseudonym",
    "reader_breakdown",
    "reader_key",
    "render_table",
    "review_export_rows",
    "stream_table_csv",
    "training_entries",
    "write_exports",
    "write_training_manifest",
]
