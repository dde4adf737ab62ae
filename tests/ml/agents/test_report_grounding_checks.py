"""The consistency check's section rules on drafts a short-trained writer produced: fragments and
section-wide normal sentences beside a finding, a finding on the wrong level line, a hedged
present finding, a section whose finding is stated in another section."""

from __future__ import annotations

import re

from ml.agents.labels import extract_labels
from ml.agents.report.grounding import ground_draft
from ml.agents.report.prompt import split_sections
from tests.report_drafts import calls, finding_sentences


def test_no_fragments_and_no_normal_section_beside_a_finding() -> None:
    """A short-trained writer listed levels ("L1-2 left; L2-3 right; ...") after a condition the
    check removed, and called the marrow normal where the agents found a compression deformity:
    the level-and-side fragments are removed, and a section that states a present finding loses
    its "no significant abnormality" sentence, each change noted for the reader."""
    conds = calls({"compression_deformity": ("L1", ""), "disc_herniation": ("L1-2", "left")})
    writer = (
        "CLINICAL HISTORY: Low back pain.\nTECHNIQUE: MRI.\nCOMPARISON: None.\n"
        "ALIGNMENT: Normal alignment.\n"
        "VERTEBRAL BODIES/MARROW: No significant abnormality.\n"
        "DISCS: Disc desiccation at L1-2 left; L2-3 right; L3-4 left. L4-5 right; L5-S1 right.\n"
        "SPINAL CANAL: No spinal canal stenosis.\nNEURAL FORAMINA: Patent.\n"
        "CORD/CONUS/CAUDA EQUINA: Normal.\nPARASPINAL/OTHER: Unremarkable.\n"
        "IMPRESSION:\n1. Degenerative disc disease."
    )
    g = ground_draft(writer, conds, "lumbar")
    sections = split_sections(g.text)
    marrow = sections["VERTEBRAL BODIES/MARROW"]
    assert "compression" in marrow.lower(), g.text
    assert "no significant abnormality" not in marrow.lower(), g.text
    for s in finding_sentences(g.text):
        assert re.search(r"[A-Za-z]{3,}", re.sub(r"\b(left|right|[CTLS]\d+(-[CTLS]?\d+)?)\b", "", s)), s
    assert "Normal alignment" in sections["ALIGNMENT"]  # a section with no finding keeps its normal line
    reasons = [c["reason"] for c in g.check["changes"] if c["action"] == "removed"]
    assert any("fragment" in r for r in reasons), g.check["changes"]
    assert any("calls the section normal" in r for r in reasons), g.check["changes"]
    assert g.check["residual"] == []


def test_a_finding_on_the_wrong_level_line_moves_to_the_agents_line_once() -> None:
    """A level-by-level DISCS section that puts the same finding on three wrong lines: the level
    fix moves it to the agent's line (not "L2-3: L4-5: ..."), once."""
    conds = calls({"disc_height_loss": ("L4-5", "")})
    writer = (
        "CLINICAL HISTORY: Low back pain.\nTECHNIQUE: MRI.\nCOMPARISON: None.\nALIGNMENT: Normal.\n"
        "VERTEBRAL BODIES/MARROW: Normal.\n"
        "DISCS:\n  L1-2: No abnormality.\n  L2-3: Mild disc height loss.\n  L3-4: Mild disc height loss.\n"
        "  L4-5: Normal.\n  L5-S1: Mild disc height loss.\n"
        "SPINAL CANAL: Patent.\nNEURAL FORAMINA: Patent.\nCORD/CONUS/CAUDA EQUINA: Normal.\n"
        "PARASPINAL/OTHER: Unremarkable.\nIMPRESSION:\n1. Disc height loss at L4-5."
    )
    g = ground_draft(writer, conds, "lumbar")
    lines = [ln.strip() for ln in split_sections(g.text)["DISCS"].splitlines() if ln.strip()]
    assert not any(re.match(r"^[CTLS]\d[^:]*:\s*[CTLS]\d[^:]*:", ln) for ln in lines), lines
    l45 = [ln for ln in lines if ln.startswith("L4-5:")]
    assert len(l45) == 1, lines
    assert l45[0].lower().count("height loss") == 1, lines
    others = [ln for ln in lines if not ln.startswith("L4-5:")]
    assert not any("height loss" in ln.lower() for ln in others), lines
    assert g.check["residual"] == []


def test_a_hedged_present_finding_is_stated_with_the_agents_probability() -> None:
    """The agents' call is the certainty: "Probable disc herniation" for a call at 0.99 becomes
    the finding in the template's wording with its probability (the reader's hedge), noted."""
    conds = calls({"disc_herniation": ("L4-5", "right")})
    writer = (
        "CLINICAL HISTORY: Low back pain.\nTECHNIQUE: MRI.\nCOMPARISON: None.\nALIGNMENT: Normal.\n"
        "VERTEBRAL BODIES/MARROW: Normal.\nDISCS: Probable disc herniation at L4-5, right.\n"
        "SPINAL CANAL: Patent.\nNEURAL FORAMINA: Patent.\nCORD/CONUS/CAUDA EQUINA: Normal.\n"
        "PARASPINAL/OTHER: Unremarkable.\nIMPRESSION:\n1. Probable disc herniation at L4-5; clinical correlation."
    )
    g = ground_draft(writer, conds, "lumbar")
    assert extract_labels(g.text).labels["disc_herniation"] == 1, g.text
    assert "probable" not in g.text.lower(), g.text
    assert "0.90" in split_sections(g.text)["DISCS"], g.text
    assert any(c["action"] == "removed" and c["reason"].startswith("hedges") for c in g.check["changes"])
    assert g.check["residual"] == []


def test_a_section_whose_finding_is_stated_elsewhere_does_not_call_itself_normal() -> None:
    """A short-trained writer listed canal stenosis and foraminal narrowing under DISCS and wrote
    "No significant changes." before a marrow finding: the empty SPINAL CANAL and NEURAL FORAMINA
    sections must not be filled with "No canal stenosis detected." (the reader would read the
    stenosis denied), and the section-wide normal sentence beside the marrow finding goes."""
    conds = calls(
        {"canal_stenosis": ("L4-5", ""), "foraminal_narrowing": ("L4-5", "right"), "marrow_edema": ("L4", "")}
    )
    writer = (
        "CLINICAL HISTORY: Low back pain.\nTECHNIQUE: MRI.\nCOMPARISON: None.\nALIGNMENT: Normal alignment.\n"
        "VERTEBRAL BODIES/MARROW: No significant changes. Bone marrow edema at L4.\n"
        "DISCS: Spinal canal stenosis at L4-5. Neural foraminal narrowing at L4-5, right.\n"
        "SPINAL CANAL:\nNEURAL FORAMINA: Patent.\nCORD/CONUS/CAUDA EQUINA: Normal.\n"
        "PARASPINAL/OTHER: Unremarkable.\n"
        "IMPRESSION:\n1. Spinal canal stenosis at L4-5.\n2. Foraminal narrowing at L4-5, right.\n"
        "3. Bone marrow edema at L4."
    )
    g = ground_draft(writer, conds, "lumbar")
    sections = split_sections(g.text)
    low = g.text.lower()
    assert "no canal stenosis" not in low, g.text
    assert "no foraminal narrowing" not in low, g.text
    assert "patent" not in sections["NEURAL FORAMINA"].lower(), g.text
    assert "stenosis" in sections["SPINAL CANAL"].lower(), g.text
    assert "foraminal narrowing" in sections["NEURAL FORAMINA"].lower(), g.text
    assert "no significant changes" not in sections["VERTEBRAL BODIES/MARROW"].lower(), g.text
    assert "Normal alignment" in sections["ALIGNMENT"]  # no finding of its own: its normal line stays
    for title, key in (("SPINAL CANAL", "canal_stenosis"), ("NEURAL FORAMINA", "foraminal_narrowing")):
        assert extract_labels(sections[title]).labels[key] == 1, g.text  # the section reads as the finding
    assert g.check["residual"] == []
