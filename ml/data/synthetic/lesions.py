"""Paint focal pathology into the label volume and record each finding's voxels.

Shape changes (height loss, wedge, slip, narrowing, lipomatosis) were already applied by
``anatomy`` through ``AnatomyMods``; here we add tissue (edema, cysts, tumours, disc
fragments, fracture lines, pars clefts) and store a ``Mask`` per finding, from which
ground-truth key slices and boxes are derived. The mask is what a radiologist would box.
"""

from __future__ import annotations

import numpy as np

from ml.data.synthetic.anatomy import Spine
from ml.data.synthetic.findings import Finding
from ml.data.synthetic.geometry import Block, Mask
from ml.data.synthetic.tissues import T

_SOFT = (T.FAT, T.CSF, T.NERVE, T.DURA, T.LIGAMENT)
_SEV = {"mild": 0.35, "moderate": 0.65, "severe": 1.0}
_PLACEMENT_TRIES = 8  # centres drawn for a round lesion before settling for the least occupied


class PlacementError(RuntimeError):
    """A finding could not be placed in this anatomy (the study is re-drawn from a derived seed)."""


def _block(sp: Spine, s: tuple[float, float], v: tuple[float, float], x: tuple[float, float]) -> Block:
    assert sp.frame is not None
    b = sp.frame.block(s, v, x)
    if b is None:
        raise ValueError(f"empty block s={s} v={v} x={x}")
    return b


def _ellipsoid(b: Block, s0: float, v0: float, x0: float, rs: float, rv: float, rx: float) -> np.ndarray:
    return ((b.s - s0) / rs) ** 2 + ((b.v - v0) / rv) ** 2 + ((b.x - x0) / rx) ** 2 <= 1


def _put(labels: np.ndarray, b: Block, m: np.ndarray, tissue: T, where: tuple[T, ...] | None = None) -> np.ndarray:
    """Paint tissue on m (optionally only over tissues ``where``); returns the painted mask."""
    sub = labels[b.sl]
    m = np.broadcast_to(m, sub.shape)
    if where is not None:
        m = m & np.isin(sub, where)
    sub[m] = tissue
    return m


def _sparse(rng: np.random.Generator, m: np.ndarray, frac: float) -> np.ndarray:
    """Keep a random fraction of a mask: a faint (partial-volume) version of a lesion."""
    return m & (rng.random(m.shape) < frac)


def _xsign(side: str | None) -> float:
    return {"left": 1.0, "right": -1.0}.get(side or "", 0.0)


def _mask_in_s(sp: Spine, mk: Mask, s0: float, s1: float) -> Mask:
    assert sp.frame is not None
    s = sp.frame.s_map[mk.sl[1], mk.sl[2]][None]
    return Mask(mk.sl, mk.m & (s >= s0) & (s <= s1))


def paint_findings(sp: Spine, labels: np.ndarray, findings: list[Finding], rng: np.random.Generator) -> None:
    """Paint every finding in place and set ``finding.mask``."""
    for f in findings:
        fn = _PAINTERS[f.condition]
        f.mask = fn(sp, labels, f, rng)
        if f.mask is None or f.mask.voxel_count() == 0:
            raise PlacementError(f"finding {f.condition} at {f.level} painted no voxels")


def _disc_of(sp: Spine, level: str):
    return sp.disc(level)


def _canal_stenosis(sp, labels, f, rng):
    d = _disc_of(sp, f.level)
    return _mask_in_s(sp, sp.masks["canal"], d.s - 7, d.s + 7)


def _foraminal(sp, labels, f, rng):
    d = _disc_of(sp, f.level)
    up = sp.vert(d.upper)
    sgn = _xsign(f.side)
    cw = up.canal_w
    k = _SEV[f.severity]
    # disc-osteophyte complex bulging into the foramen from below-anteriorly
    b = _block(sp, (d.s0 - 16, d.s1 + 4), (-6.0, up.canal_ap + 4), (sgn * cw / 2 - 14, sgn * cw / 2 + 14))
    lx = sgn * b.x - cw / 2
    osteo = _ellipsoid(b, d.s - 1, 1.0, 0.0, 5 + 3 * k, 3 + 4 * k, 1e9) & (lx > -1) & (lx < 11)
    _put(labels, b, osteo, T.ANNULUS, (T.FAT, T.NERVE))
    return sp.masks[f"foramen:{f.level}:{f.side}"].union(Mask.from_block(b, osteo & (lx > 0)))


def _subarticular(sp, labels, f, rng):
    d = _disc_of(sp, f.level)
    up = sp.vert(d.upper)
    sgn = _xsign(f.side)
    cw, cd = up.canal_w, up.canal_ap
    k = _SEV[f.severity]
    b = _block(sp, (d.s - 10, d.s + 10), (-1.0, cd + 3), (-cw / 2 - 2, cw / 2 + 2))
    lx = sgn * b.x  # towards the side
    # facet / ligamentum flavum hypertrophy filling the lateral recess
    recess = (np.abs(b.s - d.s) < 7) & (lx > cw / 2 - 3 - 6 * k) & (b.v > cd * (0.55 - 0.35 * k)) & (b.v < cd + 1)
    painted = _put(labels, b, recess, T.LIGAMENT, _SOFT)
    region = (np.abs(b.s - d.s) < 7) & (lx > cw / 6) & (b.v > -0.5) & (b.v < cd + 1)
    return Mask.from_block(b, region & (painted | np.isin(labels[b.sl], _SOFT)))


def _herniation(sp, labels, f, rng):
    d = _disc_of(sp, f.level)
    up = sp.vert(d.upper)
    sz = float(f.detail.get("size", 0.6))
    typ = f.detail.get("type", "protrusion")
    zone = f.detail.get("zone", "paracentral")
    sgn = _xsign(f.side)
    cw = up.canal_w
    x0 = 0.0 if f.side == "central" else sgn * (cw * 0.28 if zone == "paracentral" else cw / 2 + 4)
    rv = 2.0 + 5.0 * sz
    rx = 4.0 + 5.0 * sz
    rs = max(d.h / 2 + 0.5, 2.5)
    s0 = d.s
    if typ == "extrusion":
        mig = f.detail.get("migration", "none")
        shift = {"cranial": -1.0, "caudal": 1.0}.get(mig, 0.0) * (4 + 5 * sz)
        rs = rs + 3 + 4 * sz
        s0 = d.s + shift
    # a small foraminal herniation can fall entirely on bone/muscle where the foramen is narrow
    # (L5-S1 next to the sacral ala): then it is placed at the paracentral position instead
    for xc in (x0, sgn * cw * 0.28):
        b = _block(sp, (s0 - rs - 2, s0 + rs + 2), (-8.0, rv + 4), (xc - rx - 2, xc + rx + 2))
        blob = _ellipsoid(b, s0, 0.0, xc, rs, rv, rx) & (b.v > -3.0)
        target = blob & (b.v > -0.5) & np.isin(labels[b.sl], (*_SOFT, T.ANNULUS, T.CORD))
        if target.any():
            break
    # the base merges with the posterior annulus; the dome displaces canal contents
    painted = _put(labels, b, target, T.DISC_FRAGMENT)
    _put(labels, b, blob & (b.v <= -0.5), T.ANNULUS, (*_SOFT,))
    return Mask.from_block(b, painted)


def _height_loss(sp, labels, f, rng):
    return sp.masks[f"disc:{f.level}"]


def _endplate(sp, labels, f, rng):
    d = _disc_of(sp, f.level)
    modic = f.detail.get("modic", 1)
    band = 4.0 + 6.0 * _SEV[f.severity]
    up, lo = sp.vert(d.upper), sp.vert(d.lower)
    b = _block(
        sp,
        (d.s0 - band - 2, d.s1 + band + 2),
        (-max(up.depth, lo.depth) - 4, 2.0),
        (-lo.width / 2 - 4, lo.width / 2 + 4),
    )
    near = ((b.s > d.s0 - band) & (b.s < d.s0)) | ((b.s > d.s1) & (b.s < d.s1 + band))
    # patchy: denser near the endplate, anterior-weighted
    dist = np.minimum(np.abs(b.s - d.s0), np.abs(b.s - d.s1))
    patch = rng.random(b.shape) < np.clip(1.2 - dist / band, 0, 1)
    tissue = T.EDEMA if modic == 1 else T.FAT_MARROW
    painted = _put(labels, b, near & patch, tissue, (T.MARROW,))
    if f.label == -1:
        painted = _put(labels, b, _sparse(rng, painted, 0.5), T.MARROW)
    return Mask.from_block(b, near & np.isin(labels[b.sl], (tissue, T.MARROW)) & (dist < band))


def _synovial(sp, labels, f, rng):
    d = _disc_of(sp, f.level)
    up = sp.vert(d.upper)
    sgn = _xsign(f.side) or 1.0
    r = 3.5 + 3.5 * _SEV[f.severity]
    cd, cw = up.canal_ap, up.canal_w
    c_s, c_v, c_x = d.s - 1, cd * 0.75, sgn * (cw / 2 - 1)
    b = _block(sp, (c_s - r - 2, c_s + r + 2), (c_v - r - 2, c_v + r + 2), (c_x - r - 2, c_x + r + 2))
    outer = _ellipsoid(b, c_s, c_v, c_x, r + 1.0, r + 1.0, r + 1.0)
    inner = _ellipsoid(b, c_s, c_v, c_x, r, r, r)
    keep = (*_SOFT, T.MUSCLE, T.CARTILAGE, T.MARROW, T.CORTEX)
    _put(labels, b, outer & ~inner, T.LIGAMENT, keep)
    painted = _put(labels, b, inner, T.FLUID, keep)
    return Mask.from_block(b, painted | (outer & ~inner))


def _listhesis(sp, labels, f, rng):
    d = _disc_of(sp, f.level)
    up, lo = sp.vert(d.upper), sp.vert(d.lower)
    b = _block(sp, (d.s0 - 8, d.s1 + 8), (-max(up.depth, lo.depth) - 10, 4.0), (-8.0, 8.0))
    m = np.isin(labels[b.sl], (T.ANNULUS, T.NUCLEUS, T.NUCLEUS_DEGEN, T.CORTEX, T.MARROW))
    return Mask.from_block(b, m)


def _pars(sp, labels, f, rng):
    v = sp.vert(f.level)
    cd, cw = v.canal_ap, v.canal_w
    sides = ("left", "right") if f.side == "bilateral" else (f.side,)
    total: Mask | None = None
    for side in sides:
        sgn = _xsign(side)
        b = _block(
            sp,
            (v.s - v.h / 2, v.s + v.h / 2 + 12),
            (cd * 0.3, cd + 10),
            sorted((sgn * (cw / 2 - 3), sgn * (cw / 2 + 12))),
        )
        u = b.s - v.s
        # oblique cleft through the isthmus between the articular processes
        t = (u - 0.3 * v.h) + 0.6 * (b.v - cd * 0.8)
        half = max(1.0, 0.6 * sp.grid.voxel) * (1.0 if f.label == 1 else 0.6)
        lateral = (sgn * b.x > cw / 2 - 3) & (sgn * b.x < cw / 2 + 10)
        # a thin isthmus on a coarse grid may fall between the cleft's voxel planes: widen the
        # cleft (up to ~3 voxels) until it crosses bone, rather than lose the finding
        for _ in range(4):
            painted = _put(labels, b, (np.abs(t) < half) & lateral, T.FLUID, (T.CORTEX, T.MARROW, T.CARTILAGE))
            if painted.any():
                break
            half += 0.5 * sp.grid.voxel
        mk = Mask.from_block(b, painted)
        total = mk if total is None else total.union(mk)
    return total


def _body_mask(sp: Spine, name: str) -> Mask:
    return sp.masks[f"body:{name}"]


def _fracture(sp, labels, f, rng):
    v = sp.vert(f.level)
    b = _block(sp, (v.s - v.h / 2 - 1, v.s + v.h / 2 + 1), (-v.depth - 3, 1.0), (-v.width / 2 - 2, v.width / 2 + 2))
    u = b.s - v.s
    k = _SEV[f.severity]
    line = np.abs(u - (-v.h / 2 + 3 + 2 * k)) < 0.9
    _put(labels, b, line, T.FRACTURE_LINE, (T.MARROW, T.EDEMA))
    return _body_mask(sp, f.level)


def _edema(sp, labels, f, rng):
    v = sp.vert(f.level)
    b = _block(sp, (v.s - v.h / 2 - 1, v.s + v.h / 2 + 1), (-v.depth - 3, 1.0), (-v.width / 2 - 2, v.width / 2 + 2))
    k = _SEV[f.severity]
    if f.detail.get("cause") == "fracture":
        reg = (b.s - v.s) < (-v.h / 2 + v.h * (0.45 + 0.4 * k))
    else:
        reg = _ellipsoid(
            b,
            v.s + rng.uniform(-0.15, 0.15) * v.h,
            -v.depth * 0.5,
            rng.uniform(-5, 5),
            v.h * (0.2 + 0.2 * k),
            v.depth * (0.25 + 0.15 * k),
            v.width * (0.2 + 0.15 * k),
        )
    patch = rng.random(b.shape) < (0.45 if f.label == -1 else 0.92)
    painted = _put(labels, b, reg & patch, T.EDEMA, (T.MARROW,))
    return Mask.from_block(b, reg & (painted | np.isin(labels[b.sl], (T.EDEMA, T.FRACTURE_LINE))))


def _round_lesion(sp, labels, f, rng, tissue: T, r: float, where: tuple[T, ...]):
    """A round marrow lesion in the vertebral body (or a pedicle).

    The centre is drawn inside the body; a lesion painted earlier in the same body (a
    hemangioma, then a metastasis) has already replaced the marrow there, and a second lesion
    drawn on top of it would paint nothing, or a sliver. So up to ``_PLACEMENT_TRIES`` centres are
    drawn and the first one whose ball is mostly still paintable (``where``) is used, else the
    one with the most paintable voxels; a pedicle that is already taken falls back to the body.
    """
    v = sp.vert(f.level)
    site = f.detail.get("site", "body")
    centres: list[tuple[tuple[float, float, float], float]] = []
    if site == "pedicle":
        sgn = _xsign(f.detail.get("side")) or 1.0
        centres.append(((v.s - 0.18 * v.h, v.canal_ap * 0.3, sgn * (v.canal_w / 2 + 3.5)), min(r, 6.0)))
    best: tuple[int, Block, np.ndarray] | None = None
    for attempt in range(_PLACEMENT_TRIES + len(centres)):
        if attempt < len(centres):
            c, rr = centres[attempt]
        else:
            c = (
                v.s + rng.uniform(-0.2, 0.2) * v.h,
                -v.depth * rng.uniform(0.35, 0.6),
                rng.uniform(-0.2, 0.2) * v.width,
            )
            rr = r
        rs = min(rr, v.h / 2 - 1.5)
        b = _block(sp, (c[0] - rs - 2, c[0] + rs + 2), (c[1] - rr - 2, c[1] + rr + 2), (c[2] - rr - 2, c[2] + rr + 2))
        blob = _ellipsoid(b, c[0], c[1], c[2], rs, rr, rr)
        free = blob & np.isin(labels[b.sl], where)
        n_free = int(free.sum())
        if best is None or n_free > best[0]:
            best = (n_free, b, blob)
        if n_free >= 0.5 * max(int(blob.sum()), 1):
            break
    assert best is not None
    _, b, blob = best
    painted = _put(labels, b, blob, tissue, where)
    return Mask.from_block(b, painted)


def _hemangioma(sp, labels, f, rng):
    if f.detail.get("focal_fat"):
        return _round_lesion(sp, labels, f, rng, T.FAT_MARROW, 4.0, (T.MARROW,))
    r = 3.5 + 6.0 * float(f.detail.get("size", 0.6))
    return _round_lesion(sp, labels, f, rng, T.HEMANGIOMA, r, (T.MARROW,))


def _osseous(sp, labels, f, rng):
    r = 4.0 + 8.0 * _SEV[f.severity]
    if f.label == -1:
        r = 3.5
    return _round_lesion(sp, labels, f, rng, T.METASTASIS, r, (T.MARROW, T.CORTEX, T.EDEMA))


def _lipomatosis(sp, labels, f, rng):
    levels = f.detail.get("levels", [f.level])
    ss = [sp.disc(lv).s for lv in levels]
    return _mask_in_s(sp, sp.masks["canal"], min(ss) - 14, max(ss) + 14)


def _tarlov(sp, labels, f, rng):
    sgn = _xsign(f.side) or 1.0
    size = float(f.detail.get("size", 0.7))
    if f.level.startswith("S"):
        v = sp.vert(f.level)
        r = 4.0 + 5.0 * size
        c = (v.s - 0.2 * v.h, v.canal_ap * 0.5, sgn * v.canal_w * 0.22)
        where = (T.FAT, T.NERVE, T.CORTEX, T.MARROW, T.CSF, T.DURA)
    else:
        d = sp.disc(f.level)
        up = sp.vert(d.upper)
        r = 3.0 + 3.0 * size
        c = (d.s0 - 0.25 * up.h, up.canal_ap * 0.42, sgn * (up.canal_w / 2 + 4))
        where = (T.FAT, T.NERVE, T.MUSCLE, T.DURA)
    b = _block(sp, (c[0] - 1.4 * r - 2, c[0] + 1.4 * r + 2), (c[1] - r - 2, c[1] + r + 2), (c[2] - r - 2, c[2] + r + 2))
    cyst = _ellipsoid(b, c[0], c[1], c[2], 1.4 * r, r, r)
    painted = _put(labels, b, cyst, T.CSF, where)
    return Mask.from_block(b, painted)


def _intradural(sp, labels, f, rng):
    v = sp.vert(f.level)
    k = _SEV[f.severity]
    cd = v.canal_ap
    kind = f.detail.get("kind", "extramedullary")
    if kind == "intramedullary":
        rs, rv, rx = 8 + 8 * k, 3.5, 4.5
        c = (v.s, cd * 0.42, 0.0)
        where = (T.CORD, T.CSF, T.DURA)
    else:
        rs, rv, rx = 6 + 6 * k, 3 + 2.5 * k, 3.5 + 2.5 * k
        c = (v.s, cd * 0.5, v.canal_w * 0.12)
        where = (T.CSF, T.NERVE, T.CORD)
    b = _block(sp, (c[0] - rs - 2, c[0] + rs + 2), (c[1] - rv - 2, c[1] + rv + 2), (c[2] - rx - 2, c[2] + rx + 2))
    blob = _ellipsoid(b, *c, rs, rv, rx)
    painted = _put(labels, b, blob, T.INTRADURAL, where)
    return Mask.from_block(b, painted)


def _wedge(sp, labels, f, rng):
    return _body_mask(sp, f.level)


_PAINTERS = {
    "canal_stenosis": _canal_stenosis,
    "foraminal_narrowing": _foraminal,
    "subarticular_stenosis": _subarticular,
    "disc_herniation": _herniation,
    "disc_height_loss": _height_loss,
    "endplate_inflammation": _endplate,
    "synovial_cyst": _synovial,
    "spondylolisthesis": _listhesis,
    "pars_defect": _pars,
    "compression_deformity": _wedge,
    "acute_fracture": _fracture,
    "marrow_edema": _edema,
    "hemangioma": _hemangioma,
    "osseous_lesion": _osseous,
    "epidural_lipomatosis": _lipomatosis,
    "perineural_cyst": _tarlov,
    "intradural_lesion": _intradural,
}
