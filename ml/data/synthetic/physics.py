"""MR signal equations: per-tissue signal of a sequence from T1/T2/PD and fat fraction.

Spin echo: S = PD (1 - e^{-TR/T1}) e^{-TE/T2}. Inversion recovery (STIR):
S = PD (1 - 2 e^{-TI/T1} + e^{-TR/T1}) e^{-TE/T2}, signed, so that fat (short T1) is
nulled when TI ≈ T1_fat ln 2 and long-T1 water (edema, CSF) is bright. Water and fat
compartments are summed as signed real signals (in phase at the spin echo) before the
magnitude is taken, which is what makes fatty marrow dark and edema bright on STIR.
Gadolinium adds a T1 relaxation rate to enhancing tissues; fat saturation scales the fat
compartment down; Dixon keeps one compartment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.data.synthetic.tissues import FAT_PD, FAT_T2_MS


@dataclass(frozen=True)
class Sequence:
    """One series' contrast: what the scanner would call the protocol."""

    key: str  # sag_t1 | sag_t2 | sag_stir | ax_t2 | sag_t1_post | sag_dixon_w | sag_dixon_f
    plane: str  # sagittal | axial
    kind: str  # SE | IR
    tr: float
    te: float
    ti: float | None = None
    etl: int = 4
    fat_sat: bool = False
    contrast: bool = False
    dixon: str | None = None  # "water" | "fat"

    @property
    def sequence_class(self) -> str:
        """T1 / T2 / other, as the SpineFM encoders group series (docs/paper.md)."""
        if self.contrast:
            return "other"
        return "T1" if self.key.startswith("sag_t1") else "T2"


def protocol(key: str, te_scale: float = 1.0, tr_scale: float = 1.0) -> Sequence:
    """Default sequence parameters for a series key (a vendor scales TR/TE slightly)."""
    base = {
        "sag_t1": Sequence("sag_t1", "sagittal", "SE", 550, 10, etl=3),
        "sag_t2": Sequence("sag_t2", "sagittal", "SE", 3500, 100, etl=20),
        "sag_stir": Sequence("sag_stir", "sagittal", "IR", 4000, 45, ti=150, etl=12),
        "ax_t2": Sequence("ax_t2", "axial", "SE", 4000, 100, etl=18),
        "sag_t1_post": Sequence("sag_t1_post", "sagittal", "SE", 600, 10, etl=3, fat_sat=True, contrast=True),
        "sag_dixon_w": Sequence("sag_dixon_w", "sagittal", "SE", 3500, 90, etl=16, dixon="water"),
        "sag_dixon_f": Sequence("sag_dixon_f", "sagittal", "SE", 3500, 90, etl=16, dixon="fat"),
    }[key]
    return Sequence(
        base.key,
        base.plane,
        base.kind,
        round(base.tr * tr_scale, 1),
        round(base.te * te_scale, 1),
        base.ti,
        base.etl,
        base.fat_sat,
        base.contrast,
        base.dixon,
    )


SERIES_KEYS = ("sag_t1", "sag_t2", "sag_stir", "ax_t2", "sag_t1_post", "sag_dixon_w", "sag_dixon_f")
DEFAULT_SERIES = ("sag_t1", "sag_t2", "sag_stir", "ax_t2")


def _recovery(seq: Sequence, t1: np.ndarray) -> np.ndarray:
    if seq.kind == "IR":
        return 1 - 2 * np.exp(-(seq.ti or 150.0) / t1) + np.exp(-seq.tr / t1)
    return 1 - np.exp(-seq.tr / t1)


def signal_lut(table: dict[str, np.ndarray], seq: Sequence) -> np.ndarray:
    """Signal of every tissue label for this sequence: shape (N_TISSUES,), float32."""
    t1 = table["t1"].copy()
    if seq.contrast:
        t1 = 1.0 / (1.0 / t1 + table["gd"])
    water = table["pd"] * (1 - table["ff"]) * _recovery(seq, t1) * np.exp(-seq.te / table["t2"])
    fat_t1 = np.full_like(t1, float(table["fat_t1"]))
    if seq.contrast:
        fat_t1 = 1.0 / (1.0 / fat_t1 + 0.0002)
    fat = FAT_PD * table["ff"] * _recovery(seq, fat_t1) * np.exp(-seq.te / FAT_T2_MS)
    if seq.fat_sat:
        fat = fat * 0.06
    if seq.dixon == "water":
        fat = fat * 0.0
    elif seq.dixon == "fat":
        water = water * 0.0
    return np.abs(water + fat).astype(np.float32)
