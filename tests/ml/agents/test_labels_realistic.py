"""Rule-based label extractor on radiologists' wording: hand-written sentences for each kind of
rule (abbreviations, British spelling, negation scope, directional hedges, look-alikes, priors,
addenda, post-operative history) and accuracy floors on the hand-written realistic corpus
(``tests/data/realistic_reports``), whose wording is not the synthetic generator's."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ml.agents.labels import extract_labels

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

from benchmarks.label_extraction_realistic import SPLITS, load_corpus, score  # noqa: E402


def lab(text: str, key: str) -> int:
    return extract_labels("FINDINGS:\n" + text).labels[key]


@pytest.mark.parametrize(
    ("text", "key", "want"),
    [
        # abbreviations and level formats
        ("L4/5: Mild bilateral NFN.", "foraminal_narrowing", 1),
        ("L4-L5: Moderate right SAR stenosis.", "subarticular_stenosis", 1),
        ("L4-L5: Moderate right SAR stenosis.", "canal_stenosis", 0),
        ("L4-5: severe right subarticular (lateral recess) stenosis.", "subarticular_stenosis", 1),
        ("L4-5: severe right subarticular (lateral recess) stenosis.", "canal_stenosis", 0),
        ("L3/4: bulge, mild CCS.", "canal_stenosis", 1),
        ("DDD L3-S1.", "disc_height_loss", 1),
        ("L5/S1: HNP contacting the S1 root.", "disc_herniation", 1),
        # myelomalacia (cord softening) is not myeloma
        ("Focal myelomalacia of the cord at C5-6 from the old injury.", "osseous_lesion", 0),
        ("Lytic L2 lesion in keeping with known myeloma.", "osseous_lesion", 1),
        # British spelling
        ("Extensive bone marrow oedema in L1.", "marrow_edema", 1),
        ("Small typical haemangioma in T10.", "hemangioma", 1),
        ("Intradural extramedullary tumour at T7.", "intradural_lesion", 1),
        ("Right L5/S1 disc prolapse.", "disc_herniation", 1),
        ("No disc prolapse.", "disc_herniation", 0),
        # misspellings within one edit
        ("Grade 1 spondylolisthsis at L4-5.", "spondylolisthesis", 1),
        ("Small central protusion at L5-S1.", "disc_herniation", 1),
        ("The thecal sac is decompressed.", "canal_stenosis", 0),  # a prefix is another word
        # negation scope
        ("No evidence of disc herniation or spinal stenosis.", "canal_stenosis", 0),
        ("Disc bulge without canal stenosis.", "canal_stenosis", 0),
        ("A pars defect is not seen.", "pars_defect", 0),
        ("Negative for epidural lipomatosis.", "epidural_lipomatosis", 0),
        ("No significant canal or foraminal stenosis.", "foraminal_narrowing", 0),
        ("No significant canal or foraminal stenosis.", "canal_stenosis", 0),
        ("No canal stenosis, moderate left foraminal stenosis.", "foraminal_narrowing", 1),
        ("Moderate canal and bilateral foraminal stenosis at L4-5.", "canal_stenosis", 1),
        ("No change in the bilateral L5 pars defects.", "pars_defect", 1),  # pseudo-negation
        ("The finding represents an osteophyte rather than a disc protrusion.", "disc_herniation", 0),
        # hedges, and their direction
        ("? bilateral L5 pars defects.", "pars_defect", -1),
        ("Grade 1 L5 slip, query underlying pars defects.", "pars_defect", -1),
        ("Grade 1 L5 slip, query underlying pars defects.", "spondylolisthesis", 1),
        ("Possible left pars defect with grade 1 anterolisthesis.", "spondylolisthesis", 1),
        ("An early pars defect cannot be excluded.", "pars_defect", -1),
        ("Focus in L2 which may represent an atypical haemangioma.", "hemangioma", -1),
        ("Findings suspicious for a left L5 pars defect.", "pars_defect", -1),
        ("Lytic lesion in L3, suspicious for metastasis.", "osseous_lesion", 1),  # the condition itself
        ("Pars and pedicle marrow oedema, which may reflect a stress reaction.", "marrow_edema", 1),
        ("Whether there is an acute fracture is uncertain.", "acute_fracture", -1),
        ("Tiny protrusion versus annular bulge at L3-4.", "disc_herniation", -1),
        # look-alikes
        ("Small annular fissure at L4-5.", "disc_herniation", 0),
        ("Several intravertebral disc herniations (Schmorl's nodes).", "disc_herniation", 0),
        ("Modic type 2 endplate changes at L4-5.", "endplate_inflammation", 0),
        ("Mixed Modic 2/3 change at L4-5.", "endplate_inflammation", 0),
        ("Mixed type 1/2 Modic changes at L3-4.", "endplate_inflammation", 1),
        ("Modic 1 endplate oedema at L4-5.", "marrow_edema", 0),
        ("Mild desiccation with preserved disc heights.", "disc_height_loss", 0),
        ("Disc desiccation and height loss at L2-3.", "disc_height_loss", 1),
        ("Mild height loss of the L2 vertebral body.", "compression_deformity", 1),
        ("Mild height loss of the L2 vertebral body.", "disc_height_loss", 0),
        ("C4-5: Mild loss of disc height and T2 signal.", "compression_deformity", 0),
        ("Intramedullary T2 hyperintensity consistent with myelopathy.", "intradural_lesion", 0),
        ("Mild cord oedema above the mass.", "marrow_edema", 0),
        ("Old healed wedge deformity of T7.", "acute_fracture", 0),
        ("Old healed wedge deformity of T7.", "compression_deformity", 1),
        # post-operative spines
        ("Status post L5-S1 fusion for isthmic spondylolisthesis.", "spondylolisthesis", 0),
        ("Status post L5-S1 fusion for isthmic spondylolisthesis.", "pars_defect", 0),
        ("Post-laminectomy changes; no recurrent canal stenosis.", "canal_stenosis", 0),
        ("Recurrent right paracentral disc extrusion at L4-5.", "disc_herniation", 1),
        # priors
        ("The previously seen L5-S1 extrusion has resolved.", "disc_herniation", 0),
        ("Unchanged 12 mm Tarlov cyst at S2.", "perineural_cyst", 1),
        ("Resolution of the L3 marrow oedema.", "marrow_edema", 0),
        # oedema that describes a Modic change is that change, within its chunk only
        ("Modic type 1 change at L4-5 with surrounding marrow oedema on STIR.", "marrow_edema", 0),
        ("Modic type 1 change at L4-5 with surrounding marrow oedema on STIR.", "endplate_inflammation", 1),
        ("Marrow oedema either side of the L3/4 disc in keeping with type 1 Modic change.", "marrow_edema", 0),
        ("Modic 1 change at L4-5, and marrow oedema in the L1 body.", "marrow_edema", 1),
        ("Modic 2 change at L4-5. Marrow oedema in L1.", "marrow_edema", 1),
        # height loss wording, owner by context
        ("The L2/3 disc is mildly reduced in height.", "disc_height_loss", 1),
        ("The T12 vertebral body is reduced in height.", "compression_deformity", 1),
        ("The T12 vertebral body is reduced in height.", "disc_height_loss", 0),
        ("The lower lumbar discs are desiccated and narrowed.", "disc_height_loss", 1),
        ("The discs are desiccated but not narrowed.", "disc_height_loss", 0),
        ("Discs of normal height.", "disc_height_loss", 0),
        # fractures whose kind or oedema makes them current
        ("Right sacral insufficiency fracture.", "acute_fracture", 1),
        ("Healed right sacral insufficiency fracture.", "acute_fracture", 0),
        ("Query right sacral insufficiency fracture.", "acute_fracture", -1),
        ("L2 superior endplate fracture with surrounding marrow oedema.", "acute_fracture", 1),
        ("L2 superior endplate fracture with no marrow oedema.", "acute_fracture", 0),
        ("Possible early L3 pathological compression fracture.", "acute_fracture", 0),  # early = extent
    ],
)
def test_extractor_reads_radiologists_wording(text: str, key: str, want: int) -> None:
    assert lab(text, key) == want


def test_addendum_withdraws_and_adds_findings() -> None:
    body = (
        "FINDINGS:\nGrade 1 anterolisthesis of L5 on S1 with bilateral L5 pars defects.\n"
        "IMPRESSION:\nGrade 1 isthmic spondylolisthesis with bilateral L5 pars defects.\n"
    )
    assert extract_labels(body).labels["pars_defect"] == 1
    withdrawn = extract_labels(body + "ADDENDUM: The previously described pars defects are not present.")
    assert withdrawn.labels["pars_defect"] == 0
    assert withdrawn.labels["spondylolisthesis"] == 1  # the addendum does not touch what it does not mention
    text = "FINDINGS: Normal.\nIMPRESSION: Normal.\nAddendum (re-review): a right L5 pars defect."
    added = extract_labels(text)
    assert added.labels["pars_defect"] == 1
    a, b = added.spans["pars_defect"]
    assert text[a:b] == added.evidence["pars_defect"] == "a right L5 pars defect."


def test_hedged_histology_does_not_make_a_stated_lesion_uncertain() -> None:
    stated = "FINDINGS:\nEnhancing intradural extramedullary nodule at T11.\nIMPRESSION:\nPossible meningioma."
    assert extract_labels(stated).labels["intradural_lesion"] == 1
    assert extract_labels(stated, lexicon_version=2).labels["intradural_lesion"] == -1  # v2 stays reproducible
    assert extract_labels("FINDINGS:\nPossible small schwannoma at L2.").labels["intradural_lesion"] == -1
    hedged = "FINDINGS:\nPossible intradural nodule at L2, probably a schwannoma.\nIMPRESSION:\nProbable schwannoma."
    assert extract_labels(hedged).labels["intradural_lesion"] == -1
    # the osseous-lesion condition is the suspicion itself: a hedge on metastasis stays a hedge
    bone = "FINDINGS:\nSclerotic focus in L3.\nIMPRESSION:\nMetastasis cannot be excluded."
    assert extract_labels(bone).labels["osseous_lesion"] == -1


def test_sections_without_colons_and_history_are_kept_apart() -> None:
    text = "HISTORY\n?pars defect. Prior discectomy for herniation.\nFINDINGS\nNormal discs.\nIMPRESSION\nNormal."
    res = extract_labels(text)
    assert res.labels["pars_defect"] == 0
    assert res.labels["disc_herniation"] == 0


@pytest.mark.parametrize("split", SPLITS)
def test_realistic_corpus_accuracy(split: str) -> None:
    """Floors below the measured figures (docs/label-extraction.md) so a regression fails."""
    rows = load_corpus(split)
    assert len(rows) >= 25
    res = score(rows, extract_labels)
    detail = [(e["id"], e["condition"], e["truth"], e["extracted"]) for e in res["errors"]]
    # dev, heldout, heldout_b and heldout_c (development for lexicon v4) measure 1.000 / 1.000.
    # heldout_d, run with v4 once at the end, measured 0.969 (124/128) / 0.893 (50/56); its misses
    # are left unfixed so that it stays held out. One more miss there fails the floor.
    floors = {
        "dev": (1.0, 1.0),
        "heldout": (1.0, 1.0),
        "heldout_b": (1.0, 1.0),
        "heldout_c": (1.0, 1.0),
        "heldout_d": (0.965, 0.89),
    }[split]
    assert res["non_absent_accuracy"] >= floors[0], detail
    assert res["report_accuracy"] >= floors[1], detail


def test_lexicon_v1_reads_worse_than_v2_on_realistic_reports() -> None:
    """The point of v2: v1 (written from the generator's phrases) misses radiologists' wording."""
    rows = load_corpus("dev")
    v1 = score(rows, lambda t: extract_labels(t, lexicon_version=1))
    v2 = score(rows, extract_labels)
    assert v2["non_absent_accuracy"] > v1["non_absent_accuracy"]
    assert v2["report_accuracy"] > v1["report_accuracy"]
