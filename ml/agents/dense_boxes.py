"""Where exactly, inside a cell: the dense head's box regressor.

Why: a stride-32 cell of a 160 mm sagittal tile is 20 mm, larger than most lesions (a disc
herniation's key-slice box is ~13 mm). Placing a box of typical size at the centre of the
firing cells leaves the centre off by about half a cell, and a 13 mm box 10 mm off its truth
has an IoU near 0. The trunk's cell features still carry *where* in the cell the lesion sits
(the receptive field is much larger than the stride), so a linear read-out of the cell gives
the offset and the size, as the regression branch of an anchor-free detector (FCOS, CenterNet)
does.

Targets, per cell under a present finding's key-slice box (the cells the box head is trained
positive on) and per condition: (box centre - cell centre) / cell and log(box size / cell),
for x and y. One ridge regression per condition (closed form, a second on 2 CPU cores);
conditions with fewer than ``min_cells`` training cells keep zero offsets and their typical
size. Only training studies with the generator's ground truth contribute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ml.agents.features import StudyFeatures
from ml.conditions import CONDITION_KEYS

K = len(CONDITION_KEYS)
OFFSET_CLIP = 1.5  # |offset| in cells: a cell's features cannot say more than its neighbourhood
LOG_SIZE_CLIP = (-2.5, 1.5)  # box side from 0.08 to 4.5 cells


def box_sizes(feats: list[StudyFeatures], truths: list[dict | None], planes: tuple[str, ...]) -> np.ndarray:
    """Median true box (width, height) per plane of ``planes`` (the dense head's: sagittal, axial)
    and condition as a fraction of the preprocessed square: [P, 17, 2], 0 where no box was seen.
    Why: a stride-32 cell is ~2 cm of a spine crop, coarser than most lesions; localisation places
    a box of the typical size at the cells' centre instead of drawing the cells' outline."""
    from ml.agents.localization import truth_slices

    sizes: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for f, truth in zip(feats, truths, strict=True):
        for (si, _k, cond), item in truth_slices(f, truth).items():
            s = f.study.series[si]
            if item["label"] != 1 or s.geometry is None or s.plane not in planes:
                continue
            x0, y0, x1, y1 = s.geometry.to_preprocessed(item["box"])
            sizes.setdefault((planes.index(s.plane), CONDITION_KEYS.index(cond)), []).append(
                ((x1 - x0) / s.geometry.size, (y1 - y0) / s.geometry.size)
            )
    out = np.zeros((len(planes), K, 2), np.float32)
    for (p, j), wh in sizes.items():
        out[p, j] = np.median(np.asarray(wh), 0)
    return out


def _key_slice_views(
    feat: StudyFeatures, d: dict[str, Any], truth: dict | None
) -> Iterator[tuple[int, dict[str, Any], list[int]]]:
    """(condition index, truth item, the views showing that key slice: every tile of it) for every
    key slice in ``truth`` that one of the study's views shows. A key slice of sagittal T1 or
    STIR maps to the fused view of the same slice of the T2 reference."""
    from ml.agents.localization import truth_slices

    views = d["views"]
    if not truth or not views:
        return
    where: dict[tuple[int, int], list[int]] = {}
    for i, (_, si, k) in enumerate(views):
        where.setdefault((si, k), []).append(i)  # a sagittal slice may be cut into several tiles
    sag_ref = {si for p, si, _ in views if p == 0}
    for (si, k, cond), item in truth_slices(feat, truth).items():
        series = feat.study.series[si]
        hits = where.get((si, k))
        if hits is None and series.plane == "sagittal" and sag_ref:
            hits = where.get((next(iter(sag_ref)), k))
        if hits is not None and series.geometry is not None:
            item = {**item, "series": si}
            yield CONDITION_KEYS.index(cond), item, hits


def _in_cells(feat: StudyFeatures, d: dict[str, Any], item: dict, view: int, g: int) -> np.ndarray:
    """A truth item's key-slice box [x0, y0, x1, y1] in cells of ``view`` (unclipped)."""
    geometry = feat.study.series[item["series"]].geometry
    box = np.asarray(geometry.to_preprocessed(item["box"]), float)
    crops = d.get("crops")
    x0, y0, side = crops[view] if crops else (0, 0, geometry.size)
    return (box - [x0, y0, x0, y0]) / side * g


def truth_boxes_in_cells(
    feat: StudyFeatures, d: dict[str, Any], truth: dict | None, g: int
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(view, condition index, box [x0, y0, x1, y1] in cells of that view, unclipped) for every
    present finding's key-slice box that falls inside a view's window."""
    for j, item, hits in _key_slice_views(feat, d, truth):
        if item["label"] != 1:
            continue
        for view in hits:
            b = _in_cells(feat, d, item, view, g)
            if b[2] <= 0 or b[3] <= 0 or b[0] >= g or b[1] >= g:
                continue  # the box is outside this view's window
            yield view, j, b


def canal_box_counts(feat: StudyFeatures, d: dict[str, Any], truth: dict | None, g: int) -> np.ndarray:
    """[17, 2] per condition: the present findings' key-slice boxes that a canal tile of their
    slice shows at least in part, and those of them that one canal tile holds whole.

    Why: a canal tile is 80 mm centred on the canal. A disc herniation, a stenosis or an
    intradural lesion lies whole in one, seen at twice the spine tile's scale; a vertebral
    body's fracture, a slip over two vertebrae or a long lipomatosis runs past its edge, and a
    box placed from such a tile's cells is cut by it. The ratio over the training findings
    (``box_canal_fit``) says, per condition, which tiles may place its box."""
    from ml.agents.dense_views import canal_tile_views

    out = np.zeros((K, 2), np.int64)
    canal = canal_tile_views(d)
    if not canal:
        return out
    for j, item, hits in _key_slice_views(feat, d, truth):
        boxes = [_in_cells(feat, d, item, v, g) for v in hits if v in canal] if item["label"] == 1 else []
        if any(b[2] > 0 and b[3] > 0 and b[0] < g and b[1] < g for b in boxes):
            out[j, 0] += 1
            out[j, 1] += any(b.min() >= 0 and b.max() <= g for b in boxes)
    return out


def canal_box_fit(counts: np.ndarray) -> np.ndarray:
    """``canal_box_counts`` summed over the training studies [17, 2] -> the share held whole per
    condition [17] (0 for a condition no canal tile showed: its boxes stay on the spine tiles)."""
    return (counts[:, 1] / np.maximum(counts[:, 0], 1)).astype(np.float32)


def key_slice_negatives(feat: StudyFeatures, d: dict[str, Any], truth: dict | None) -> set[tuple[int, int]]:
    """(view, condition index) whose cells outside the condition's boxes are negatives: the views
    of a present finding's key slice, unless an uncertain finding of that condition is on it.

    Why: without them a positive study says nothing about its other cells, so the head learns to
    fire on everything that looks alike (the contralateral foramen, the next degenerated disc)
    and boxes, sides and levels follow the wrong cell. On a key slice every finding of the
    condition has its box, so the rest of the slice is known not to be that finding."""
    present: set[tuple[int, int]] = set()
    uncertain: set[tuple[int, int]] = set()
    for j, item, hits in _key_slice_views(feat, d, truth):
        (present if item["label"] == 1 else uncertain).update((v, j) for v in hits)
    return present - uncertain


def covered_cells(b: np.ndarray, g: int) -> tuple[int, int, int, int]:
    """(c0, r0, c1, r1): the cells a box [x0, y0, x1, y1] (in cells) touches on a g x g grid,
    at least one for a box that reaches the grid, none for a box wholly past its far edge (a
    lesion outside the view marks no cell); the cell targets and the box regressor's training
    cells are the same ones."""
    bx0, by0, bx1, by1 = np.clip(b, 0, g)
    c0, r0 = int(np.floor(bx0)), int(np.floor(by0))
    c1, r1 = max(int(np.ceil(bx1)), c0 + 1), max(int(np.ceil(by1)), r0 + 1)
    return c0, r0, min(c1, g), min(r1, g)


def covered_cells_many(b: np.ndarray, g: int) -> list[tuple[int, int, int, int]]:
    """``covered_cells`` of several boxes b [N, 4] (in cells) at once, the same arithmetic."""
    b = np.clip(b, 0, g)
    c0, r0 = np.floor(b[:, 0]).astype(int), np.floor(b[:, 1]).astype(int)
    c1 = np.minimum(np.maximum(np.ceil(b[:, 2]).astype(int), c0 + 1), g)
    r1 = np.minimum(np.maximum(np.ceil(b[:, 3]).astype(int), r0 + 1), g)
    return list(zip(c0.tolist(), r0.tolist(), c1.tolist(), r1.tolist(), strict=True))


def box_targets(
    feat: StudyFeatures, d: dict[str, Any], truth: dict | None, g: int
) -> list[tuple[int, int, np.ndarray]]:
    """(flat cell index in [V * g * g], condition, target [dx, dy, log w, log h] in cells) for
    every cell under a present finding's box (the cells ``dense_train.cell_targets`` marks positive)."""
    out = []
    for view, j, b in truth_boxes_in_cells(feat, d, truth, g):
        c0, r0, c1, r1 = covered_cells(b, g)
        centre = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
        size = np.log(np.maximum(np.array([b[2] - b[0], b[3] - b[1]]), 1e-3))
        for r in range(r0, r1):
            for c in range(c0, c1):
                off = centre - [c + 0.5, r + 0.5]
                out.append((view * g * g + r * g + c, j, np.concatenate([off, size])))
    return out


class BoxMoments:
    """The box regressor's training rows reduced, study by study, to what the ridge needs: over
    all rows, the sum and sum of squares per feature (for the standardisation); per condition,
    the count and the sums of x, x x^T, y and x y^T, in float64.

    Why: the rows under the training boxes (418 features each, many a study) kept for every
    study and concatenated grew with the training set and were, beside the designs, the largest
    memory of the head's training; these sums are [17, F, F] whatever the number of studies.
    The ridge on standardised inputs follows from them exactly (``fit``)."""

    def __init__(self, n_feat: int) -> None:
        self.n_feat = n_feat
        self.s1, self.s2, self.count = np.zeros(n_feat), np.zeros(n_feat), 0
        self.per: dict[int, list] = {}  # condition -> [n, sum x [F], sum x x^T [F, F], sum y [4], sum x y^T [F, 4]]

    def add(self, x: np.ndarray, conds: np.ndarray, targets: np.ndarray) -> None:
        """One study's rows x [n, F], their conditions [n] and targets [n, 4]."""
        x64, y64 = x.astype(np.float64), targets.astype(np.float64)
        self.s1 += x64.sum(0)
        self.s2 += (x64 * x64).sum(0)
        self.count += len(x64)
        for j in np.unique(conds):
            m = conds == j
            xj, yj = x64[m], y64[m]
            f = self.n_feat
            acc = self.per.setdefault(int(j), [0, np.zeros(f), np.zeros((f, f)), np.zeros(4), np.zeros((f, 4))])
            acc[0] += len(xj)
            acc[1] += xj.sum(0)
            acc[2] += xj.T @ xj
            acc[3] += yj.sum(0)
            acc[4] += xj.T @ yj

    def fit(self, alpha: float, min_cells: int = 20) -> dict[str, np.ndarray]:
        """The ridge per condition on inputs standardised over all rows (``fit_box_regressor``).
        With D = diag(std) and a condition's raw sums, the centred standardised Gram matrix is
        D^-1 (Sxx - Sx Sx^T / n) D^-1 and the cross term D^-1 (Sxy - Sx Sy^T / n)."""
        f = self.n_feat
        if self.count:
            mean = self.s1 / self.count
            std = np.sqrt(np.maximum(self.s2 / self.count - mean**2, 0)) + 1e-4
        else:
            mean, std = np.zeros(f), np.ones(f)
        w = np.zeros((K, f, 4), np.float32)
        b = np.zeros((K, 4), np.float32)
        n = np.zeros(K, np.int32)
        for j, (nj, sx, sxx, sy, sxy) in self.per.items():
            n[j] = nj
            ym = sy / nj
            b[j] = ym
            if nj < min_cells:
                continue  # too few cells to learn offsets: the mean size, no offset
            gram = (sxx - np.outer(sx, sx) / nj) / np.outer(std, std)  # [F, F]
            cross = (sxy - np.outer(sx, sy) / nj) / std[:, None]  # [F, 4]
            coef = np.linalg.solve(gram + alpha * np.eye(f), cross)  # [F, 4]
            xm = (sx / nj - mean) / std  # the condition's mean standardised input [F]
            w[j] = coef
            b[j] = ym - xm @ coef
        mean32, std32 = mean.astype(np.float32), std.astype(np.float32)
        return {"reg_w": w, "reg_b": b, "reg_mean": mean32, "reg_std": std32, "reg_n": n}


def fit_box_regressor(
    rows: list[np.ndarray], conds: list[np.ndarray], targets: list[np.ndarray], alpha: float, min_cells: int = 20
) -> dict[str, np.ndarray]:
    """Ridge per condition from cell inputs to [dx, dy, log w, log h].

    Per study: rows [n, F] (the design rows of its cells under a box), conds [n] (condition
    index), targets [n, 4] (``box_targets``). Inputs are standardised over all rows first (the
    ridge penalty then treats features alike). Returns {"reg_w": [17, F, 4], "reg_b": [17, 4],
    "reg_mean" / "reg_std": [F], "reg_n": [17] training cells}. Training adds the studies to
    ``BoxMoments`` one at a time instead of keeping their rows."""
    acc = BoxMoments(next((r.shape[1] for r in rows if r.ndim == 2), 0))
    for x, c, t in zip(rows, conds, targets, strict=True):
        if len(x):
            acc.add(x, np.asarray(c).astype(int), t)
    return acc.fit(alpha, min_cells)


def regress(a: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Per-cell box predictions [C, 17, 4] (dx, dy, log w, log h in cells) from the design x
    [C, F] at the regressor's stride; clipped to what a cell can know."""
    xs = (x - a["reg_mean"]) / a["reg_std"]  # [C, F]
    w = a["reg_w"]  # [17, F, 4]
    # one matrix product [C, F] @ [F, 17 * 4] (BLAS); numpy's einsum loops in C without BLAS
    # here and took 0.3 s of a study's 0.5 s of localisation
    out = (xs @ w.transpose(1, 0, 2).reshape(w.shape[1], -1)).reshape(len(xs), *w.shape[::2]) + a["reg_b"]
    out[..., :2] = np.clip(out[..., :2], -OFFSET_CLIP, OFFSET_CLIP)
    out[..., 2:] = np.clip(out[..., 2:], *LOG_SIZE_CLIP)
    return out


AXIAL_GUARD_MM = 10.0  # an axial view this close to a finding's centre says nothing about it


def complete_negatives(feat: StudyFeatures, d: dict[str, Any], truth: dict | None, g: int) -> np.ndarray:
    """[V, g, g, 17] bool: the cells known *not* to show a condition the study is positive for,
    because the generator's findings of that condition are complete and every one has its box.

    Sagittal views: every cell outside each finding's key-slice box projected onto every sagittal
    slice (a lesion runs over neighbouring slices at the same place in the plane), dilated by a
    cell. Axial views: every cell of a view whose plane is more than ``AXIAL_GUARD_MM`` from every
    finding of the condition. Uncertain findings guard their cells like present ones; a condition
    with a finding that has no box in this study gets no negatives.

    Why: 83 % of studies have a disc herniation, so nearly every training study is positive and,
    with negatives only from negative studies, the head never learns that *this* study's other
    discs are not herniated: it fired on the most degenerated disc and named the wrong level."""
    from ml.agents.localization import truth_slices

    views = d["views"]
    out = np.zeros((len(views), g, g, K), bool)
    if not truth or not len(views):
        return out
    crops = d.get("crops")
    guard = np.zeros_like(out)
    centres: dict[int, list[np.ndarray | None]] = {}  # per condition its boxes' centres in patient mm
    boxes = truth_slices(feat, truth)
    placed = {(cond, str(item["level"]), str(item["side"])) for (_, _, cond), item in boxes.items()}
    unplaced = {  # a finding without a box here: where it is, is unknown
        CONDITION_KEYS.index(f["condition"])
        for f in truth.get("findings", [])
        if f["label"] != 0 and (f["condition"], str(f.get("level") or ""), str(f.get("side"))) not in placed
    }
    for (si, k, cond), item in boxes.items():
        j = CONDITION_KEYS.index(cond)
        s = feat.study.series[si]
        if s.geometry is None:
            unplaced.add(j)
            continue
        b = item["box"]
        p = s.geometry.pixel_to_patient(k, (b[0] + b[2]) / 2, (b[1] + b[3]) / 2)
        centres.setdefault(j, []).append(None if p is None else np.asarray(p, float))
        if s.plane != "sagittal":
            continue
        box = np.asarray(s.geometry.to_preprocessed(b), float)
        sag = [u for u, (plane, _, _) in enumerate(views) if plane == 0]
        if not sag:
            continue
        # every sagittal view's window at once: [U, 3] (x0, y0, side) -> the box in cells [U, 4]
        win = np.asarray([crops[u] if crops else (0, 0, s.geometry.size) for u in sag], float)
        cells = covered_cells_many((box - win[:, [0, 1, 0, 1]]) / win[:, 2:] * g, g)
        for u, (c0, r0, c1, r1) in zip(sag, cells, strict=True):
            guard[u, max(r0 - 1, 0) : r1 + 1, max(c0 - 1, 0) : c1 + 1, j] = True
    for u, (plane, si, k) in enumerate(views):
        if plane != 1:
            continue
        geo = feat.study.series[si].geometry
        known = geo is not None and geo.positions is not None and geo.orientations is not None
        for j, pts in centres.items():
            if not known or any(q is None for q in pts):
                guard[u, :, :, j] = True  # no plane or no centre: the view may pass through the finding
                continue
            iop = np.asarray(geo.orientations[k], float)
            normal, origin = np.cross(iop[:3], iop[3:]), np.asarray(geo.positions[k], float)
            if min(abs(float((q - origin) @ normal)) for q in pts) < AXIAL_GUARD_MM:
                guard[u, :, :, j] = True
    for j in map(int, np.flatnonzero(feat.study.labels == 1)):
        if j not in unplaced and j in centres:
            out[..., j] = ~guard[..., j]
    return out
