"""The text prompt of the Medical Report Agent: structured agent tokens + the report template.

Layout (the 64 image tokens are spliced in as embeddings after ``<image>``)::

    <image>[64 image tokens]</image>
    <region>lumbar</region>
    <classification>likely: Spinal canal stenosis <canal_stenosis:yes> 0.8; ... | unlikely: ...</classification>
    <localization>Spinal canal stenosis L4-5 central; ...</localization>
    <similar_case_report>...</similar_case_report>
    <template>ALIGNMENT: | ... | DISCS: L1-2, L2-3, ... | ... | IMPRESSION:</template>
    <report>

The writer writes the report from ALIGNMENT on (``WRITER_SECTIONS``); its first three sections
(``FACT_SECTIONS``: clinical history, technique, comparison) are the data's, taken from the DICOM
request attributes, the classified series and the archive by the grounding step
(``grounding.ground_draft``). The prompt holds none of that, so a writer trained to write them
could only invent them, and every token it spent there was replaced: ``writer_text`` takes them
out of its training targets.

The classification block lists all 17 conditions by clinical name, those called present first
(so "absent" is said, not implied), with the calibrated probability rounded to one decimal;
localization lists the conditions called present
that carry a level; the similar case contributes its IMPRESSION (``similar_case_text``).
``use_agent_tokens=False`` keeps only the image, region and template (the
plain-LLaVA baseline), so the two variants differ only in the agents' outputs.
"""

from __future__ import annotations

from ml.agents.analysis import ConditionResult
from ml.conditions import (
    BY_KEY,
    CONDITION_KEYS,
    DISC_LEVELS,
    FACT_SECTIONS,
    IMPRESSION_ORDER,
    REPORT_SECTIONS,
    WRITER_SECTIONS,
)
from ml.report_sections import sections_by_title, split_report

TAGS = (
    "<image>",
    "</image>",
    "<region>",
    "</region>",
    "<classification>",
    "</classification>",
    "<localization>",
    "</localization>",
    "<similar_case_report>",
    "</similar_case_report>",
    "<template>",
    "</template>",
    "<report>",
)

# One tag per condition and call, e.g. ``<canal_stenosis:yes>``. The tiny decoder's tokenizer
# makes each a single token: a from-scratch 2-layer decoder cannot learn to find a clinical name in
# its prompt and check which list it sits in (tiny-lm/1-4 drafted the same report whatever the
# tokens said; docs/report-agent.md), but it can learn whether a given token is present at all.
# Pretrained decoders read the tag as the words it is made of.
CONDITION_TAGS: tuple[str, ...] = tuple(f"<{k}:{v}>" for k in CONDITION_KEYS for v in ("yes", "no"))

SECTIONS = REPORT_SECTIONS


def template(region: str) -> str:
    """The writer's part of the expert report template (docs/paper.md) with the region's disc levels."""
    levels = ", ".join(DISC_LEVELS.get(region, ()))
    parts = [f"{s}: {levels}" if s == "DISCS" and levels else f"{s}:" for s in WRITER_SECTIONS]
    return "<template>" + " | ".join(parts) + "</template>"


def classification_block(conditions: list[ConditionResult]) -> str:
    """The diagnosis agents' calls in the words a report uses, the likely ones first.

    ``<classification>likely: Spinal canal stenosis <canal_stenosis:yes> 0.8; ... | unlikely: Facet
    synovial cyst <synovial_cyst:no> 0.1; ...</classification>``, each list in clinical priority
    (``IMPRESSION_ORDER``: the order a report's impression lists its findings, so the likely list
    reads like the impression to come). Clinical names for decoders that read words, each followed
    by its ``CONDITION_TAGS`` tag, which the tiny decoder reads as one token (report-agent/1 wrote
    ``canal_stenosis=yes`` in ordinary BPE pieces, and names alone in tiny-lm/2-4: that decoder
    followed neither: docs/report-agent.md).
    """
    by_key = {c.condition: c for c in conditions}
    likely: list[str] = []
    unlikely: list[str] = []
    for key in IMPRESSION_ORDER:
        c = by_key.get(key)
        if c is not None:
            tag = f"<{key}:{'yes' if c.present else 'no'}>"
            (likely if c.present else unlikely).append(f"{BY_KEY[key].name} {tag} {c.probability:.1f}")
    return "<classification>likely: " + "; ".join(likely) + " | unlikely: " + "; ".join(unlikely) + "</classification>"


def localization_block(conditions: list[ConditionResult]) -> str:
    items = []
    by_key = {c.condition: c for c in conditions}
    for c in (by_key[k] for k in IMPRESSION_ORDER if k in by_key):
        if c.present and c.level:
            items.append(" ".join(x for x in (BY_KEY[c.condition].name, c.level, c.side) if x))
    return "<localization>" + "; ".join(items) + "</localization>"


def prompt_parts(
    conditions: list[ConditionResult], similar_report: str | None, region: str, use_agent_tokens: bool
) -> tuple[str, str, str]:
    """(text before the similar report, the similar report, text after it): the caller truncates the middle."""
    head = f"</image>\n<region>{region}</region>\n"
    sim = ""
    tail = template(region) + "\n<report>\n"
    if use_agent_tokens:
        head += classification_block(conditions) + "\n" + localization_block(conditions) + "\n"
        head += "<similar_case_report>"
        sim = similar_case_text(similar_report or "")
        tail = "</similar_case_report>\n" + tail
    return head, sim, tail


def similar_case_text(report: str) -> str:
    """What of the retrieved report goes into ``<similar_case_report>``: its IMPRESSION when it has one.

    The impression is the prior reader's summary of the findings; the full text would triple the
    prompt for little extra signal. A report without an impression goes in whole (and is cut to
    the prompt budget by the agent).
    """
    imp = split_sections(report).get("IMPRESSION", "")
    return imp.strip() if imp.strip() else report.strip()


def writer_text(report: str) -> str:
    """The part of a report the writer learns to write: the report without its leading factual
    sections (``FACT_SECTIONS``), from its first other header on. A report that does not open
    with a factual section (another layout, a site's free text) is kept whole."""
    sections = split_report(report)
    lead = [s for s in sections if s.title or s.body.strip()]
    if not lead or lead[0].title not in FACT_SECTIONS:
        return report.strip()
    rest = next((s for s in sections if s.title and s.title not in FACT_SECTIONS), None)
    return report[rest.start :].strip() if rest is not None else ""


def split_sections(text: str) -> dict[str, str]:
    """Section title -> body of a report in the template's format (text before the first header under "")."""
    return sections_by_title(text, SECTIONS)
