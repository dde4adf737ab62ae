"""Radiology report text that states what the ground truth says, in varied wording.

Sections follow the report format in docs/paper.md. Phrasing is drawn from synonym banks, with negations,
hedges for uncertain (-1) findings, "no significant change" comparisons, distractor
sentences and incidental findings, so that label extraction and report generation have
to understand the text rather than match one template. Disc terms follow Lumbar Disc
Nomenclature 2.0 (bulge is not herniation; protrusion vs extrusion by shape). The word pickers
and the per-level DISCS line are in ``report_phrases``; this module writes the sections in order.
"""

from __future__ import annotations

import numpy as np

from ml.conditions import IMPRESSION_ORDER
from ml.data.synthetic.findings import Patient
from ml.data.synthetic.priors import PriorMention, change_line, compared_line
from ml.data.synthetic.report_phrases import Writer, disc_line, findings_of, lower_vertebra, upper_vertebra


def write_report(
    rng: np.random.Generator,
    patient: Patient,
    region: str,
    levels: tuple[str, ...],
    series_desc: list[str],
    comparison: bool,
    prior: PriorMention | None = None,
) -> str:
    """The full report text for one study; ``prior`` (the patient's earlier study) is named by
    its date in COMPARISON and the change since it closes the IMPRESSION."""
    w = Writer(rng)
    fs = patient.findings
    pos = [f for f in fs if f.label != 0]
    sex_word = "female" if patient.sex == "F" else "male"
    pain = {"lumbar": "low back", "cervical": "neck"}.get(region, "mid back")
    displaced = "nerve roots" if region == "lumbar" else "cord"
    hist = w.pick(
        f"{patient.age}-year-old {sex_word} with {pain} pain",
        f"{'Radiculopathy' if region != 'thoracic' else 'Thoracic pain'}; {patient.age} {patient.sex}",
        "Pain, evaluate for disc herniation" if region != "thoracic" else "Back pain, rule out fracture",
        "Known malignancy, evaluate for metastatic disease"
        if any(f.condition == "osseous_lesion" for f in pos)
        else "Chronic pain, failed conservative therapy",
    )
    lines = [f"CLINICAL HISTORY: {hist}."]
    tech = ", ".join(series_desc)
    lines.append(
        f"TECHNIQUE: Multiplanar multisequence MRI of the {region} spine without contrast ({tech})."
        if not any("+C" in d or "post" in d.lower() or "GD" in d for d in series_desc)
        else f"TECHNIQUE: Multiplanar MRI of the {region} spine before and after intravenous gadolinium ({tech})."
    )
    if prior is not None:
        lines.append("COMPARISON: " + compared_line(w.pick, region, prior))
    else:
        lines.append(
            "COMPARISON: "
            + (w.pick("Prior MRI of 2 years earlier.", "Radiographs from last year.") if comparison else "None.")
        )
    # alignment
    sl = findings_of(fs, "spondylolisthesis")
    if sl:
        a = "; ".join(
            f"grade {f.detail.get('grade', 1)} {f.detail.get('kind', 'degenerative')} anterolisthesis"
            f" of {upper_vertebra(f.level)} on {lower_vertebra(f.level)} ({f.detail.get('mm', 0):.0f} mm)"
            for f in sl
        )
        lines.append(f"ALIGNMENT: {a[0].upper()}{a[1:]}.")
    else:
        lines.append(
            "ALIGNMENT: "
            + w.pick(
                "Normal alignment.",
                "Preserved alignment. No spondylolisthesis.",
                "Maintained lordosis without listhesis."
                if region != "thoracic"
                else "Normal kyphosis without listhesis.",
            )
        )
    pars = findings_of(fs, "pars_defect")
    if pars:
        p0 = pars[0]
        side = "bilateral" if p0.side == "bilateral" else p0.side
        txt = (
            f"{side} pars interarticularis defects at {p0.level} (spondylolysis)"
            if p0.label == 1
            else f"{w.hedge()} {side} pars defect at {p0.level}; CT could confirm"
        )
        lines[-1] += f" {txt[0].upper()}{txt[1:]}."
    # bones
    bone: list[str] = []
    for f in findings_of(fs, "compression_deformity"):
        pct = {"mild": "less than 25%", "moderate": "approximately 30%", "severe": "more than 40%"}[f.severity]
        if f.detail.get("acute"):
            bone.append(
                w.pick(
                    f"Acute {f.severity} compression fracture of {f.level} with {pct} anterior height loss"
                    " and marrow edema",
                    f"{f.level} superior endplate fracture, acute, with {pct} loss of height and bone marrow edema",
                )
            )
        else:
            bone.append(
                w.pick(
                    f"Chronic {f.severity} wedge compression deformity of {f.level} ({pct} height loss)"
                    " without marrow edema",
                    f"Old {f.level} compression deformity with {pct} height loss, no edema to suggest acuity",
                )
            )
    for f in findings_of(fs, "marrow_edema"):
        if f.detail.get("cause") == "stress":
            bone.append(
                f"{w.hedge().capitalize()} faint marrow edema in {f.level}"
                if f.label == -1
                else w.pick(
                    f"Bone marrow edema in the {f.level} vertebral body without fracture line",
                    f"STIR hyperintense marrow edema within {f.level}",
                )
            )
    for f in findings_of(fs, "endplate_inflammation"):
        if f.detail.get("modic") == 1:
            bone.append(
                w.pick(
                    f"Modic type 1 endplate changes at {f.level}", f"Inflammatory (Modic 1) endplate edema at {f.level}"
                )
            )
        else:
            bone.append(
                w.pick(
                    f"Modic type 2 (fatty) endplate changes at {f.level}",
                    f"Fatty degenerative endplate marrow at {f.level}, no edema",
                )
            )
    for f in findings_of(fs, "hemangioma"):
        if f.detail.get("focal_fat"):
            bone.append(
                w.pick(
                    f"Focal fatty marrow in {f.level}, a normal variant", f"Small focus of fatty marrow in {f.level}"
                )
            )
        elif f.label == -1:
            bone.append(f"Small T2 hyperintense lesion in {f.level}, {w.hedge()} atypical hemangioma")
        else:
            bone.append(
                w.pick(
                    f"Typical hemangioma in the {f.level} vertebral body",
                    f"{f.level} vertebral body hemangioma (T1 and T2 hyperintense)",
                    f"Benign-appearing hemangioma at {f.level}",
                )
            )
    for f in findings_of(fs, "osseous_lesion"):
        site = "pedicle" if f.detail.get("site") == "pedicle" else "vertebral body"
        if f.label == -1:
            bone.append(
                f"Small indeterminate T1 hypointense focus in the {f.level} {site};"
                f" {w.hedge()} metastasis, follow-up suggested"
            )
        else:
            bone.append(
                w.pick(
                    f"T1 hypointense, STIR hyperintense lesion in the {f.level} {site}, suspicious for metastasis",
                    f"Suspicious osseous lesion replacing marrow in {f.level} ({site}),"
                    " concerning for metastatic disease",
                )
            )
    for f in findings_of(fs, "acute_fracture"):
        if not any(g.detail.get("acute") for g in findings_of(fs, "compression_deformity")):
            bone.append(f"Acute fracture of {f.level}")
    if not bone:
        bone.append(
            w.pick(
                "Normal marrow signal. Vertebral body heights are maintained.",
                "No fracture or suspicious marrow lesion.",
                "Vertebral heights preserved; marrow signal unremarkable.",
            )
        )
    lines.append("VERTEBRAL BODIES/MARROW: " + " ".join(b if b.endswith(".") else b + "." for b in bone))
    # discs
    lines.append("DISCS:")
    for lv in levels:
        lines.append("  " + disc_line(w, lv, fs, patient))
    # canal
    canal: list[str] = []
    for f in findings_of(fs, "epidural_lipomatosis"):
        lvs = f.detail.get("levels", [f.level])
        canal.append(
            w.pick(
                f"Epidural lipomatosis from {lvs[0]} to {lvs[-1]} narrowing the thecal sac",
                f"Excess epidural fat ({f.severity} epidural lipomatosis) at {', '.join(lvs)}",
            )
        )
    worst = [f for f in findings_of(fs, "canal_stenosis") if f.label == 1]
    if worst:
        canal.append(
            "Canal stenosis as detailed above, most pronounced at "
            + max(worst, key=lambda f: ("mild", "moderate", "severe").index(f.severity)).level
        )
    if not canal:
        canal.append(
            w.pick("No spinal canal stenosis.", "The spinal canal is capacious.", "Canal patent at all levels.")
        )
    lines.append("SPINAL CANAL: " + " ".join(c if c.endswith(".") else c + "." for c in canal))
    fo = [f for f in findings_of(fs, "foraminal_narrowing")]
    lines.append(
        "NEURAL FORAMINA: "
        + (
            "Foraminal narrowing as described above."
            if fo
            else w.pick("Patent.", "No significant foraminal narrowing.", "Neural foramina widely patent.")
        )
    )
    # cord
    cord: list[str] = []
    if region == "lumbar":
        cord.append(
            w.pick(
                "The conus terminates normally at L1.",
                "Conus medullaris normal in position and signal.",
                "Normal conus at the L1 level.",
            )
        )
    else:
        cord.append(w.pick("Normal cord signal and caliber.", "No cord signal abnormality."))
    for f in findings_of(fs, "intradural_lesion"):
        kind = f.detail.get("kind", "extramedullary")
        if kind == "intramedullary":
            cord.append(
                f"Expansile intramedullary lesion at the {f.level} level,"
                " differential includes ependymoma or astrocytoma"
            )
        else:
            cord.append(
                w.pick(
                    f"Intradural extramedullary mass at {f.level}, likely schwannoma or meningioma",
                    f"Well-circumscribed intradural lesion at the {f.level} level displacing the {displaced}",
                )
            )
    for f in findings_of(fs, "perineural_cyst"):
        where = "in the sacral canal at S2" if f.level.startswith("S") else f"along the {f.side} {f.level} root"
        cord.append(
            w.pick(
                f"Perineural (Tarlov) cyst {where}",
                f"{f.side.capitalize() if f.side else ''} Tarlov cyst {where}".strip(),
            )
        )
    lines.append("CORD/CONUS/CAUDA EQUINA: " + " ".join(c if c.endswith(".") else c + "." for c in cord))
    para = [
        w.pick("Paraspinal soft tissues unremarkable.", "No paraspinal abnormality.", "Paraspinal musculature normal.")
    ]
    if rng.random() < 0.3:
        para.append(
            w.pick(
                "Incidental simple renal cyst."
                if region == "lumbar"
                else "Incidental thyroid nodule, nonspecific."
                if region == "cervical"
                else "Small incidental hiatal hernia.",
                "Mild fatty atrophy of the paraspinal muscles.",
            )
        )
    lines.append("PARASPINAL/OTHER: " + " ".join(para))
    # impression
    imp: list[str] = []
    for cond in IMPRESSION_ORDER:
        group = [f for f in fs if f.condition == cond and f.label != 0]
        if not group:
            continue
        certain = [f for f in group if f.label == 1]
        lvs = ", ".join(sorted({f.level for f in group}))
        name = {
            "acute_fracture": "Acute vertebral fracture",
            "osseous_lesion": "Osseous lesion suspicious for metastasis",
            "intradural_lesion": "Intradural lesion, MRI with contrast recommended",
            "disc_herniation": "Disc herniation",
            "canal_stenosis": "Spinal canal stenosis",
            "subarticular_stenosis": "Subarticular recess stenosis",
            "foraminal_narrowing": "Neural foraminal narrowing",
            "spondylolisthesis": "Spondylolisthesis",
            "pars_defect": "Pars interarticularis defect",
            "compression_deformity": "Vertebral compression deformity",
            "marrow_edema": "Bone marrow edema",
            "endplate_inflammation": "Modic type 1 endplate changes",
            "synovial_cyst": "Facet synovial cyst",
            "epidural_lipomatosis": "Epidural lipomatosis",
            "disc_height_loss": "Degenerative disc disease with disc height loss",
            "hemangioma": "Vertebral hemangioma",
            "perineural_cyst": "Tarlov cyst",
        }[cond]
        if certain:
            imp.append(f"{name} at {lvs}.")
        else:
            imp.append(f"{w.hedge().capitalize()} {name[0].lower()}{name[1:]} at {lvs}; clinical correlation.")
    if prior is not None:
        imp.append(change_line(w.pick, prior))
    elif comparison and rng.random() < 0.5:
        imp.append(
            w.pick("No significant change compared to prior.", "Otherwise stable appearance since the prior study.")
        )
    if not imp:
        imp.append(
            w.pick(
                "No acute abnormality.",
                f"Normal MRI of the {region} spine.",
                "No significant degenerative or destructive process.",
            )
        )
    lines.append("IMPRESSION:")
    lines.extend(f"{i}. {t}" for i, t in enumerate(imp, 1))
    return "\n".join(lines) + "\n"
