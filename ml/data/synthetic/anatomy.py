"""The 3-D label volume of one synthetic spine: vertebrae, discs, canal, soft tissues.

``sample_spine`` draws an individual (sizes, curvature, disc heights, habitus) and lays
the vertebrae along a curve; ``build_labels`` paints tissues into a uint8 volume in the
curvilinear frame of ``geometry``, in a fixed order: the body around the spine
(``anatomy_surroundings``), then the spinal column (``anatomy_column``), then the organs and
vessels. Pathology that changes the *shape* of the spine
(height loss, wedging, slips, narrowing, lipomatosis) enters through ``AnatomyMods``
before painting; focal lesions are painted afterwards by ``lesions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ml.data.synthetic.anatomy_column import (
    paint_canal,
    paint_disc,
    paint_facets,
    paint_foramina,
    paint_vertebra,
)
from ml.data.synthetic.anatomy_surroundings import paint_extras, paint_soft_tissue
from ml.data.synthetic.geometry import Centerline, Frame, Grid, Mask
from ml.data.synthetic.regions import REGION_SPECS, RegionSpec, disc_name


@dataclass
class AnatomyMods:
    """Shape changes requested by the sampled pathology (keys are levels / vertebrae)."""

    disc_height: dict[str, float] = field(default_factory=dict)  # level -> factor (<1 = loss)
    disc_degen: dict[str, float] = field(default_factory=dict)  # level -> 0..1 desiccation
    bulge: dict[str, float] = field(default_factory=dict)  # level -> mm circumferential bulge
    slip: dict[str, float] = field(default_factory=dict)  # level -> mm anterolisthesis of upper
    wedge: dict[str, float] = field(default_factory=dict)  # vertebra -> anterior height loss 0..1
    canal: dict[str, float] = field(default_factory=dict)  # level -> thecal sac area loss 0..1
    foramen: dict[tuple[str, str], float] = field(default_factory=dict)  # (level, side) -> 0..1
    recess: dict[tuple[str, str], float] = field(default_factory=dict)  # (level, side) -> 0..1
    lipomatosis: dict[str, float] = field(default_factory=dict)  # level -> 0..1 fat excess


@dataclass
class Vertebra:
    name: str
    s: float  # centre along the curve
    h: float
    depth: float
    width: float
    canal_ap: float
    canal_w: float
    spinous: float
    spinous_slope: float
    sacral: bool


@dataclass
class Disc:
    name: str
    upper: str
    lower: str
    s0: float  # cranial endplate boundary (bottom of upper body)
    s1: float  # caudal boundary (top of lower body)
    fused: bool
    degen: float = 0.0
    bulge: float = 0.0

    @property
    def s(self) -> float:
        return 0.5 * (self.s0 + self.s1)

    @property
    def h(self) -> float:
        return self.s1 - self.s0


@dataclass
class Spine:
    """One individual's spine: layout along the curve, the curve and the voxel grid."""

    region: RegionSpec
    verts: list[Vertebra]
    discs: list[Disc]
    curve: Centerline
    grid: Grid
    back_fat: float
    muscle: float
    marrow_ff: float
    mods: AnatomyMods
    sac_scale: float = 1.0
    frame: Frame | None = None
    masks: dict[str, Mask] = field(default_factory=dict)  # named anatomy regions for GT

    def vert(self, name: str) -> Vertebra:
        return next(v for v in self.verts if v.name == name)

    def disc(self, name: str) -> Disc:
        return next(d for d in self.discs if d.name == name)

    def has_disc(self, name: str) -> bool:
        return any(d.name == name for d in self.discs)

    def interp(self, s: np.ndarray, attr: str) -> np.ndarray:
        """Vertebral dimension ``attr`` interpolated along the curve at s."""
        xs = [v.s for v in self.verts]
        return np.interp(s, xs, [getattr(v, attr) for v in self.verts]).astype(np.float32)

    def patient_point(self, s: float, v: float, x: float = 0.0) -> np.ndarray:
        """LPS (x, y, z) of curvilinear (s, v, x)."""
        (y, z) = self.curve.point(s)
        _, n = self.curve.frame(s)
        return np.array([x, y + v * n[0], z + v * n[1]])


def sample_spine(rng: np.random.Generator, region: str, age: float, mods: AnatomyMods, voxel: float) -> Spine:
    """Draw individual anatomy (size, curvature, habitus) and lay it out along a curve."""
    spec = REGION_SPECS[region]
    size = float(np.clip(rng.normal(1.0, 0.05), 0.88, 1.12))
    disc_f = float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.2))
    curv = float(np.clip(rng.normal(1.0, 0.22), 0.5, 1.5))
    tilt = float(rng.normal(0.0, 3.0))
    verts: list[Vertebra] = []
    discs: list[Disc] = []
    s = 0.0
    for i, vs in enumerate(spec.vertebrae):
        h = vs.height * size * float(rng.normal(1.0, 0.02))
        verts.append(
            Vertebra(
                vs.name,
                s + h / 2,
                h,
                vs.depth * size,
                vs.width * size,
                vs.canal_ap * float(rng.normal(1.0, 0.06)),
                vs.canal_w * float(rng.normal(1.0, 0.05)),
                vs.spinous * size,
                vs.spinous_slope,
                vs.name.startswith("S"),
            )
        )
        s += h
        if i + 1 < len(spec.vertebrae):
            lower = spec.vertebrae[i + 1].name
            name = disc_name(vs.name, lower)
            fused = vs.disc_below < 2.5
            dh = vs.disc_below * (1.0 if fused else disc_f * float(rng.normal(1.0, 0.05)))
            dh *= mods.disc_height.get(name, 1.0)
            discs.append(
                Disc(
                    name,
                    vs.name,
                    lower,
                    s,
                    s + dh,
                    fused,
                    mods.disc_degen.get(name, 0.0),
                    mods.bulge.get(name, 0.0),
                )
            )
            s += dh
    s_total = s
    s_ctrl = np.array([v.s for v in verts])
    theta = np.array([vs.theta for vs in spec.vertebrae]) * curv + tilt
    kinks = []
    for v in verts:
        r = mods.wedge.get(v.name, 0.0)
        if r > 0:  # anterior wedge of fraction r needs a bend of r*h/D radians over the body
            kinks.append((v.s - v.h / 2, v.s + v.h / 2, float(np.rad2deg(r * v.h / v.depth))))
    slips = []
    for d in discs:
        mm = mods.slip.get(d.name, 0.0)
        if mm > 0:
            slips.append((d.s0, d.s1, mm))
    curve = Centerline.build(s_ctrl, theta, s_total, slips=slips, kinks=kinks)
    centre = next(v for v in verts if v.name == spec.center)
    py, pz = curve.point(centre.s)
    curve.translate(-py, -pz)

    back_fat = float(np.clip(spec.back_fat * rng.lognormal(0.0, 0.45), 4.0, 55.0))
    muscle = spec.muscle * float(rng.normal(1.0, 0.08))
    marrow_ff = float(np.clip(0.25 + 0.006 * (age - 25) + rng.normal(0, 0.04), 0.2, 0.8))

    fov = spec.fov_sag
    margin = 6.0
    post = verts[0].canal_ap + muscle + back_fat + 12.0
    y_c = -fov / 2 + max(post, 75.0) + 10.0
    half_x = spec.fov_ax / 2 + margin
    lo = (-half_x, -fov / 2 - margin, y_c - fov / 2 - margin)
    shape = (
        int(np.ceil(2 * half_x / voxel)) + 1,
        int(np.ceil((fov + 2 * margin) / voxel)) + 1,
        int(np.ceil((fov + 2 * margin) / voxel)) + 1,
    )
    grid = Grid(voxel=voxel, origin=lo, shape=shape)
    return Spine(spec, verts, discs, curve, grid, back_fat, muscle, marrow_ff, mods)


def build_labels(sp: Spine) -> np.ndarray:
    """Paint the normal (plus shape-modified) anatomy; returns labels (nx, nz, ny) uint8."""
    fr = Frame(sp.grid, sp.curve)
    sp.frame = fr
    labels = np.zeros(sp.grid.shape, np.uint8)
    paint_soft_tissue(sp, fr, labels)
    paint_canal(sp, fr, labels)
    for d in sp.discs:
        if not d.fused:
            paint_foramina(sp, fr, labels, d)
    for d in sp.discs:
        paint_disc(sp, fr, labels, d)
    for i, v in enumerate(sp.verts):
        paint_vertebra(sp, fr, labels, v, i)
    for d in sp.discs:
        if not d.fused:
            paint_facets(sp, fr, labels, d)
    paint_extras(sp, fr, labels)
    return labels
