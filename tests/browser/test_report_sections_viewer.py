"""The viewer cuts a report into the sections the server cuts: ohif-extension/src/reportText.ts,
given the titles the study context sends (``report_sections``), against
``ml.report_sections.split_report`` on reports with every kind of header."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ml.report_sections import split_report
from tests.browser import support
from tests.factories import DraftFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db]

REPORTS = [
    "CLINICAL HISTORY: Pain.\nDISCS:\n  L4-5: Protrusion.\nL5-S1: Normal.\nIMPRESSION:\n1. Herniation at L4-5.",
    "AI DRAFT\nIndication: pain\nFindings\nNeural foramina: patent.\nNote: lower case, not a header.\n"
    "LUMBAR SPINE, LEVEL BY LEVEL:\nT12-L1: normal\nConclusion: Bulge.\nADDENDUM (12/03): Called Dr X.\n",
    "Addendum by Dr Y - corrected level.\nMR: short capitals.\n  IMPRESSION  \n\nNo headers here at L3-4: none",
    "plain text without any header at all",
    "",
]

RUNNER = """
import { readFileSync } from 'node:fs';
import { splitSections } from './reportText.mjs';
const { texts, vocabulary } = JSON.parse(readFileSync(0, 'utf8'));
console.log(JSON.stringify(texts.map(t => splitSections(t, vocabulary))));
"""


@pytest.fixture(scope="module")
def splitter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """reportText.ts bundled into an ES module node can import."""
    out = tmp_path_factory.mktemp("report-text")
    support.bundle_extension_module("src/reportText.ts", out, "reportText.mjs")
    (out / "run.mjs").write_text(RUNNER)
    return out


def test_the_viewer_splits_with_the_study_contexts_titles_as_the_server_does(splitter, api_as) -> None:  # type: ignore[no-untyped-def]
    draft = DraftFactory()
    response = api_as("radiologist").get(f"/api/viewer/studies/{draft.study.study_uid}/")
    assert response.status_code == 200
    vocabulary = response.json()["report_sections"]
    proc = subprocess.run(
        [support.node(), str(splitter / "run.mjs")], input=json.dumps({"texts": REPORTS, "vocabulary": vocabulary}),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    viewer = json.loads(proc.stdout)
    for text, pieces in zip(REPORTS, viewer, strict=True):
        server = [{"title": s.title, "head": s.head, "body": s.body} for s in split_report(text)]
        assert pieces == server, text
    assert [p["title"] for p in viewer[0]] == ["CLINICAL HISTORY", "DISCS", "IMPRESSION"]  # L4-5 stays in DISCS
