"""Rule-based label extractor: hand-written sentences (negation, hedges, sections, synonyms,
comparisons) and an accuracy floor on generated reports of a seed never used in development."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ml.agents.labels import LabelResult, extract_labels
from ml.conditions import CONDITION_KEYS

REPO = Path(__file__).resolve().parents[3]


def lab(text: str, key: str) -> int:
    return extract_labels(text).labels[key]


@pytest.mark.parametrize(
    ("text", "key", "want"),
    [
        # synonyms
        ("FINDINGS: L4-5: Large left paracentral extrusion.", "disc_herniation", 1),
        ("FINDINGS: Sequestered fragment behind L5. Free fragment migrating caudally.", "disc_herniation", 1),
        ("FINDINGS: Perineurial cyst at S2, i.e. Tarlov cyst.", "perineural_cyst", 1),
        ("FINDINGS: Grade 1 retrolisthesis of L3 on L4.", "spondylolisthesis", 1),
        ("FINDINGS: Bilateral L5 spondylolysis.", "pars_defect", 1),
        ("FINDINGS: Prominent epidural fat compressing the thecal sac.", "epidural_lipomatosis", 1),
        ("FINDINGS: Excessive epidural fat from L4 to S1.", "epidural_lipomatosis", 1),
        ("FINDINGS: Intradural extramedullary schwannoma at T11.", "intradural_lesion", 1),
        ("FINDINGS: Juxtafacet cyst on the right at L4-5.", "synovial_cyst", 1),
        # negation
        ("FINDINGS: No disc herniation.", "disc_herniation", 0),
        ("FINDINGS: Disc bulge without focal herniation.", "disc_herniation", 0),
        ("FINDINGS: No fracture, marrow edema, or suspicious lesion.", "marrow_edema", 0),
        ("FINDINGS: Negative for spondylolisthesis.", "spondylolisthesis", 0),
        ("FINDINGS: The previously seen L5-S1 extrusion has resolved.", "disc_herniation", 0),
        ("FINDINGS: Disc heights are maintained.", "disc_height_loss", 0),
        # the comma ends a negation's scope unless it is a list
        ("FINDINGS: No canal stenosis, moderate left foraminal narrowing.", "foraminal_narrowing", 1),
        ("FINDINGS: No canal stenosis, moderate left foraminal narrowing.", "canal_stenosis", 0),
        # a negation cue after a terminator does not reach back
        ("FINDINGS: Compression fracture of L1 without retropulsion.", "compression_deformity", 1),
        # hedges
        ("FINDINGS: Possible small central protrusion at L4-5.", "disc_herniation", -1),
        ("FINDINGS: A pars defect at L5 cannot be excluded.", "pars_defect", -1),
        ("FINDINGS: T2 bright focus in L2 that may represent an atypical hemangioma.", "hemangioma", -1),
        ("FINDINGS: Borderline central canal narrowing at L4-5.", "canal_stenosis", -1),
        ("FINDINGS: Questionable faint marrow edema in T12.", "marrow_edema", -1),
        # "suspicious for" / "likely" call a finding, they do not hedge it
        ("FINDINGS: Lesion in L3, suspicious for metastasis.", "osseous_lesion", 1),
        ("FINDINGS: Intradural mass at L2, likely meningioma.", "intradural_lesion", 1),
        # look-alikes that are labelled absent
        ("FINDINGS: Modic type 2 endplate changes at L4-5.", "endplate_inflammation", 0),
        ("FINDINGS: Diffuse disc bulge at L3-4.", "disc_herniation", 0),
        ("FINDINGS: Moderate right foraminal stenosis at L4-5.", "canal_stenosis", 0),
        ("FINDINGS: Mild left subarticular recess stenosis.", "canal_stenosis", 0),
        # sections: the clinical history and comparison are not findings
        (
            "CLINICAL HISTORY: Known malignancy, evaluate for metastatic disease.\nFINDINGS: Normal.",
            "osseous_lesion",
            0,
        ),
        ("INDICATION: Rule out disc herniation.\nIMPRESSION: Normal MRI.", "disc_herniation", 0),
        ("COMPARISON: Prior MRI with L4-5 extrusion.\nFINDINGS: Normal discs.", "disc_herniation", 0),
        # the impression decides over the findings when it commits
        ("FINDINGS: Possible protrusion at L4-5.\nIMPRESSION:\n1. Disc protrusion at L4-5.", "disc_herniation", 1),
        (
            "FINDINGS: Tiny protrusion at L4-5.\nIMPRESSION:\n1. Possible small protrusion at L4-5.",
            "disc_herniation",
            -1,
        ),
        # text without headers is read as findings
        ("Acute L1 burst fracture with marrow edema.", "acute_fracture", 1),
    ],
)
def test_extractor_reads_hand_written_sentences(text: str, key: str, want: int) -> None:
    assert lab(text, key) == want


def test_result_has_all_keys_and_evidence_is_an_exact_substring() -> None:
    text = (
        "CLINICAL HISTORY: Back pain.\nDISCS:\n  L4-5: Mild disc height loss; left paracentral protrusion.\n"
        "IMPRESSION:\n1. Disc herniation at L4-5.\n2. Possible pars defect at L5; CT could confirm."
    )
    res = extract_labels(text)
    assert isinstance(res, LabelResult)
    assert set(res.labels) == set(CONDITION_KEYS) == set(res.confidence)
    assert res.labels["disc_herniation"] == 1
    assert res.labels["pars_defect"] == -1
    assert res.labels["disc_height_loss"] == 1
    assert set(res.evidence) == {k for k, v in res.labels.items() if v != 0}
    for key, ev in res.evidence.items():
        a, b = res.spans[key]
        assert text[a:b] == ev
    assert res.evidence["disc_herniation"] == "Disc herniation at L4-5."
    assert res.confidence["pars_defect"] < res.confidence["disc_herniation"]
    assert res.extractor == "rules/lexicon-v4"
    for old in (1, 2, 3):  # stored versions stay readable
        assert extract_labels(text, lexicon_version=old).extractor == f"rules/lexicon-v{old}"
    assert LabelResult.from_dict(res.to_dict()) == res


def test_bad_input_gets_a_clear_error() -> None:
    with pytest.raises(TypeError, match="must be str"):
        extract_labels(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown label backend"):
        extract_labels("x", backend="oracle")
    with pytest.raises(FileNotFoundError, match="no lexicon v99"):
        extract_labels("x", lexicon_version=99)
    assert extract_labels("").labels == dict.fromkeys(CONDITION_KEYS, 0)


def test_accuracy_floor_on_reports_of_a_held_out_seed() -> None:
    """Seed 4242 was never looked at while the lexicon was written (development used 1000)."""
    sys.path.insert(0, str(REPO))
    from benchmarks.label_extraction import evaluate, synth_reports

    pairs = synth_reports(4242, 150)
    res = evaluate(pairs, lambda texts: [extract_labels(t) for t in texts])
    assert res["accuracy"] >= 0.99, res["errors"][:3]
    assert min(res["per_condition"].values()) >= 0.95
    uncertain_row = res["confusion"][0]
    assert uncertain_row[0] >= 0.9 * sum(uncertain_row)  # hedged findings come out as -1
