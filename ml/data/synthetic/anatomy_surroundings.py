"""The body around the spine in the label volume: the outline with subcutaneous fat, the
paraspinal muscles, and per region the abdomen (psoas, aorta and IVC), the neck (airway,
carotids, brain and medulla above C1) or the chest (mediastinum, heart, aorta, posterior ribs).

``anatomy.build_labels`` paints the outline first (the spinal column is painted over it) and the
organs and vessels last, only where the body is still soft tissue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ml.data.synthetic.anatomy_column import paint, paint_bone
from ml.data.synthetic.geometry import Frame
from ml.data.synthetic.tissues import T

if TYPE_CHECKING:
    from ml.data.synthetic.anatomy import Spine


def paint_soft_tissue(sp: Spine, fr: Frame, labels: np.ndarray) -> None:
    """Body outline with subcutaneous fat, the region's default interior and the paraspinal muscles."""
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
    paint(labels, b, inside, T.FAT)
    fat = sp.back_fat
    core = (rel_back + fat <= xq_back) & (b.v - 0.5 * fat >= front + xq_front) & (np.abs(b.x) <= half_w - fat)
    default = {"abdomen": T.VISCERA, "neck": T.MUSCLE, "chest": T.LUNG}[spec.anterior]
    paint(labels, b, core, default)
    # paraspinal muscles: multifidus + erector spinae as a rounded mass each side, and in
    # the abdomen psoas / quadratus lumborum lateral to the bodies
    xm = {"abdomen": 78.0, "neck": 50.0, "chest": 75.0}[spec.anterior]
    v_top = v_back - fat  # (1,nz,ny)
    vm = 0.5 * v_top
    rv = 0.5 * (v_top + 0.3 * d0)
    ell = ((b.v - vm) / rv) ** 2 + ((np.abs(b.x) - 0.42 * xm) / (0.62 * xm)) ** 2 <= 1
    near = (b.v > -0.3 * d0) & (b.v < cd)
    musc = core & (ell | (near & (np.abs(b.x) < xm * 0.9)))
    paint(labels, b, musc, T.MUSCLE)
    # thin intermuscular fat plane between multifidus and longissimus
    band = (b.v > cd + 8) & (b.v < v_top - 4)
    plane = musc & (np.abs(np.abs(b.x) - 28.0 - 0.15 * b.v) < 0.9) & band
    paint(labels, b, plane, T.FAT)


def paint_extras(sp: Spine, fr: Frame, labels: np.ndarray) -> None:
    """The region's organs and vessels in front of the spine (and the ribs in the chest)."""
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
        paint(labels, b, psoas & body, T.MUSCLE)
        paint(labels, b, (aorta | ivc) & body, T.VESSEL)
    elif spec.anterior == "neck":
        air = ((((b.v + depth + 24) / 8.0) ** 2 + (b.x / 10.0) ** 2) <= 1) & (b.s > sp.vert("C2").s)
        carotid = (b.v + depth + 14) ** 2 + (np.abs(b.x) - 24) ** 2 <= 4.0**2
        paint(labels, b, air & body, T.AIR)
        paint(labels, b, carotid & body, T.VESSEL)
        top = sp.vert("C1").s - 6
        bb = fr.block((float(fr.s_map.min()), top), (-60.0, 60.0), (-70.0, 70.0))
        if bb is not None:
            inside = np.isin(labels[bb.sl], (T.MUSCLE, T.FAT, T.CSF, T.CORD))
            brain = inside & (bb.v > -25) & (bb.v < 42) & (bb.s < top)
            paint(labels, bb, brain, T.BRAIN)
            cistern = brain & (bb.v > 2) & (bb.v < 18) & (np.abs(bb.x) < 14)
            paint(labels, bb, cistern, T.CSF)
            medulla = (bb.v - 7) ** 2 / 25 + bb.x**2 / 49 <= 1
            paint(labels, bb, medulla & brain, T.CORD)
            occ = (np.abs(bb.v - 42 + 0.4 * (top - bb.s)) < 3.5) & (np.abs(bb.x) < 60) & inside
            paint(labels, bb, occ, T.CORTEX)
    else:  # chest
        aorta = (b.v + depth + 4) ** 2 + (b.x - 22) ** 2 <= 11.0**2
        s_t8 = sp.vert("T8").s
        heart = ((b.s - s_t8) / 70.0) ** 2 + ((b.v + depth + 80) / 50.0) ** 2 + ((b.x - 15) / 60.0) ** 2 <= 1
        mediast = (np.abs(b.x) < 28) & body
        paint(labels, b, mediast, T.FAT)
        paint(labels, b, heart & body, T.MUSCLE)
        paint(
            labels,
            b,
            heart
            & body
            & (((b.s - s_t8) / 45.0) ** 2 + ((b.v + depth + 80) / 30.0) ** 2 + ((b.x - 15) / 38.0) ** 2 <= 1),
            T.VESSEL,
        )
        paint(labels, b, aorta & body, T.VESSEL)
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
        paint_bone(labels, b, np.broadcast_to(rib, b.shape) & ok, sp.grid.voxel)
