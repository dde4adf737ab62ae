"""Lexicon v4 rules, one hand-written sentence each: negation over long lists, a post-negation's
reach to its subject, lateral-recess narrowing carried by the verb, statements of normality and
level-specific withdrawals in addenda, enhancing foci of the cauda equina, the Modic type without
the eponym, and more shorthand and hedges. None of these sentences is taken from a corpus split."""

from __future__ import annotations

import pytest

from ml.agents.labels import extract_labels

LIST = "No evidence of fracture, marrow oedema, canal or foraminal stenosis, nerve root compression or pars defect."
LONG_LIST = "No listhesis, fracture, cord compression, abnormal cord signal, marrow oedema or bone lesion is seen."
CYST = "The left facet synovial cyst described at L4-5 on the previous examination is no longer seen."
NODULAR = "Nodular enhancement of the cauda equina nerve roots, in keeping with leptomeningeal disease."


def lab(text: str, key: str, version: int | None = None) -> int:
    kw = {} if version is None else {"lexicon_version": version}
    return extract_labels("FINDINGS:\n" + text, **kw).labels[key]


@pytest.mark.parametrize(
    ("text", "key", "want"),
    [
        # a negation cue reaches over a list of short items, however long
        (LIST, "pars_defect", 0),
        (LIST, "marrow_edema", 0),
        (LONG_LIST, "marrow_edema", 0),
        ("Canal stenosis, foraminal narrowing and cord compression are not seen.", "foraminal_narrowing", 0),
        # ... but an item with a grade of its own is a new statement
        ("No canal stenosis, moderate left foraminal narrowing or nerve root compression.", "foraminal_narrowing", 1),
        ("No canal stenosis, moderate left foraminal narrowing or nerve root compression.", "canal_stenosis", 0),
        # a post-cue reaches its subject over a longer phrase when no other finding stands between
        ("The L4-5 disc extrusion reported on the outside study last year has since resolved.", "disc_herniation", 0),
        (CYST, "synovial_cyst", 0),
        # lateral-recess narrowing carried by the verb
        ("A sequestered fragment occupying the right lateral recess.", "subarticular_stenosis", 1),
        ("A synovial cyst projects into the left lateral recess, which it narrows.", "subarticular_stenosis", 1),
        ("The extrusion extends into the right lateral recess, compressing it.", "subarticular_stenosis", 1),
        ("Facet hypertrophy encroaching on both subarticular zones.", "subarticular_stenosis", 1),
        ("Facet hypertrophy encroaching on both subarticular zones.", "canal_stenosis", 0),
        # enhancing lesions of the cauda equina; a "focus" counts only when qualified
        ("Questionable enhancing focus on a cauda equina nerve root.", "intradural_lesion", -1),
        ("Equivocal intradural enhancing focus at L3.", "intradural_lesion", -1),
        ("Enhancing nodule on a nerve root of the cauda equina at L2.", "intradural_lesion", 1),
        (NODULAR, "intradural_lesion", 1),
        ("Large extrusion with mass effect on the traversing left S1 nerve root.", "intradural_lesion", 0),
        # the Modic type without the eponym
        ("Type 1 endplate changes at L4-5.", "endplate_inflammation", 1),
        ("Type 2 endplate changes at L4-5.", "endplate_inflammation", 0),
        ("Type II degenerative endplate signal at L5-S1.", "endplate_inflammation", 0),
        # shorthand
        ("Moderate right neuroforaminal narrowing at L4-5.", "foraminal_narrowing", 1),
        ("L4-5: mod b/l NF narrowing.", "foraminal_narrowing", 1),
        ("Diffuse bony mets.", "osseous_lesion", 1),
        ("BME in the L2 body.", "marrow_edema", 1),
        ("Osteoporotic L1 VCF.", "compression_deformity", 1),
        ("Severe LSS at L4-5.", "canal_stenosis", 1),
        ("L3-4: no sig stenosis.", "canal_stenosis", 0),
        ("SEL from L4 to S1.", "epidural_lipomatosis", 1),
        ("Rt L4/5 FJ cyst.", "synovial_cyst", 1),
        ("Loss of height at L45.", "disc_height_loss", 1),
        ("Loss of height at L45.", "compression_deformity", 0),
        ("Nil disc protrusion.", "disc_herniation", 0),
        # hedges
        ("Raises the possibility of a left L5 pars defect.", "pars_defect", -1),
        ("It is not possible to exclude a small recurrent disc protrusion.", "disc_herniation", -1),
        ("I cannot confidently exclude a right L5 pars defect.", "pars_defect", -1),
        ("A metastasis cannot be discounted.", "osseous_lesion", -1),
        ("DDx: atypical haemangioma vs metastasis.", "hemangioma", -1),
        ("It is uncertain whether there is a pars defect.", "pars_defect", -1),
        # "no further collapse" keeps the collapse
        ("No further collapse of the T12 vertebral body.", "compression_deformity", 1),
    ],
)
def test_v4_reads_the_wording(text: str, key: str, want: int) -> None:
    assert lab(text, key) == want


def test_v3_stays_reproducible_on_v4_wording() -> None:
    """Stored v3 extractions are reproduced: the v4 rules live in v4.yaml, not in v3."""
    assert lab(LIST, "pars_defect", version=3) == 1
    assert lab(LIST, "pars_defect", version=4) == 0


def test_addendum_withdraws_with_a_statement_of_normality() -> None:
    body = "FINDINGS:\nPossible left L5 pars defect.\nIMPRESSION:\nPossible left L5 spondylolysis.\n"
    assert extract_labels(body).labels["pars_defect"] == -1
    text = body + "ADDENDUM: On the CT of the same day the pars interarticularis is intact on both sides."
    assert extract_labels(text).labels["pars_defect"] == 0
    # outside an addendum a normal side does not undo a defect on the other
    one_side = "FINDINGS:\nThe right pars is intact. Left L5 pars defect.\nIMPRESSION:\nLeft L5 spondylolysis."
    assert extract_labels(one_side).labels["pars_defect"] == 1


def test_addendum_explains_a_finding_away() -> None:
    text = (
        "FINDINGS:\nMarrow oedema in L3.\nIMPRESSION:\nL3 marrow oedema.\n"
        "ADDENDUM: The L3 marrow oedema was an artefact of failed fat suppression."
    )
    assert extract_labels(text).labels["marrow_edema"] == 0


def test_addendum_withdraws_at_the_level_it_names_only() -> None:
    body = (
        "FINDINGS:\nL4-5: Moderate left foraminal stenosis.\nL5-S1: Mild right foraminal stenosis.\n"
        "IMPRESSION:\nForaminal stenosis at L4-5 and L5-S1.\n"
    )
    one = extract_labels(body + "ADDENDUM: Correction: there is no foraminal stenosis at L5-S1.")
    assert one.labels["foraminal_narrowing"] == 1
    assert one.evidence["foraminal_narrowing"] == "Foraminal stenosis at L4-5 and L5-S1."  # L4-5 stands
    both = extract_labels(body + "ADDENDUM: There is no foraminal stenosis at L4-5 or L5-S1.")
    assert both.labels["foraminal_narrowing"] == 0
    anywhere = extract_labels(body + "ADDENDUM: There is no foraminal stenosis.")
    assert anywhere.labels["foraminal_narrowing"] == 0
    # a line's level label counts for the sentences after it
    lined = (
        "FINDINGS:\nL3-4: Disc bulge. Mild canal stenosis.\nL4-5: Disc bulge. Moderate canal stenosis.\n"
        "ADDENDUM: No canal stenosis at L3-4."
    )
    assert extract_labels(lined).labels["canal_stenosis"] == 1
    two = "FINDINGS:\nMild canal stenosis at L3-4 and moderate at L4-5.\nADDENDUM: There is no canal stenosis at L3-4."
    assert extract_labels(two).labels["canal_stenosis"] == 1


def test_new_section_headers() -> None:
    text = "CLINICAL: Possible pars defect on CT.\nFINDINGS: Normal.\nINTERPRETATION: Small L4-5 protrusion."
    res = extract_labels(text)
    assert res.labels["pars_defect"] == 0
    assert res.labels["disc_herniation"] == 1


@pytest.mark.parametrize(
    ("text", "key", "want"),
    [
        # a finding new since the prior study is present
        ("Small left L4-5 protrusion, not present on the prior study.", "disc_herniation", 1),
        ("A right L4-5 synovial cyst not seen previously.", "synovial_cyst", 1),
        # a relative clause recalling the prior study does not end a post-cue's reach
        ("The extrusion which was seen on the prior study has resolved.", "disc_herniation", 0),
        ("The synovial cyst that was described at L4-5 is no longer visible.", "synovial_cyst", 0),
        ("The L2 schwannoma has since been resected.", "intradural_lesion", 0),
        ("The previously seen pars defect cannot now be identified.", "pars_defect", 0),
        ("Neither spondylolysis nor spondylolisthesis.", "spondylolisthesis", 0),
        ("Neither spondylolysis nor spondylolisthesis.", "pars_defect", 0),
        # addenda that withdraw in so many words
        ("The L4-5 protrusion is withdrawn; it is a bulge.", "disc_herniation", 0),
        ("The pars defect was reported in error.", "pars_defect", 0),
        # "no A to suggest B" denies B
        ("No marrow oedema to suggest an acute fracture.", "acute_fracture", 0),
        ("Endplate irregularity, which suggests a healed fracture.", "compression_deformity", 0),
        # synonyms and word forms
        ("Both subarticular recesses are moderately stenosed.", "subarticular_stenosis", 1),
        ("The disc at L4/5 is degenerate.", "disc_height_loss", 1),
        ("The discs are not degenerate.", "disc_height_loss", 0),
        ("Fracture of the L1 superior endplate, which appears acute.", "acute_fracture", 1),
        ("Critically narrowed spinal canal at L3-4.", "canal_stenosis", 1),
        ("Central canal mildly narrowed.", "canal_stenosis", 1),
        ("Mild L4/5 canal and bilat LR stenosis.", "canal_stenosis", 1),
        ("Mild L4/5 canal and bilat LR stenosis.", "subarticular_stenosis", 1),
        ("A 7 mm cyst arising from the left L4-5 facet joint.", "synovial_cyst", 1),
        ("Grade 1 spondylolytic spondylolisthesis at L5-S1.", "pars_defect", 1),
    ],
)
def test_v4_reads_comparisons_and_synonyms(text: str, key: str, want: int) -> None:
    assert lab(text, key) == want


@pytest.mark.parametrize(
    ("text", "key", "want"),
    [
        # a "not" between the copula and the participle negates: the gap of "is ... narrowed" does not swallow it
        ("The thecal sac is not significantly compressed.", "canal_stenosis", 0),
        ("The canal is not narrowed.", "canal_stenosis", 0),
        ("The right foramen is not significantly narrowed.", "foraminal_narrowing", 0),
        ("The lateral recesses are not narrowed.", "subarticular_stenosis", 0),
        ("Disc height is not reduced.", "disc_height_loss", 0),
        # ... and a grade in the gap still states the finding
        ("The canal is mildly narrowed.", "canal_stenosis", 1),
        ("The left foramen is moderately narrowed.", "foraminal_narrowing", 1),
        ("The left lateral recess is narrowed.", "subarticular_stenosis", 1),
        ("Disc height is mildly reduced.", "disc_height_loss", 1),
    ],
)
def test_a_not_inside_the_predicate_negates(text: str, key: str, want: int) -> None:
    assert lab(text, key) == want
