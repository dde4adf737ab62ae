"""Tissue classes of the label volume and their MR relaxation properties.

Every voxel of a synthetic study carries one tissue label; every sequence is rendered
from the relaxation table below, so that image contrast follows from physics rather than
from hand-picked grey levels. Tissues are modelled with two compartments (water and fat)
because that is what makes STIR, fat saturation and Dixon behave correctly: fatty marrow
is bright on T1 yet dark on STIR only if its fat fraction is modelled separately from its
water.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class T(IntEnum):
    """Tissue label (uint8 in the label volume)."""

    AIR = 0
    FAT = 1  # subcutaneous / epidural / foraminal fat
    MUSCLE = 2
    VISCERA = 3
    CORTEX = 4  # cortical bone, endplates
    MARROW = 5
    ANNULUS = 6
    NUCLEUS = 7
    NUCLEUS_DEGEN = 8  # desiccated nucleus
    CSF = 9
    CORD = 10
    NERVE = 11
    LIGAMENT = 12
    FLUID = 13  # joint fluid, cysts, bowel fluid
    VESSEL = 14  # flow void
    EDEMA = 15  # marrow edema (fracture, Modic 1, stress)
    HEMANGIOMA = 16
    METASTASIS = 17
    INTRADURAL = 18  # schwannoma / meningioma / intramedullary tumour
    FRACTURE_LINE = 19
    DISC_FRAGMENT = 20  # herniated disc material
    BRAIN = 21
    LUNG = 22
    FAT_MARROW = 23  # Modic 2 / focal fatty marrow (hard negative)
    CARTILAGE = 24
    DURA = 25


N_TISSUES = max(T) + 1

# Fat compartment, shared by every tissue. The long "effective" T2 mimics the J-coupling
# reduction that makes fat bright on fast spin echo.
FAT_T1_MS = 260.0
FAT_T2_MS = 130.0
FAT_PD = 1.0


@dataclass(frozen=True)
class Relax:
    """Water-compartment relaxation at 1.5 T plus fat fraction and Gd uptake.

    ``gd`` is the T1 relaxation rate added by gadolinium (1/ms) in enhancing tissue.
    ``tex`` is the amplitude of the tissue's multiplicative texture (trabeculae, fibres).
    """

    pd: float
    t1: float
    t2: float
    ff: float = 0.0
    gd: float = 0.0
    tex: float = 0.0


RELAX: dict[T, Relax] = {
    T.AIR: Relax(0.0, 1000, 1),
    T.FAT: Relax(0.8, 1000, 40, ff=0.95, tex=0.03),
    T.MUSCLE: Relax(0.75, 900, 45, ff=0.04, gd=0.0002, tex=0.06),
    T.VISCERA: Relax(0.75, 900, 60, ff=0.25, gd=0.001, tex=0.12),
    T.CORTEX: Relax(0.06, 1000, 2),
    T.MARROW: Relax(0.8, 900, 50, ff=0.45, gd=0.0003, tex=0.10),
    T.ANNULUS: Relax(0.55, 1000, 35),
    T.NUCLEUS: Relax(0.9, 1400, 150, tex=0.04),
    T.NUCLEUS_DEGEN: Relax(0.6, 1000, 50, tex=0.06),
    T.CSF: Relax(1.0, 4000, 2000),
    T.CORD: Relax(0.75, 1000, 80),
    T.NERVE: Relax(0.7, 1000, 60, gd=0.0002),
    T.LIGAMENT: Relax(0.3, 800, 18),
    T.FLUID: Relax(1.0, 3500, 1200),
    T.VESSEL: Relax(0.03, 1400, 10),
    T.EDEMA: Relax(0.9, 1300, 110, ff=0.12, gd=0.002, tex=0.08),
    T.HEMANGIOMA: Relax(0.9, 1300, 220, ff=0.55, gd=0.002, tex=0.15),
    T.METASTASIS: Relax(0.85, 1150, 95, gd=0.003, tex=0.06),
    T.INTRADURAL: Relax(0.8, 1100, 110, gd=0.004, tex=0.05),
    T.FRACTURE_LINE: Relax(0.25, 900, 25),
    T.DISC_FRAGMENT: Relax(0.8, 1200, 100, gd=0.0005, tex=0.05),
    T.BRAIN: Relax(0.8, 950, 90),
    T.LUNG: Relax(0.04, 1200, 5),
    T.FAT_MARROW: Relax(0.8, 900, 50, ff=0.85, tex=0.05),
    T.CARTILAGE: Relax(0.7, 1100, 45),
    T.DURA: Relax(0.35, 900, 25),
}

BONE = (T.CORTEX, T.MARROW, T.EDEMA, T.HEMANGIOMA, T.METASTASIS, T.FRACTURE_LINE, T.FAT_MARROW)
DISC = (T.ANNULUS, T.NUCLEUS, T.NUCLEUS_DEGEN)


def relax_table(marrow_ff: float, field_t: float) -> dict[str, np.ndarray]:
    """Arrays indexed by tissue label: pd, t1, t2, ff, gd, tex.

    Marrow fat fraction rises with age (red-to-yellow conversion), so it is a per-study
    parameter. T1 lengthens with field strength (roughly +25 % from 1.5 T to 3 T).
    """
    t1_scale = 1.0 + 0.25 * (field_t - 1.5) / 1.5
    out = {k: np.zeros(N_TISSUES, np.float64) for k in ("pd", "t1", "t2", "ff", "gd", "tex")}
    for tissue, r in RELAX.items():
        out["pd"][tissue] = r.pd
        out["t1"][tissue] = r.t1 * t1_scale
        out["t2"][tissue] = r.t2
        out["ff"][tissue] = marrow_ff if tissue == T.MARROW else r.ff
        out["gd"][tissue] = r.gd
        out["tex"][tissue] = r.tex
    out["fat_t1"] = np.array(FAT_T1_MS * (1.0 + 0.15 * (field_t - 1.5) / 1.5))
    return out
