"""Which pathology a synthetic patient has: prevalence, co-occurrence, severity.

Degeneration is driven by one latent score per disc level that rises with age and is
highest at L4-5/L5-S1 (C5-6/C6-7 in the neck), so disc height loss, herniation, canal,
foraminal and subarticular stenosis, Modic change and facet cysts cluster where they do
in real cohorts. Non-degenerative conditions are drawn independently with published
order-of-magnitude prevalences (hemangioma ~15 %, metastasis a few %, ...). Some findings
are made borderline on purpose and labelled uncertain (-1); some hard negatives (disc
bulge, Modic 2, focal fatty marrow, Schmorl node) look like positives but are labelled 0.
The study-level labels and RSNA grades derived from the findings are in ``study_labels``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml.conditions import CONDITION_KEYS
from ml.data.synthetic.anatomy import AnatomyMods
from ml.data.synthetic.geometry import Mask
from ml.data.synthetic.regions import REGION_SPECS

SEVERITIES = ("mild", "moderate", "severe")
COHORTS = ("general", "elderly", "rsna")

# base prevalence per study (general cohort) of the non-degenerative conditions
_BASE = {
    "hemangioma": 0.15,
    "osseous_lesion": 0.04,
    "compression_deformity": 0.05,
    "acute_fracture": 0.03,
    "marrow_edema": 0.03,
    "epidural_lipomatosis": 0.03,
    "perineural_cyst": 0.05,
    "intradural_lesion": 0.015,
    "pars_defect": 0.05,
    "synovial_cyst": 0.03,
    "spondylolisthesis": 0.05,
}
_ELDERLY = {
    "osseous_lesion": 0.07,
    "compression_deformity": 0.2,
    "acute_fracture": 0.08,
    "synovial_cyst": 0.07,
    "spondylolisthesis": 0.14,
}

_LEVEL_WEIGHT = {
    "lumbar": {"L1-2": 0.35, "L2-3": 0.5, "L3-4": 0.65, "L4-5": 1.0, "L5-S1": 0.95},
    "cervical": {"C2-3": 0.3, "C3-4": 0.55, "C4-5": 0.7, "C5-6": 1.0, "C6-7": 0.9, "C7-T1": 0.35},
}


@dataclass
class Finding:
    """One abnormality: the unit of ground truth, report sentences and boxes."""

    condition: str  # key of ml.conditions
    level: str  # disc level ("L4-5") or vertebra ("L1")
    side: str | None  # left | right | bilateral | central | None
    severity: str  # mild | moderate | severe
    label: int  # 1 present, -1 uncertain (borderline / hedged); 0 = hard negative
    detail: dict[str, Any] = field(default_factory=dict)
    mask: Mask | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "condition": self.condition,
            "level": self.level,
            "side": self.side,
            "severity": self.severity,
            "label": self.label,
            "detail": self.detail,
        }


@dataclass
class Patient:
    age: int
    sex: str  # "F" | "M"
    degen: dict[str, float]  # level -> 0..1 latent degeneration
    findings: list[Finding]
    mods: AnatomyMods


def _sev(x: float) -> str:
    return SEVERITIES[0 if x < 0.4 else 1 if x < 0.75 else 2]


def sample_patient(
    rng: np.random.Generator,
    region: str,
    cohort: str,
    prevalence: str = "realistic",
    force: tuple[str, ...] = (),
) -> Patient:
    """Draw age, sex, degeneration and findings; fill AnatomyMods for shape changes."""
    if cohort not in COHORTS:
        raise ValueError(f"unknown cohort {cohort!r}; known: {', '.join(COHORTS)}")
    spec = REGION_SPECS[region]
    levels = list(spec.levels())
    verts = [v.name for v in spec.vertebrae if not v.name.startswith("S") and v.name != "C1"]
    names = [lv for lv in levels]
    age = int(np.clip(rng.normal(74, 6) if cohort == "elderly" else rng.normal(52, 15), 18, 95))
    sex = "F" if rng.random() < 0.55 else "M"
    af = np.clip((age - 20) / 60, 0, 1.3)
    weights = _LEVEL_WEIGHT.get(region, {lv: 0.45 for lv in levels})
    degen = {lv: float(np.clip(af * weights.get(lv, 0.4) + rng.normal(0, 0.15), 0, 1)) for lv in names}
    mods = AnatomyMods()
    out: list[Finding] = []
    prev = dict(_BASE)
    if cohort == "elderly":
        prev.update(_ELDERLY)
    if prevalence == "enriched":
        prev = {k: max(v * 3, 0.15) for k, v in prev.items()}
    boost = 1.6 if prevalence == "enriched" else 1.0

    def uncertain(p: float = 0.1) -> bool:
        return bool(rng.random() < p)

    # --- degenerative cascade, level by level
    n_hern = 0
    for lv in names:
        g = degen[lv]
        mods.disc_degen[lv] = g
        if g > 0.4:
            mods.bulge[lv] = 1.0 + 3.0 * (g - 0.4)
        if g > 0.55:
            sev = _sev((g - 0.55) / 0.45)
            mods.disc_height[lv] = {"mild": 0.8, "moderate": 0.62, "severe": 0.45}[sev]
            out.append(Finding("disc_height_loss", lv, None, sev, 1))
        elif g > 0.5:
            mods.disc_height[lv] = 0.9
            out.append(Finding("disc_height_loss", lv, None, "mild", -1, {"borderline": True}))
        if n_hern < 2 and rng.random() < min(0.75, (0.05 + 0.45 * g) * boost):
            n_hern += 1
            typ = "extrusion" if rng.random() < 0.3 else "protrusion"
            side = str(rng.choice(["central", "left", "right"], p=[0.4, 0.3, 0.3]))
            zone = "central" if side == "central" else str(rng.choice(["paracentral", "foraminal"], p=[0.8, 0.2]))
            size = float(rng.uniform(0.2, 1.0)) if typ == "protrusion" else float(rng.uniform(0.5, 1.0))
            lab = 1
            if typ == "protrusion" and size < 0.3 and uncertain(0.5):
                lab = -1
            mig = str(rng.choice(["none", "cranial", "caudal"])) if typ == "extrusion" else "none"
            out.append(
                Finding(
                    "disc_herniation",
                    lv,
                    side,
                    _sev(size),
                    lab,
                    {"type": typ, "zone": zone, "size": size, "migration": mig},
                )
            )
            if side != "central" and zone == "paracentral" and size > 0.5 and rng.random() < 0.6:
                out.append(Finding("subarticular_stenosis", lv, side, _sev(size - 0.2), 1))
                mods.recess[(lv, side)] = 0.3 + 0.6 * size
        if g > 0.6 and rng.random() < (0.25 + 0.6 * (g - 0.6)) * boost:
            x = float(np.clip((g - 0.6) / 0.4 + rng.normal(0, 0.2), 0, 1))
            sev = _sev(x)
            mods.canal[lv] = {"mild": 0.3, "moderate": 0.5, "severe": 0.72}[sev]
            out.append(Finding("canal_stenosis", lv, "central", sev, 1))
        elif g > 0.55 and uncertain(0.15):
            mods.canal[lv] = 0.18
            out.append(Finding("canal_stenosis", lv, "central", "mild", -1, {"borderline": True}))
        for side in ("left", "right"):
            if g > 0.5 and rng.random() < 0.3 * g * boost:
                x = float(np.clip(g - 0.5 + rng.normal(0, 0.25), 0, 1))
                mods.foramen[(lv, side)] = 0.3 + 0.6 * x
                out.append(Finding("foraminal_narrowing", lv, side, _sev(x), 1))
            if g > 0.6 and (lv, side) not in mods.recess and rng.random() < 0.12 * boost:
                x = float(rng.uniform(0, 1))
                mods.recess[(lv, side)] = 0.3 + 0.6 * x
                out.append(Finding("subarticular_stenosis", lv, side, _sev(x), 1))
        if g > 0.55 and rng.random() < 0.12 * boost:
            out.append(Finding("endplate_inflammation", lv, None, _sev(rng.uniform(0, 1)), 1, {"modic": 1}))
        elif g > 0.5 and rng.random() < 0.15:
            out.append(Finding("endplate_inflammation", lv, None, "mild", 0, {"modic": 2, "hard_negative": True}))

    # --- alignment
    lumbar = region == "lumbar"
    pars_lv = None
    if rng.random() < prev["pars_defect"] * boost:
        pars_v = ("L5" if rng.random() < 0.85 else "L4") if lumbar else str(rng.choice(verts[1:-1]))
        side = "bilateral" if rng.random() < 0.8 else str(rng.choice(["left", "right"]))
        lab = -1 if uncertain(0.12) else 1
        out.append(Finding("pars_defect", pars_v, side, "moderate", lab))
        below = next((lv for lv in levels if lv.startswith(pars_v + "-")), None)
        if below and rng.random() < 0.6 and lab == 1:
            pars_lv = below
    if pars_lv or rng.random() < prev["spondylolisthesis"] * boost * (1.3 if sex == "F" else 0.7):
        lv = pars_lv or ("L4-5" if lumbar and rng.random() < 0.7 else str(rng.choice(levels[1:])))
        grade = 2 if rng.random() < 0.12 else 1
        mm = float(rng.uniform(9, 14) if grade == 2 else rng.uniform(3.5, 8))
        mods.slip[lv] = mm
        kind = "isthmic" if pars_lv else "degenerative"
        out.append(
            Finding(
                "spondylolisthesis",
                lv,
                None,
                "mild" if grade == 1 else "moderate",
                1,
                {"grade": grade, "mm": round(mm, 1), "kind": kind},
            )
        )
    if lumbar and rng.random() < prev["synovial_cyst"] * boost:
        lv = str(rng.choice(["L3-4", "L4-5", "L5-S1"], p=[0.15, 0.7, 0.15]))
        out.append(Finding("synovial_cyst", lv, str(rng.choice(["left", "right"])), _sev(rng.uniform(0, 1)), 1))
    elif not lumbar and rng.random() < prev["synovial_cyst"] * 0.3 * boost:
        out.append(Finding("synovial_cyst", str(rng.choice(levels)), str(rng.choice(["left", "right"])), "mild", 1))

    # --- trauma / marrow
    frac_verts = [
        v for v in verts if v in ("T11", "T12", "L1", "L2", "L3", "T6", "T7", "T8", "T9", "T10", "C5", "C6", "C7", "L4")
    ]
    frac_verts = [v for v in frac_verts if v in _reported_vertebrae(region)] or verts
    used: set[str] = set()
    if rng.random() < prev["acute_fracture"] * boost:
        v = str(rng.choice(frac_verts))
        used.add(v)
        x = float(rng.uniform(0, 1))
        mods.wedge[v] = 0.15 + 0.35 * x
        out.append(Finding("acute_fracture", v, None, _sev(x), 1))
        out.append(Finding("compression_deformity", v, None, _sev(x), 1, {"acute": True}))
        out.append(Finding("marrow_edema", v, None, _sev(x), 1, {"cause": "fracture"}))
    if rng.random() < prev["compression_deformity"] * boost:
        cand = [v for v in frac_verts if v not in used]
        v = str(rng.choice(cand))
        used.add(v)
        x = float(rng.uniform(0, 1))
        mods.wedge[v] = 0.15 + 0.35 * x
        out.append(Finding("compression_deformity", v, None, _sev(x), 1, {"acute": False}))
    if rng.random() < prev["marrow_edema"] * boost:
        v = str(rng.choice([v for v in _reported_vertebrae(region) if v not in used]))
        used.add(v)
        lab = -1 if uncertain(0.25) else 1
        out.append(
            Finding("marrow_edema", v, None, "mild" if lab < 0 else _sev(rng.uniform(0, 1)), lab, {"cause": "stress"})
        )

    # --- lesions
    rep = [v for v in _reported_vertebrae(region) if v not in used]
    if rng.random() < prev["hemangioma"] * boost:
        for v in rng.choice(rep, size=1 if rng.random() < 0.8 else 2, replace=False):
            lab = -1 if uncertain(0.08) else 1
            out.append(
                Finding(
                    "hemangioma", str(v), None, _sev(rng.uniform(0, 0.8)), lab, {"size": float(rng.uniform(0.3, 1))}
                )
            )
    elif rng.random() < 0.1:
        out.append(
            Finding("hemangioma", str(rng.choice(rep)), None, "mild", 0, {"focal_fat": True, "hard_negative": True})
        )
    if rng.random() < prev["osseous_lesion"] * boost:
        n = 1 if rng.random() < 0.7 else 2
        for v in rng.choice(rep, size=n, replace=False):
            lab = -1 if uncertain(0.15) else 1
            out.append(
                Finding(
                    "osseous_lesion",
                    str(v),
                    None,
                    _sev(rng.uniform(0.2, 1)),
                    lab,
                    {"site": "body" if rng.random() < 0.8 else "pedicle", "side": str(rng.choice(["left", "right"]))},
                )
            )
    if rng.random() < prev["epidural_lipomatosis"] * boost:
        lvs = [lv for lv in levels if lv in ("L3-4", "L4-5", "L5-S1", "T5-6", "T6-7", "T7-8", "C6-7")] or levels[-2:]
        k = len(lvs)
        start = int(rng.integers(0, max(k - 1, 1)))
        span = lvs[start : start + 2]
        x = float(rng.uniform(0, 1))
        for lv in span:
            mods.lipomatosis[lv] = 0.4 + 0.55 * x
        out.append(Finding("epidural_lipomatosis", span[0], None, _sev(x), 1, {"levels": span}))
    if rng.random() < prev["perineural_cyst"] * boost:
        side = str(rng.choice(["left", "right"]))
        if lumbar:
            out.append(Finding("perineural_cyst", "S2", side, "mild", 1, {"size": float(rng.uniform(0.4, 1))}))
        else:
            out.append(
                Finding(
                    "perineural_cyst", str(rng.choice(levels)), side, "mild", 1, {"size": float(rng.uniform(0.4, 1))}
                )
            )
    if rng.random() < prev["intradural_lesion"] * boost:
        kind = "extramedullary" if lumbar or rng.random() < 0.7 else "intramedullary"
        v = str(rng.choice(["L1", "L2", "L3"])) if lumbar else str(rng.choice(_reported_vertebrae(region)[1:-1]))
        out.append(Finding("intradural_lesion", v, None, _sev(rng.uniform(0, 1)), 1, {"kind": kind}))

    for key in force:
        if key not in CONDITION_KEYS:
            raise ValueError(f"unknown condition {key!r}")
        if not any(f.condition == key and f.label == 1 for f in out):
            out.extend(_forced(key, region, mods, rng))
    return Patient(age, sex, degen, out, mods)


def _reported_vertebrae(region: str) -> list[str]:
    """Vertebrae named in the region's report (those bounding its disc levels)."""
    spec = REGION_SPECS[region]
    lv = spec.levels()
    names: list[str] = []
    for level in lv:
        a, b = level.split("-")
        b = b if b[0].isalpha() else a[0] + b
        for v in (a, b):
            if v not in names and not v.startswith("S"):
                names.append(v)
    return names


def _forced(key: str, region: str, mods: AnatomyMods, rng: np.random.Generator) -> list[Finding]:
    """A clear-cut example of a condition (gallery, tests)."""
    spec = REGION_SPECS[region]
    levels = list(spec.levels())
    lv = "L4-5" if "L4-5" in levels else levels[len(levels) // 2]
    verts = _reported_vertebrae(region)
    v = "L1" if "L1" in verts else verts[len(verts) // 2]
    if key == "canal_stenosis":
        mods.canal[lv] = 0.6
        mods.disc_degen[lv] = max(mods.disc_degen.get(lv, 0), 0.7)
        mods.bulge[lv] = max(mods.bulge.get(lv, 0), 2.5)
        return [Finding(key, lv, "central", "moderate", 1)]
    if key == "foraminal_narrowing":
        mods.foramen[(lv, "left")] = 0.8
        return [Finding(key, lv, "left", "severe", 1)]
    if key == "subarticular_stenosis":
        mods.recess[(lv, "right")] = 0.8
        return [Finding(key, lv, "right", "severe", 1)]
    if key == "disc_herniation":
        return [
            Finding(
                key,
                lv,
                "left",
                "severe",
                1,
                {"type": "extrusion", "zone": "paracentral", "size": 0.9, "migration": "caudal"},
            )
        ]
    if key == "disc_height_loss":
        mods.disc_height[lv] = 0.5
        mods.disc_degen[lv] = 0.9
        return [Finding(key, lv, None, "severe", 1)]
    if key == "endplate_inflammation":
        return [Finding(key, lv, None, "moderate", 1, {"modic": 1})]
    if key == "synovial_cyst":
        return [Finding(key, lv, "right", "moderate", 1)]
    if key == "spondylolisthesis":
        mods.slip[lv] = 7.0
        return [Finding(key, lv, None, "mild", 1, {"grade": 1, "mm": 7.0, "kind": "degenerative"})]
    if key == "pars_defect":
        pv = "L5" if region == "lumbar" else verts[-2]
        return [Finding(key, pv, "bilateral", "moderate", 1)]
    if key == "compression_deformity":
        mods.wedge[v] = 0.4
        return [Finding(key, v, None, "moderate", 1, {"acute": False})]
    if key == "acute_fracture":
        w = verts[1]
        mods.wedge[w] = 0.35
        return [
            Finding(key, w, None, "moderate", 1),
            Finding("compression_deformity", w, None, "moderate", 1, {"acute": True}),
            Finding("marrow_edema", w, None, "moderate", 1, {"cause": "fracture"}),
        ]
    if key == "marrow_edema":
        return [Finding(key, verts[2], None, "moderate", 1, {"cause": "stress"})]
    if key == "hemangioma":
        return [Finding(key, verts[3], None, "moderate", 1, {"size": 0.9})]
    if key == "osseous_lesion":
        return [Finding(key, verts[-2], None, "moderate", 1, {"site": "body", "side": "left"})]
    if key == "epidural_lipomatosis":
        span = levels[-2:]
        for x in span:
            mods.lipomatosis[x] = 0.85
        return [Finding(key, span[0], None, "moderate", 1, {"levels": span})]
    if key == "perineural_cyst":
        return [Finding(key, "S2" if region == "lumbar" else lv, "left", "mild", 1, {"size": 1.0})]
    if key == "intradural_lesion":
        w = "L2" if region == "lumbar" else verts[len(verts) // 2]
        return [Finding(key, w, None, "moderate", 1, {"kind": "extramedullary"})]
    raise ValueError(key)
