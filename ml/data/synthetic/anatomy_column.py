"""The spinal column in the label volume: the canal with its fat, thecal sac, cord and roots;
the foramina; the discs; the vertebrae with their posterior elements; the facet joints.

``anatomy.build_labels`` calls these in order (later ones paint over earlier ones) after the body
around the spine (``anatomy_surroundings``). Each works in a ``Block`` of the curvilinear frame
(s along the curve, v anterior-posterior, x left-right) and records the named regions the ground
truth needs in ``Spine.masks``. The painting primitives shared with the surroundings live here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import binary_erosion

from ml.data.synthetic.geometry import Block, Frame, Mask
from ml.data.synthetic.tissues import T

if TYPE_CHECKING:
    from ml.data.synthetic.anatomy import Disc, Spine, Vertebra


def superellipse(
    a: np.ndarray, b: np.ndarray, ra: float | np.ndarray, rb: float | np.ndarray, p: float = 2.4
) -> np.ndarray:
    """|a/ra|^p + |b/rb|^p <= 1 (broadcasting)."""
    return (np.abs(a / ra) ** p + np.abs(b / rb) ** p) <= 1.0


def paint(labels: np.ndarray, b: Block, m: np.ndarray, tissue: T) -> None:
    """Set ``tissue`` where the block mask ``m`` (broadcast to the block) is true: later paint wins."""
    sub = labels[b.sl]
    sub[np.broadcast_to(m, sub.shape)] = tissue


def paint_bone(labels: np.ndarray, b: Block, m: np.ndarray, voxel: float) -> None:
    """Bone with a cortical rim: interior marrow, one-voxel (>=1 mm) cortex."""
    m = np.broadcast_to(m, b.shape)
    inner = binary_erosion(m, iterations=1 if voxel >= 1.0 else 2, border_value=1)
    sub = labels[b.sl]
    sub[m & ~inner] = T.CORTEX
    sub[inner] = T.MARROW


def paint_canal(sp: Spine, fr: Frame, labels: np.ndarray) -> None:
    """Canal fat, thecal sac with dura (narrowed by stenosis and lipomatosis), ligamentum flavum,
    cord or conus and the cauda equina roots."""
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
    paint(labels, b, canal, T.FAT)
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
    paint(labels, b, in_sac, T.CSF)
    paint(labels, b, dura & canal, T.DURA)
    sp.masks["sac"] = Mask.from_block(b, in_sac)
    # ligamentum flavum at the disc levels (thickened where the canal is narrowed)
    for d in sp.discs:
        if d.fused:
            continue
        thick = 2.5 + 5.0 * sp.mods.canal.get(d.name, 0.0)
        near = np.abs(b.s - (d.s - 2.0)) < 9.0
        lf = near & canal & (b.v > cd - thick - 0.35 * np.abs(b.x)) & (np.abs(b.x) > 1.5) & ~in_sac
        paint(labels, b, lf, T.LIGAMENT)
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
    paint(labels, b, cord, T.CORD)
    sp.masks["cord"] = Mask.from_block(b, cord)
    if spec.conus:
        roots = np.zeros(b.shape, bool)
        below = b.s > tip - 25
        for k, ang in enumerate(np.linspace(0.25 * np.pi, 0.75 * np.pi, 9)):
            for sgn in (-1, 1):
                rx = sgn * (0.25 + 0.45 * abs(np.cos(ang))) * sac_w / 2 * (1 + 0.02 * k)
                rv = vc + 0.55 * np.sin(ang) * sac_ap / 2
                roots |= (((b.v - rv) ** 2 + (b.x - rx) ** 2) <= 1.1**2) & below
        paint(labels, b, roots & in_sac & ~cord, T.NERVE)
        below_sac = (b.s > tip) & canal & ~in_sac & (np.abs(b.x) < cw * 0.3) & (b.v > cd * 0.2)
        if spec.sac_end:
            s_end = sp.vert(spec.sac_end).s
            sacral_roots = below_sac & (b.s > s_end) & (np.abs(np.abs(b.x) - cw * 0.15) < 1.3)
            paint(labels, b, sacral_roots, T.NERVE)


def paint_foramina(sp: Spine, fr: Frame, labels: np.ndarray, d: Disc) -> None:
    """The two neural foramina at disc ``d``: fat with the exiting root, narrowed per side."""
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
        paint(labels, b, fo, T.FAT)
        root_r = 2.6
        root = ((b.s - (s_c - 0.4 * ru)) ** 2 + (b.v - vcen + 0.5) ** 2 <= root_r**2) & (lx > -2) & (lx < 13)
        paint(labels, b, root & fo, T.NERVE)
        sp.masks[f"foramen:{d.name}:{side}"] = Mask.from_block(b, fo)


def paint_disc(sp: Spine, fr: Frame, labels: np.ndarray, d: Disc) -> None:
    """Annulus (bulging with ``d.bulge``) and nucleus (smaller and darker with degeneration)."""
    up, lo = sp.vert(d.upper), sp.vert(d.lower)
    depth = 0.5 * (up.depth + lo.depth)
    width = 0.5 * (up.width + lo.width)
    pad = 1.2
    b = fr.block((d.s0 - pad, d.s1 + pad), (-depth - 8, 10.0), (-width / 2 - 8, width / 2 + 8))
    if b is None:
        return
    u = (b.s - d.s) / max(d.h / 2, 0.5)  # -1..1 across the disc
    bulge = (0.8 + d.bulge) * np.clip(1 - u**2, 0, 1)
    disc = (np.abs(b.s - d.s) <= d.h / 2 + pad) & superellipse(
        b.v + depth / 2, b.x, depth / 2 + bulge, width / 2 + bulge
    )
    tissue = T.CORTEX if d.fused and d.h < 1.0 else T.ANNULUS
    paint(labels, b, disc, tissue)
    sp.masks[f"disc:{d.name}"] = Mask.from_block(b, disc & (np.abs(b.s - d.s) <= d.h / 2))
    if d.fused:
        return
    scale = 1.0 - 0.35 * d.degen
    nuc = (
        (b.s - d.s) ** 2 / (0.36 * d.h * scale) ** 2
        + (b.v + 0.55 * depth) ** 2 / (0.3 * depth * scale) ** 2
        + b.x**2 / (0.3 * width * scale) ** 2
    ) <= 1
    paint(labels, b, nuc, T.NUCLEUS_DEGEN if d.degen >= 0.45 else T.NUCLEUS)


def paint_vertebra(sp: Spine, fr: Frame, labels: np.ndarray, v: Vertebra, i: int) -> None:
    """Body and posterior elements as bone (atlas, dens and sacrum drawn as such), sacral foramina."""
    vox = sp.grid.voxel
    cd, cw = v.canal_ap, v.canal_w
    reach = max(v.spinous + cd + 12, 45.0)
    lat = 60.0 if v.sacral and v.name in ("S1", "S2") else cw / 2 + 32
    b = fr.block((v.s - v.h / 2 - 16, v.s + v.h / 2 + 16), (-v.depth - 4, reach), (-lat, lat))
    if b is None:
        return
    u = b.s - v.s  # + caudal
    waist = 1 - 0.05 * np.clip(1 - (2 * u / v.h) ** 2, 0, 1)
    body = (np.abs(u) <= v.h / 2) & superellipse(b.v + v.depth / 2, b.x, v.depth / 2 * waist, v.width / 2 * waist)
    if v.name == "C1":  # atlas: anterior arch instead of a body
        body = (np.abs(u) <= 5) & superellipse(b.v + v.depth + 2, b.x, 3.5, 9.0)
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
    paint_bone(labels, b, body | post, vox)
    sp.masks[f"post:{v.name}"] = Mask.from_block(b, post)
    if v.sacral and v.name != "S5":  # anterior sacral foramina with their roots
        fo = (
            (np.abs(u - v.h / 2) < 4.5)
            & (np.abs(np.abs(b.x) - (cw / 2 + 9)) < 4.5)
            & (b.v > -v.depth * 0.6)
            & (b.v < 0)
        )
        paint(labels, b, fo, T.FAT)
        paint(labels, b, fo & (np.abs(u - v.h / 2) < 2) & (np.abs(np.abs(b.x) - (cw / 2 + 9)) < 2), T.NERVE)


def paint_facets(sp: Spine, fr: Frame, labels: np.ndarray, d: Disc) -> None:
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
    paint(labels, b, joint & bone, T.CARTILAGE)
