"""The one report-section splitter (ml.report_sections) and the views built on it: the server's
per-section edit distance, the label extractor's sections and the report agent's template view."""

from __future__ import annotations

from ml.agents.labels.text import split_sentences
from ml.agents.report.prompt import split_sections as agent_sections
from ml.conditions import REPORT_SECTIONS
from ml.report_sections import section_key, sections_by_title, split_report, viewer_vocabulary
from reviewer.research.metrics import split_sections as metric_sections

REPORT = (
    "AI DRAFT v1\n"
    "CLINICAL HISTORY: Low back pain.\n"
    "DISCS:\n"
    "  L4-5: Broad-based protrusion.\n"
    "L5-S1: Normal.\n"
    "Neural foramina: Patent.\n"
    "NOTE: see prior.\n"
    "Impression\n"
    "1. Disc protrusion at L4-5.\n"
    "ADDENDUM (12/03): Discussed with Dr X.\n"
)


def test_pieces_join_back_to_the_text_byte_for_byte() -> None:
    sections = split_report(REPORT)
    assert "".join(s.head + s.body for s in sections) == REPORT
    assert all(REPORT[s.start : s.body_start] == s.head and REPORT[s.body_start : s.end] == s.body for s in sections)


def test_level_lines_stay_in_discs_and_known_headers_are_found_in_any_case() -> None:
    titles = [s.title for s in split_report(REPORT)]
    assert titles == ["", "CLINICAL HISTORY", "DISCS", "NEURAL FORAMINA", "NOTE", "IMPRESSION", "ADDENDUM"]
    discs = next(s for s in split_report(REPORT) if s.title == "DISCS")
    assert "L4-5: Broad-based protrusion." in discs.body
    assert "L5-S1: Normal." in discs.body


def test_aliases_map_to_the_template_title_and_lowercase_unknown_labels_are_text() -> None:
    text = "Indication: pain.\nFindings: Mild bulge.\nNote: not a header.\nConclusion: Bulge."
    assert [(s.title, s.label) for s in split_report(text)] == [
        ("CLINICAL HISTORY", "Indication"),
        ("FINDINGS", "Findings"),
        ("IMPRESSION", "Conclusion"),
    ]
    assert "Note: not a header." in split_report(text)[1].body


def test_numbered_items_and_short_capitals_are_not_headers() -> None:
    text = "IMPRESSION:\n1. Stenosis.\nMR: lumbar spine."
    assert [s.title for s in split_report(text)] == ["IMPRESSION"]


def test_server_keys_are_the_section_key_of_the_shared_titles() -> None:
    sections = metric_sections(REPORT)
    assert list(sections) == ["preamble", *(section_key(s.title) for s in split_report(REPORT)[1:])]
    assert sections["impression"] == "1. Disc protrusion at L4-5."
    assert "L5-S1: Normal." in sections["discs"]
    assert section_key("VERTEBRAL BODIES/MARROW") == "vertebral_bodies_marrow"


def test_the_template_view_keeps_unknown_headers_inside_the_section_they_interrupt() -> None:
    view = agent_sections(REPORT)
    assert view == sections_by_title(REPORT, REPORT_SECTIONS)
    assert view[""] == "AI DRAFT v1"
    assert view["NEURAL FORAMINA"] == "Patent.\nNOTE: see prior."
    assert view["IMPRESSION"] == "1. Disc protrusion at L4-5.\nADDENDUM (12/03): Discussed with Dr X."
    assert "L4-5: Broad-based protrusion." in view["DISCS"]


def test_the_label_extractor_reads_the_same_sections() -> None:
    lexicon = {
        "history": ["clinical history"],
        "impression": ["impression"],
        "addendum": ["addendum"],
        "findings": ["discs", "neural foramina"],
    }
    kinds = {s.text: s.section for s in split_sentences(REPORT, lexicon)}
    assert kinds["Low back pain."] == "history"
    assert kinds["L4-5: Broad-based protrusion."] == "findings"
    assert kinds["see prior."] == "findings"  # an unknown capitalised header is a findings sub-section
    assert kinds["Disc protrusion at L4-5."] == "impression"
    assert kinds["Discussed with Dr X."] == "addendum"


def test_the_viewer_vocabulary_names_every_template_title_in_order() -> None:
    vocab = viewer_vocabulary()
    assert [v["title"] for v in vocab][: len(REPORT_SECTIONS)] == list(REPORT_SECTIONS)
    impression = next(v for v in vocab if v["title"] == "IMPRESSION")
    assert "CONCLUSION" in impression["aliases"]
