"""The 3-D label volume of one synthetic spine: vertebrae, discs, canal, soft tissues.

``sample_spine`` draws an individual (sizes, curvature, disc heights, habitus) and lays
the vertebrae along a curve; ``build_labels`` paints tissues into a uint8 volume in the
curvilinear frame of ``geometry``. Pathology that changes the *shape* of the spine
(height loss, wedging, slips, narrowing, lipomatosis) enters through ``AnatomyMods``
before painting; focal lesions are painted afterwards by ``lesions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import binary_erosion

from ml.data.synthetic.geometry import Block, Centerline, Frame, Grid, Mask
from ml.data.synthetic.regions import REGION_SPECS, RegionSpec, disc_name
from ml.data.synthetic.tissues import T


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


# ----------------------------------------------------------------------------------------
# painting helpers


def _superellipse(a: np.ndarray, b: np.ndarray, ra, rb, p: float = 2.4) -> np.ndarray:
    """|a/ra|^p + |b/rb|^p <= 1 (broadcasting)."""
    return (np.abs(a / ra) ** p + np.abs(b / rb) ** p) <= 1.0


def _paint(labels: np.ndarray, b: Block, m: np.ndarray, tissue: T) -> None:
    sub = labels[b.sl]
    sub[np.broadcast_to(m, sub.shape)] = tissue


def _paint_bone(labels: np.ndarray, b: Block, m: np.ndarray, voxel: float) -> None:
    """Bone with a cortical rim: interior marrow, one-voxel (>=1 mm) cortex."""
    m = np.broadcast_to(m, b.shape)
    inner = binary_erosion(m, iterations=1 if voxel >= 1.0 else 2, border_value=1)
    sub = labels[b.sl]
    sub[m & ~inner] = T.CORTEX
    sub[inner] = T.MARROW


def build_labels(sp: Spine) -> np.ndarray:
    """Paint the normal (plus shape-modified) anatomy; returns labels (nx, nz, ny) uint8."""
    fr = Frame(sp.grid, sp.curve)
    sp.frame = fr
    labels = np.zeros(sp.grid.shape, np.uint8)
    _soft_tissue(sp, fr, labels)
    _canal(sp, fr, labels)
    for d in sp.discs:
        if not d.fused:
            _foramina(sp, fr, labels, d)
    for d in sp.discs:
        _disc(sp, fr, labels, d)
    for i, v in enumerate(sp.verts):
        _vertebra(sp, fr, labels, v, i)
    for d in sp.discs:
        if not d.fused:
            _facets(sp, fr, labels, d)
    _extras(sp, fr, labels)
    return labels


def _soft_tissue(sp: Spine, fr: Frame, labels: np.ndarray) -> None:
    spec = sp.region
    s_lo, s_hi = float(fr.s_map.min()), float(fr.s_map.max())
    b = fr.block((s_lo, s_hi), (-1e4, 1e4), (-1e4, 1e4))
    assert b is not None
    d0 = sp.verts[0].depth
    cd = sp.interp(b.s, "canal_ap")
    v_back = cd + sp.muscle + sp.back_fat + 8.0
    if spec.anterior == "abdomen":
        front, half_w = -240.0, 165.0
    elif spec.anterior == "neck":
        front, half_w = -d0 - 48.0, 62.0
    else:
        front, half_w = -d0 - 175.0, 160.0
    # Inequalities are arranged as (2-D in z,y) vs (1-D in x) so that each costs a
    # single full-volume comparison.
    xq_back = -(b.x**2) / (2 * 170.0)  # (nx,1,1): back curves forward laterally
    xq_front = b.x**2 / (2 * 260.0)
    rel_back = b.v - v_back  # (1,nz,ny)
    xin = np.abs(b.x) <= half_w
    inside = (rel_back <= xq_back) & (b.v >= front + xq_front) & xin
    if spec.anterior == "neck":  # shoulders below C7
        s_c7 = sp.vert("C7").s
        wide = (b.s > s_c7 + 10) & (b.v >= -d0 - 90) & (rel_back <= xq_back)
        inside = inside | wide
    _paint(labels, b, inside, T.FAT)
    fat = sp.back_fat
    core = (rel_back + fat <= xq_back) & (b.v - 0.5 * fat >= front + xq_front) & (np.abs(b.x) <= half_w - fat)
    default = {"abdomen": T.VISCERA, "neck": T.MUSCLE, "chest": T.LUNG}[spec.anterior]
    _paint(labels, b, core, default)
    # paraspinal muscles: multifidus + erector spinae as a rounded mass each side, and in
    # the abdomen psoas / quadratus lumborum lateral to the bodies
    xm = {"abdomen": 78.0, "neck": 50.0, "chest": 75.0}[spec.anterior]
    v_top = v_back - fat  # (1,nz,ny)
    vm = 0.5 * v_top
    rv = 0.5 * (v_top + 0.3 * d0)
    ell = ((b.v - vm) / rv) ** 2 + ((np.abs(b.x) - 0.42 * xm) / (0.62 * xm)) ** 2 <= 1
    near = (b.v > -0.3 * d0) & (b.v < cd)
    musc = core & (ell | (near & (np.abs(b.x) < xm * 0.9)))
    _paint(labels, b, musc, T.MUSCLE)
    # thin intermuscular fat plane between multifidus and longissimus
    band = (b.v > cd + 8) & (b.v < v_top - 4)
    plane = musc & (np.abs(np.abs(b.x) - 28.0 - 0.15 * b.v) < 0.9) & band
    _paint(labels, b, plane, T.FAT)


def _canal(sp: Spine, fr: Frame, labels: np.ndarray) -> None:
    spec = sp.region
    last = sp.verts[-1]
    b = fr.block((float(fr.s_map.min()), last.s + last.h / 2), (-2.0, 40.0), (-25.0, 25.0))
    if b is None:
        return
    cd = sp.interp(b.s, "canal_ap")
    cw = sp.interp(b.s, "canal_w")
    a = (b.v - cd / 2) / (cd / 2)  # -1 anterior wall, +1 posterior
    half = cw / 2 * np.sqrt(np.clip(1 - a**2, 0, 1)) * (1 - 0.18 * np.clip(a, 0, 1))
    canal = (np.abs(a) <= 1) & (np.abs(b.x) <= half)
    _paint(labels, b, canal, T.FAT)
    sp.masks["canal"] = Mask.from_block(b, canal)
    # thecal sac, narrowed at stenotic levels, displaced by epidural fat
    narrow = np.zeros_like(b.s)
    lipo = np.zeros_like(b.s)
    for d in sp.discs:
        k = sp.mods.canal.get(d.name, 0.0)
        if k:
            narrow = np.maximum(narrow, k * np.exp(-(((b.s - d.s) / 7.0) ** 2)))
        f = sp.mods.lipomatosis.get(d.name, 0.0)
        if f:
            lipo = np.maximum(lipo, f * np.exp(-(((b.s - d.s) / 16.0) ** 2)))
    lin = np.sqrt(1 - narrow) * sp.sac_scale  # area loss -> linear scale
    sac_ap = cd * 0.78 * lin * (1 - 0.45 * lipo)
    sac_w = cw * 0.74 * lin * (1 - 0.15 * lipo)
    vc = cd * 0.44 - 0.15 * cd * lipo
    in_sac = (((b.v - vc) / (sac_ap / 2)) ** 2 + (b.x / (sac_w / 2)) ** 2) <= 1
    if spec.sac_end:
        end = sp.vert(spec.sac_end).s
        taper = np.clip((end - b.s) / 25.0, 0, 1)
        in_sac &= (((b.v - vc) / (sac_ap / 2 * taper + 1e-3)) ** 2 + (b.x / (sac_w / 2 * taper + 1e-3)) ** 2) <= 1
    dura = in_sac & ~((((b.v - vc) / (sac_ap / 2 - 0.6)) ** 2 + (b.x / (sac_w / 2 - 0.6)) ** 2) <= 1)
    _paint(labels, b, in_sac, T.CSF)
    _paint(labels, b, dura & canal, T.DURA)
    sp.masks["sac"] = Mask.from_block(b, in_sac)
    # ligamentum flavum at the disc levels (thickened where the canal is narrowed)
    for d in sp.discs:
        if d.fused:
            continue
        thick = 2.5 + 5.0 * sp.mods.canal.get(d.name, 0.0)
        near = np.abs(b.s - (d.s - 2.0)) < 9.0
        lf = near & canal & (b.v > cd - thick - 0.35 * np.abs(b.x)) & (np.abs(b.x) > 1.5) & ~in_sac
        _paint(labels, b, lf, T.LIGAMENT)
    # cord / conus, then cauda equina roots
    cord_ap = 7.5 if spec.name != "cervical" else 8.0
    cord_w: float | np.ndarray = 9.0 if spec.name != "cervical" else 12.0
    if spec.name == "cervical":
        enl = np.exp(-(((b.s - sp.vert("C5").s) / 25.0) ** 2))
        cord_w = cord_w + 2.5 * enl
    tip = np.inf
    if spec.conus:
        cv = sp.vert(spec.conus)
        tip = cv.s + cv.h * 0.3
    taper = np.clip((tip - b.s) / 22.0, 0, 1) ** 0.6
    conus_bulge = 1 + 0.25 * np.exp(-(((b.s - (tip - 30)) / 12.0) ** 2)) if spec.conus else 1.0
    vcord = vc - 0.04 * cd
    cord = (
        ((b.v - vcord) / (cord_ap / 2 * taper * conus_bulge + 1e-3)) ** 2
        + (b.x / (cord_w / 2 * taper * conus_bulge + 1e-3)) ** 2
    ) <= 1
    cord &= in_sac & (b.s < tip)
    _paint(labels, b, cord, T.CORD)
    sp.masks["cord"] = Mask.from_block(b, cord)
    if spec.conus:
        roots = np.zeros(b.shape, bool)
        below = b.s > tip - 25
        for k, ang in enumerate(np.linspace(0.25 * np.pi, 0.75 * np.pi, 9)):
            for sgn in (-1, 1):
                rx = sgn * (0.25 + 0.45 * abs(np.cos(ang))) * sac_w / 2 * (1 + 0.02 * k)
                rv = vc + 0.55 * np.sin(ang) * sac_ap / 2
                roots |= (((b.v - rv) ** 2 + (b.x - rx) ** 2) <= 1.1**2) & below
        _paint(labels, b, roots & in_sac & ~cord, T.NERVE)
        below_sac = (b.s > tip) & canal & ~in_sac & (np.abs(b.x) < cw * 0.3) & (b.v > cd * 0.2)
        if spec.sac_end:
            s_end = sp.vert(spec.sac_end).s
            sacral_roots = below_sac & (b.s > s_end) & (np.abs(np.abs(b.x) - cw * 0.15) < 1.3)
            _paint(labels, b, sacral_roots, T.NERVE)


def _foramina(sp: Spine, fr: Frame, labels: np.ndarray, d: Disc) -> None:
    up = sp.vert(d.upper)
    cw = up.canal_w
    s_c = d.s0 - 0.25 * up.h
    b = fr.block((s_c - 14, d.s1 + 6), (-4.0, up.canal_ap + 6), (-cw / 2 - 16, cw / 2 + 16))
    if b is None:
        return
    for side, sgn in (("right", -1.0), ("left", 1.0)):
        k = sp.mods.foramen.get((d.name, side), 0.0)
        lx = sgn * b.x - cw / 2  # lateral distance from canal edge
        ru = (11.0 + 0.4 * d.h) * (1 - 0.55 * k)
        rv = up.canal_ap * 0.45 * (1 - 0.4 * k)
        vcen = up.canal_ap * 0.42 - 2.5 * k
        fo = (((b.s - s_c) / ru) ** 2 + ((b.v - vcen) / rv) ** 2 <= 1) & (lx > -1) & (lx < 12)
        _paint(labels, b, fo, T.FAT)
        root_r = 2.6
        root = ((b.s - (s_c - 0.4 * ru)) ** 2 + (b.v - vcen + 0.5) ** 2 <= root_r**2) & (lx > -2) & (lx < 13)
        _paint(labels, b, root & fo, T.NERVE)
        sp.masks[f"foramen:{d.name}:{side}"] = Mask.from_block(b, fo)


def _disc(sp: Spine, fr: Frame, labels: np.ndarray, d: Disc) -> None:
    up, lo = sp.vert(d.upper), sp.vert(d.lower)
    depth = 0.5 * (up.depth + lo.depth)
    width = 0.5 * (up.width + lo.width)
    pad = 1.2
    b = fr.block((d.s0 - pad, d.s1 + pad), (-depth - 8, 10.0), (-width / 2 - 8, width / 2 + 8))
    if b is None:
        return
    u = (b.s - d.s) / max(d.h / 2, 0.5)  # -1..1 across the disc
    bulge = (0.8 + d.bulge) * np.clip(1 - u**2, 0, 1)
    disc = (np.abs(b.s - d.s) <= d.h / 2 + pad) & _superellipse(
        b.v + depth / 2, b.x, depth / 2 + bulge, width / 2 + bulge
    )
    tissue = T.CORTEX if d.fused and d.h < 1.0 else T.ANNULUS
    _paint(labels, b, disc, tissue)
    sp.masks[f"disc:{d.name}"] = Mask.from_block(b, disc & (np.abs(b.s - d.s) <= d.h / 2))
    if d.fused:
        return
    scale = 1.0 - 0.35 * d.degen
    nuc = (
        (b.s - d.s) ** 2 / (0.36 * d.h * scale) ** 2
        + (b.v + 0.55 * depth) ** 2 / (0.3 * depth * scale) ** 2
        + b.x**2 / (0.3 * width * scale) ** 2
    ) <= 1
    _paint(labels, b, nuc, T.NUCLEUS_DEGEN if d.degen >= 0.45 else T.NUCLEUS)


def _vertebra(sp: Spine, fr: Frame, labels: np.ndarray, v: Vertebra, i: int) -> None:
    vox = sp.grid.voxel
    cd, cw = v.canal_ap, v.canal_w
    reach = max(v.spinous + cd + 12, 45.0)
    lat = 60.0 if v.sacral and v.name in ("S1", "S2") else cw / 2 + 32
    b = fr.block((v.s - v.h / 2 - 16, v.s + v.h / 2 + 16), (-v.depth - 4, reach), (-lat, lat))
    if b is None:
        return
    u = b.s - v.s  # + caudal
    waist = 1 - 0.05 * np.clip(1 - (2 * u / v.h) ** 2, 0, 1)
    body = (np.abs(u) <= v.h / 2) & _superellipse(b.v + v.depth / 2, b.x, v.depth / 2 * waist, v.width / 2 * waist)
    if v.name == "C1":  # atlas: anterior arch instead of a body
        body = (np.abs(u) <= 5) & _superellipse(b.v + v.depth + 2, b.x, 3.5, 9.0)
    if v.name == "C2":  # dens rising into the atlas ring
        dens = (u < -v.h / 2) & (u > -v.h / 2 - 15) & ((b.v + v.depth / 2) ** 2 + b.x**2 <= 5.0**2)
        body = body | dens
    sp.masks[f"body:{v.name}"] = Mask.from_block(b, body)
    # posterior elements
    pu = u + 0.18 * v.h  # pedicle centre is in the cranial half
    ped_x = cw / 2 + 3.5
    pedicle = ((pu / (0.22 * v.h + 1.5)) ** 2 + ((np.abs(b.x) - ped_x) / 4.2) ** 2 <= 1) & (b.v > -3) & (b.v < cd * 0.8)
    a = (b.v - cd / 2) / (cd / 2 + 7.0)
    outer = a**2 + (b.x / (cw / 2 + 7.0)) ** 2 <= 1
    inner = ((b.v - cd / 2) / (cd / 2)) ** 2 + (b.x / (cw / 2)) ** 2 <= 1
    lam_u = (u > -0.32 * v.h) & (u < 0.45 * v.h + 0.2 * (b.v - cd))
    lamina = outer & ~inner & (b.v > cd * 0.55) & lam_u
    sp_u = u - v.spinous_slope * (b.v - cd) + 0.05 * v.h
    sp_half = (0.32 * v.h) * (1 - 0.35 * np.clip((b.v - cd) / max(v.spinous, 1), 0, 1))
    spinous = (np.abs(b.x) <= 3.2) & (b.v > cd + 2) & (b.v < cd + 4 + v.spinous) & (np.abs(sp_u) <= sp_half)
    tp_len = {"lumbar": 24.0, "thoracic": 18.0, "cervical": 9.0}[sp.region.name]
    if v.name.startswith("T"):
        tp_len = 18.0
    tp = (
        (np.abs(pu) <= 4.5)
        & (np.abs(b.v - cd * 0.35) <= 4.0)
        & (np.abs(b.x) > cw / 2)
        & (np.abs(b.x) < cw / 2 + tp_len)
    )
    sap = ((u + v.h / 2 + 2) / 8.5) ** 2 + ((b.v - cd * 0.7) / 5.5) ** 2 + ((np.abs(b.x) - ped_x - 1.5) / 5.0) ** 2 <= 1
    iap = ((u - v.h / 2 - 2.5) / 8.5) ** 2 + ((b.v - cd - 3.0) / 5.5) ** 2 + ((np.abs(b.x) - ped_x) / 5.0) ** 2 <= 1
    post = pedicle | lamina | spinous | tp | sap | iap
    if v.sacral:  # fused sacral arch and lateral masses
        ala_w = {"S1": 55.0, "S2": 45.0, "S3": 33.0, "S4": 22.0, "S5": 14.0}.get(v.name, 15.0)
        mass = (
            (np.abs(u) <= v.h / 2 + 1.5)
            & (b.v > -v.depth * 0.85)
            & (b.v < cd + 7)
            & (np.abs(b.x) < ala_w - 0.004 * b.v**2)
        )
        post = (mass & ~inner) | spinous | (sap if v.name == "S1" else False)
    if v.name == "C1":
        post = (outer & ~inner & (b.v > cd * 0.5) & (np.abs(u) <= 4.5)) | (
            (np.abs(u) <= 6)
            & (b.v > -v.depth - 2)
            & (b.v < cd * 0.5)
            & (np.abs(b.x) > cw / 2 - 1)
            & (np.abs(b.x) < cw / 2 + 11)
        )
    post &= ~(inner & (b.v > -0.5))  # never inside the canal
    _paint_bone(labels, b, body | post, vox)
    sp.masks[f"post:{v.name}"] = Mask.from_block(b, post)
    if v.sacral and v.name != "S5":  # anterior sacral foramina with their roots
        fo = (
            (np.abs(u - v.h / 2) < 4.5)
            & (np.abs(np.abs(b.x) - (cw / 2 + 9)) < 4.5)
            & (b.v > -v.depth * 0.6)
            & (b.v < 0)
        )
        _paint(labels, b, fo, T.FAT)
        _paint(labels, b, fo & (np.abs(u - v.h / 2) < 2) & (np.abs(np.abs(b.x) - (cw / 2 + 9)) < 2), T.NERVE)


def _facets(sp: Spine, fr: Frame, labels: np.ndarray, d: Disc) -> None:
    """Facet joint space: the thin cleft between the IAP above and the SAP below."""
    up = sp.vert(d.upper)
    cd = up.canal_ap
    ped_x = up.canal_w / 2 + 3.5
    b = fr.block((d.s - 14, d.s + 14), (cd * 0.3, cd + 12), (-ped_x - 12, ped_x + 12))
    if b is None:
        return
    # a thin oblique plane through the contact of the two processes
    t = (b.v - cd * 0.85) * 0.7 - (np.abs(b.x) - ped_x - 0.7) * 0.7
    joint = (np.abs(t) < 0.45) & (np.abs(b.s - d.s) < 7.0) & (np.abs(np.abs(b.x) - ped_x) < 5)
    bone = np.isin(labels[b.sl], (T.CORTEX, T.MARROW))
    _paint(labels, b, joint & bone, T.CARTILAGE)


def _extras(sp: Spine, fr: Frame, labels: np.ndarray) -> None:
    spec = sp.region
    d0 = max(v.depth for v in sp.verts)
    b = fr.block((float(fr.s_map.min()), float(fr.s_map.max())), (-d0 - 120, -d0 * 0.2), (-90.0, 90.0))
    if b is None:
        return
    depth = sp.interp(b.s, "depth")
    width = sp.interp(b.s, "width")
    body = np.isin(labels[b.sl], (T.VISCERA, T.MUSCLE, T.FAT, T.LUNG))
    if spec.anterior == "abdomen":
        s_l4 = sp.vert("L4").s
        s_s1 = sp.vert("S1").s
        split = np.clip((b.s - s_l4) * 0.55, 0, 60)
        r = np.where(b.s < s_l4, 10.5, 7.0)
        vc = -depth - 13.0
        aorta = (b.s < s_s1 + 25) & (
            ((b.v - vc) ** 2 + (b.x - 14 - split * (b.s >= s_l4)) ** 2 <= r**2)
            | (((b.v - vc) ** 2 + (b.x - 14 + split) ** 2 <= r**2) & (b.s >= s_l4))
        )
        ivc = (b.s < s_s1) & ((((b.v - vc + 1) / 8.0) ** 2 + ((b.x + 22) / 12.0) ** 2) <= 1)
        psoas_r = np.clip((b.s - sp.vert("T12").s) / (s_s1 - sp.vert("T12").s), 0, 1) * 20.0 + 3.0
        psoas = (b.s < s_s1 + 20) & (
            (b.v + depth * 0.5) ** 2 + (np.abs(b.x) - width / 2 - psoas_r * 0.9) ** 2 <= psoas_r**2
        )
        _paint(labels, b, psoas & body, T.MUSCLE)
        _paint(labels, b, (aorta | ivc) & body, T.VESSEL)
    elif spec.anterior == "neck":
        air = ((((b.v + depth + 24) / 8.0) ** 2 + (b.x / 10.0) ** 2) <= 1) & (b.s > sp.vert("C2").s)
        carotid = (b.v + depth + 14) ** 2 + (np.abs(b.x) - 24) ** 2 <= 4.0**2
        _paint(labels, b, air & body, T.AIR)
        _paint(labels, b, carotid & body, T.VESSEL)
        top = sp.vert("C1").s - 6
        bb = fr.block((float(fr.s_map.min()), top), (-60.0, 60.0), (-70.0, 70.0))
        if bb is not None:
            inside = np.isin(labels[bb.sl], (T.MUSCLE, T.FAT, T.CSF, T.CORD))
            brain = inside & (bb.v > -25) & (bb.v < 42) & (bb.s < top)
            _paint(labels, bb, brain, T.BRAIN)
            cistern = brain & (bb.v > 2) & (bb.v < 18) & (np.abs(bb.x) < 14)
            _paint(labels, bb, cistern, T.CSF)
            medulla = (bb.v - 7) ** 2 / 25 + bb.x**2 / 49 <= 1
            _paint(labels, bb, medulla & brain, T.CORD)
            occ = (np.abs(bb.v - 42 + 0.4 * (top - bb.s)) < 3.5) & (np.abs(bb.x) < 60) & inside
            _paint(labels, bb, occ, T.CORTEX)
    else:  # chest
        aorta = (b.v + depth + 4) ** 2 + (b.x - 22) ** 2 <= 11.0**2
        s_t8 = sp.vert("T8").s
        heart = ((b.s - s_t8) / 70.0) ** 2 + ((b.v + depth + 80) / 50.0) ** 2 + ((b.x - 15) / 60.0) ** 2 <= 1
        mediast = (np.abs(b.x) < 28) & body
        _paint(labels, b, mediast, T.FAT)
        _paint(labels, b, heart & body, T.MUSCLE)
        _paint(
            labels,
            b,
            heart
            & body
            & (((b.s - s_t8) / 45.0) ** 2 + ((b.v + depth + 80) / 30.0) ** 2 + ((b.x - 15) / 38.0) ** 2 <= 1),
            T.VESSEL,
        )
        _paint(labels, b, aorta & body, T.VESSEL)
        _ribs(sp, fr, labels)


def _ribs(sp: Spine, fr: Frame, labels: np.ndarray) -> None:
    """Posterior rib arcs of the thoracic vertebrae (seen on parasagittal and axial)."""
    for v in sp.verts:
        if not v.name.startswith("T"):
            continue
        b = fr.block((v.s - 6, v.s + 30), (-v.depth - 60, v.canal_ap + 25), (-100.0, 100.0))
        if b is None:
            continue
        lx = np.abs(b.x) - v.width / 2 - 2
        rad = 55.0
        ring = np.sqrt(lx**2 + (b.v - v.canal_ap * 0.3 + rad * 0.0) ** 2)
        arc_v = v.canal_ap * 0.3 - rad + np.sqrt(np.clip(rad**2 - (lx - rad) ** 2, 0, None))
        du = b.s - v.s - 0.12 * lx  # ribs slope caudally as they run laterally
        rib = (lx > 0) & (np.abs(b.v - arc_v) < 4.5) & (np.abs(du) < 4.5) & (ring < 110)
        sub = labels[b.sl]
        ok = np.isin(sub, (T.LUNG, T.MUSCLE, T.FAT, T.VISCERA))
        _paint_bone(labels, b, np.broadcast_to(rib, b.shape) & ok, sp.grid.voxel)
