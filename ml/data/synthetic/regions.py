"""Per-region anatomy tables: vertebral sizes, curvature and field of view.

Numbers are typical adult values (mm, degrees) from morphometric literature, rounded;
individual variation is applied on top of them in ``anatomy.sample_spine``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml.conditions import DISC_LEVELS


@dataclass(frozen=True)
class VertebraSpec:
    name: str
    height: float  # body height
    depth: float  # body AP depth
    width: float  # body LR width
    canal_ap: float
    canal_w: float
    theta: float  # caudal tangent angle at the body centre (deg, + = heading posterior)
    disc_below: float  # height of the disc below (0 = none, <2.5 = fused sacral remnant)
    spinous: float = 30.0  # spinous process length
    spinous_slope: float = 0.15  # caudal drop per mm of length


@dataclass(frozen=True)
class RegionSpec:
    name: str
    vertebrae: tuple[VertebraSpec, ...]
    center: str  # vertebra at the centre of the sagittal field of view
    fov_sag: float  # sagittal FOV (square), mm
    fov_ax: float  # axial FOV, mm
    sag_thickness: float
    sag_gap: float
    sag_slices: int
    ax_thickness: float
    ax_per_disc: int
    conus: str | None  # vertebra where the cord ends (lower third); None = cord throughout
    sac_end: str | None  # vertebra where the thecal sac ends
    anterior: str  # "abdomen" | "neck" | "chest"
    back_fat: float  # typical subcutaneous fat thickness
    muscle: float  # typical paraspinal muscle thickness behind the laminae

    def levels(self) -> tuple[str, ...]:
        """The disc levels this region reports on (ml.conditions.DISC_LEVELS)."""
        return DISC_LEVELS[self.name]


def disc_name(upper: str, lower: str) -> str:
    """'L4','L5' -> 'L4-5'; 'L5','S1' -> 'L5-S1'."""
    if upper[0] == lower[0]:
        return f"{upper}-{lower[1:]}"
    return f"{upper}-{lower}"


V = VertebraSpec

LUMBAR = RegionSpec(
    name="lumbar",
    vertebrae=(
        V("T9", 20, 27, 34, 14, 17, -12, 5.5, 28, 0.5),
        V("T10", 21, 28, 36, 14, 18, -12, 6.0, 28, 0.45),
        V("T11", 22, 29, 38, 15, 19, -10, 6.5, 28, 0.35),
        V("T12", 23, 30, 40, 16, 21, -8, 7.0, 30, 0.2),
        V("L1", 25, 31, 42, 17, 22, -7, 8.5, 32, 0.08),
        V("L2", 26, 32, 44, 17, 22, -3, 9.5, 33, 0.05),
        V("L3", 27, 33, 46, 16, 23, 3, 10.5, 33, 0.05),
        V("L4", 27, 34, 48, 16, 24, 11, 11.0, 31, 0.08),
        V("L5", 26, 34, 50, 17, 26, 24, 10.0, 26, 0.12),
        V("S1", 28, 32, 46, 15, 26, 42, 2.0, 18, 0.1),
        V("S2", 22, 24, 38, 11, 20, 34, 1.5, 15, 0.1),
        V("S3", 18, 18, 30, 8, 16, 20, 1.5, 12, 0.1),
        V("S4", 14, 14, 24, 6, 12, 6, 1.5, 10, 0.1),
        V("S5", 11, 10, 18, 5, 10, -8, 0.0, 8, 0.1),
    ),
    center="L4",
    fov_sag=300.0,
    fov_ax=200.0,
    sag_thickness=4.0,
    sag_gap=0.4,
    sag_slices=15,
    ax_thickness=4.0,
    ax_per_disc=3,
    conus="L1",
    sac_end="S2",
    anterior="abdomen",
    back_fat=18.0,
    muscle=45.0,
)

CERVICAL = RegionSpec(
    name="cervical",
    vertebrae=(
        V("C1", 9, 10, 16, 18, 28, -22, 0.0, 12, 0.0),
        V("C2", 24, 16, 18, 16, 26, -16, 5.0, 28, 0.25),
        V("C3", 14, 16, 20, 15, 25, -9, 5.5, 16, 0.35),
        V("C4", 14, 16, 21, 14, 25, -3, 5.5, 16, 0.35),
        V("C5", 14, 16, 22, 14, 25, 4, 5.5, 17, 0.35),
        V("C6", 14, 17, 23, 14, 24, 11, 5.5, 20, 0.35),
        V("C7", 15, 17, 25, 14, 24, 17, 5.0, 30, 0.4),
        V("T1", 17, 19, 28, 14, 21, 20, 4.5, 32, 0.6),
        V("T2", 18, 20, 29, 13, 18, 20, 4.5, 32, 0.7),
        V("T3", 18, 21, 30, 13, 17, 17, 4.5, 32, 0.8),
        V("T4", 19, 22, 30, 13, 17, 13, 0.0, 32, 0.8),
    ),
    center="C5",
    fov_sag=240.0,
    fov_ax=160.0,
    sag_thickness=3.0,
    sag_gap=0.3,
    sag_slices=13,
    ax_thickness=3.0,
    ax_per_disc=3,
    conus=None,
    sac_end=None,
    anterior="neck",
    back_fat=8.0,
    muscle=40.0,
)

THORACIC = RegionSpec(
    name="thoracic",
    vertebrae=(
        V("C6", 14, 17, 23, 14, 24, 11, 5.5, 20, 0.35),
        V("C7", 15, 17, 25, 14, 24, 16, 5.0, 30, 0.4),
        V("T1", 17, 19, 28, 14, 21, 18, 4.5, 32, 0.6),
        V("T2", 18, 20, 29, 13, 18, 18, 4.5, 32, 0.7),
        V("T3", 18, 21, 30, 13, 17, 15, 4.5, 32, 0.8),
        V("T4", 19, 22, 30, 13, 17, 11, 4.5, 32, 0.9),
        V("T5", 19, 23, 31, 13, 17, 7, 4.5, 32, 0.9),
        V("T6", 20, 24, 31, 13, 17, 3, 5.0, 32, 0.9),
        V("T7", 20, 25, 32, 13, 17, 0, 5.0, 32, 0.9),
        V("T8", 20, 26, 33, 13, 17, -3, 5.0, 30, 0.8),
        V("T9", 20, 27, 34, 14, 17, -6, 5.5, 28, 0.5),
        V("T10", 21, 28, 36, 14, 18, -8, 6.0, 28, 0.45),
        V("T11", 22, 29, 38, 15, 19, -9, 6.5, 28, 0.35),
        V("T12", 23, 30, 40, 16, 21, -8, 7.0, 30, 0.2),
        V("L1", 25, 31, 42, 17, 22, -6, 8.5, 32, 0.08),
        V("L2", 26, 32, 44, 17, 22, -3, 0.0, 33, 0.05),
    ),
    center="T7",
    fov_sag=380.0,
    fov_ax=180.0,
    sag_thickness=3.5,
    sag_gap=0.35,
    sag_slices=13,
    ax_thickness=3.5,
    ax_per_disc=2,
    conus="L1",
    sac_end=None,
    anterior="chest",
    back_fat=12.0,
    muscle=35.0,
)

REGION_SPECS: dict[str, RegionSpec] = {"lumbar": LUMBAR, "cervical": CERVICAL, "thoracic": THORACIC}
