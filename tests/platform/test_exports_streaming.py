"""The streamed exports against the builder they replaced: byte for byte the same CSV and Parquet,
read in several chunks, with irregular rows (no distances, an arbitration resolved to another
score, a review whose draft was never recorded); the first chunk is the header, before any
review is read."""

from __future__ import annotations

import csv
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.stats_page import populate
from reviewer.models import Arbitration, Review
from reviewer.pseudonyms import Pseudonyms
from reviewer.research import exports, stats

pytestmark = pytest.mark.django_db

SECRET = "streaming-test-secret"


@pytest.fixture(autouse=True)
def _export_secret(settings):  # type: ignore[no-untyped-def]
    settings.SPINEREVIEW_EXPORT_SECRET = SECRET


@pytest.fixture
def reviews():  # type: ignore[no-untyped-def]
    populate(23, seed=9)
    ordered = list(Review.objects.order_by("id"))
    Review.objects.filter(pk=ordered[0].pk).update(edit_distance={})  # no stored distances
    Review.objects.filter(pk=ordered[1].pk).update(draft=None)  # a review without a draft
    arbitration = Arbitration.objects.order_by("id").first()
    Arbitration.objects.filter(pk=arbitration.pk).update(state="resolved", decision="2a")
    return ordered


def _builder_rows() -> list[dict]:
    """The review rows as the export built them before it streamed: a ``ReviewRow`` per review,
    then a dict per row."""
    key = Pseudonyms(exports.export_secret())
    out = []
    for r in stats.review_rows():
        resolved = r.arbitration_state == "resolved" and r.arbitration_decision
        out.append(
            {
                "review_key": key("review", r.review_id),
                "study_key": key("study", r.study_uid),
                "patient_key": key("patient", r.patient_id or r.study_uid),
                "reader_key": key.reader(r.reader_id),
                "model_version": r.model_version,
                "radpeer": r.radpeer,
                "radpeer_level": int(r.radpeer[0]) if r.radpeer else None,
                "discrepancy": r.radpeer in stats.DISCREPANT,
                "clinically_significant": r.radpeer in stats.SIGNIFICANT,
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
    return out


def _builder_csv(rows: list[dict]) -> bytes:
    def cell(value: object) -> object:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return value

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(exports.REVIEW_COLUMN_NAMES)
    for row in rows:
        writer.writerow([cell(row.get(n)) for n in exports.REVIEW_COLUMN_NAMES])
    return buf.getvalue().encode()


def _builder_parquet(rows: list[dict]) -> bytes:
    types = {"int64": pa.int64, "float64": pa.float64, "string": pa.string, "bool": pa.bool_}
    schema = pa.schema(
        [
            pa.field(n, types[kind](), nullable=True, metadata={"description": d})
            for n, kind, d in exports.REVIEW_COLUMNS
        ]
    )
    table = pa.Table.from_pylist([{n: row.get(n) for n in exports.REVIEW_COLUMN_NAMES} for row in rows], schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def test_the_streamed_csv_is_the_builders_bytes_in_chunks(reviews, api_as, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(exports, "EXPORT_CHUNK", 5)  # 23 reviews: five queries by keyset
    expected = _builder_csv(_builder_rows())
    assert b",,," in expected  # the review without distances has empty cells
    response = api_as("researcher").get("/api/exports/reviews.csv")
    assert response.streaming
    chunks = list(response.streaming_content)
    assert chunks[0] == expected.split(b"\n", 1)[0] + b"\n"  # the header, alone and first
    assert len(chunks) == 1 + 5
    assert b"".join(chunks) == expected


def test_the_parquet_export_is_the_builders_bytes(reviews, api_as, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(exports, "EXPORT_CHUNK", 4)
    rows = _builder_rows()
    assert api_as("researcher").get("/api/exports/reviews.parquet").content == _builder_parquet(rows)
    assert exports.review_export_rows() == rows


def test_the_command_writes_the_streamed_bytes(reviews, api_as, tmp_path):  # type: ignore[no-untyped-def]
    exports.write_exports(tmp_path, plots=())
    client = api_as("researcher")
    for table in exports.TABLES:
        streamed = b"".join(client.get(f"/api/exports/{table}.csv").streaming_content)
        assert (tmp_path / f"{table}.csv").read_bytes() == streamed, table
        assert (tmp_path / f"{table}.parquet").read_bytes() == client.get(f"/api/exports/{table}.parquet").content


def test_each_chunk_is_one_query_however_many_reviews(reviews, monkeypatch, django_assert_num_queries):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(exports, "EXPORT_CHUNK", 10)
    stream = exports.stream_table_csv("reviews")
    with django_assert_num_queries(0):
        next(stream)  # the header: nothing read yet
    with django_assert_num_queries(4):  # 10 + 10 + 3 reviews, then an empty page ends it
        rest = list(stream)
    assert sum(chunk.count(b"\n") for chunk in rest) == len(reviews)
