"""The views the dense diagnosis head looks at (``ml/agents/dense.py``): sagittal T1/T2/STIR of
one slice plan fused as the 3 channels of an image, axial slices (all, or the middle one of each
per-disc block), each optionally cut to a window around the spine found in the image itself.

Why a module of its own: finding the spine (``spine_columns``: the CSF column of a sagittal
fluid map, followed by a robust curve) and the patient-geometry mapping between sagittal and
axial pixels are image processing with their own tests, independent of the head that scores
the cells.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ml.data.types import SeriesData, StudyData

if TYPE_CHECKING:  # the config's module imports this one's user lazily: types only here
    from ml.agents.diagnosis import DiagnosisConfig

AXIAL_ANTERIOR_MM = 12.0  # the axial window's centre lies this far in front of the canal


_FATSAT = re.compile(r"stir|tirm|fat.?sat|\bfs\b|_fs_|spair|dixon", re.IGNORECASE)


def _sagittal_channels(study: StudyData) -> tuple[SeriesData | None, list[SeriesData]]:
    """(reference series, [T1, T2, fat-suppressed fluid-sensitive]) of the sagittal series.

    STIR is classed "T2" (fluid-bright), so the two T2-class series are told apart by their
    description (STIR / TIRM / fat-sat names of the vendors); a missing one repeats the
    reference, which is the plain T2 when there is one."""
    sag = [s for s in study.series if s.plane == "sagittal" and len(s.pixels)]
    t1 = [s for s in sag if s.sequence_class == "T1"]
    fluid = [s for s in sag if s.sequence_class != "T1"]
    fs = [s for s in fluid if _FATSAT.search(s.description or "")]
    t2 = [s for s in fluid if s not in fs]
    if not (t2 or fs or t1):
        return None, []
    ref = (t2 or fs or t1)[0]
    return ref, [(t1 or [ref])[0], (t2 or [ref])[0], (fs or [ref])[0]]


def _fit(img: np.ndarray, size: int, window: tuple[int, int, int] | None = None) -> np.ndarray:
    """One slice -> [size, size]: the square ``window`` (x0, y0, side in the slice's pixels; zero
    outside the image) or the whole slice, resized bilinearly."""
    a = np.ascontiguousarray(img, np.float32)
    if window is not None:
        x0, y0, side = window
        h, w = a.shape
        out = np.zeros((side, side), np.float32)
        ys, xs = max(y0, 0), max(x0, 0)
        ye, xe = min(y0 + side, h), min(x0 + side, w)
        if ye > ys and xe > xs:
            out[ys - y0 : ye - y0, xs - x0 : xe - x0] = a[ys:ye, xs:xe]
        a = out
    t = torch.from_numpy(a)[None, None]
    if t.shape[-1] != size or t.shape[-2] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t[0, 0].numpy()


def _pre_mm(series: SeriesData) -> float | None:
    """mm per preprocessed pixel (the padded square of ``len(pixels[0])`` px), or None."""
    g = series.geometry
    if g is None or g.spacing is None:
        return None
    return g.side * min(g.spacing) / series.pixels.shape[-1]


def spine_columns(ref: SeriesData, chans: list[SeriesData]) -> np.ndarray:
    """Per row of the sagittal reference's preprocessed slices, the column of the CSF column (the
    spinal canal): the brightest long vertical structure of a fluid map of the central slices.

    Why fluid maps: on T2 the subcutaneous fat is as bright as CSF; STIR suppresses fat, and T2
    minus T1 cancels it (fat is bright on both). Smoothing along rows over ~1/6 of the image
    favours the long canal over discs, edema or cysts; a robust quadratic through the strongest
    rows carries the line across the sacrum where the canal ends. Image-only: works at inference."""
    from scipy.ndimage import gaussian_filter, gaussian_filter1d

    t1, t2, fs = chans
    n = len(ref.pixels)
    ks = range(max(0, n // 2 - 1), min(n, n // 2 + 2))

    def at(s: SeriesData, k: int) -> np.ndarray:
        return np.asarray(s.pixels[round(k / max(n - 1, 1) * (len(s.pixels) - 1))], np.float32)

    if fs is not t2:
        fluid = np.mean([at(fs, k) for k in ks], 0)
    elif t1 is not t2:
        fluid = np.mean([at(t2, k) - at(t1, k) for k in ks], 0)
    else:
        fluid = np.mean([at(t2, k) for k in ks], 0)
    h, w = fluid.shape
    sm = gaussian_filter(fluid, (h / 24, 1.0))
    ridge = sm - gaussian_filter1d(sm, max(2.0, w / 40), axis=1)  # narrow bright lines, not wide bands or edges
    margin = max(1, w // 20)
    ridge[:, :margin] = ridge[:, -margin:] = -np.inf
    cols = ridge.argmax(1).astype(float)
    strength = ridge.max(1)
    rows = np.arange(h, dtype=float)
    use = strength >= np.median(strength)
    fit = np.full(h, float(np.median(cols[use])))
    for _ in range(4):  # a quadratic through the strong rows, dropping outliers (sacrum, skin)
        if use.sum() < 8:
            break
        coef = np.polyfit(rows[use], cols[use], 2)
        fit = np.polyval(coef, rows)
        res = np.abs(cols - fit)
        use = use & (res <= max(w / 40, 2.5 * float(np.median(res[use]))))
    if use.any():  # beyond the rows that carried the fit the line is held, not extrapolated
        lo, hi = np.flatnonzero(use)[[0, -1]]
        fit[:lo], fit[hi + 1 :] = fit[lo], fit[hi]
    return np.clip(fit, 0, w - 1).astype(np.float32)


def canal_tiles(cols: np.ndarray, p: int, mm: float | None, side_mm: float) -> list[tuple[int, int, int]]:
    """Square windows (x0, y0, side) of ``side_mm`` stepping down the canal line ``cols`` (one
    column per row of a p-px preprocessed slice), each centred on the canal at its rows, every
    row covered and neighbours overlapping by at least a fifth of a window.

    Why (``dense_canal_mm``): on the 160 mm spine tile the canal is ~12 px wide and an
    intradural lesion one stride-16 cell; the same slice at twice the scale gives the trunk the
    canal's contents (CSF, conus, roots, a grey oval among them) at the scale its filters resolve."""
    side = min(p, round(side_mm / mm) if mm else round(0.3 * p))
    return windows_down(cols, p, side, int(np.ceil((p - side) / (0.8 * side))) + 1 if side < p else 1)


def canal_tile_views(d: dict) -> set[int]:
    """The canal tiles among a study's views ``d`` (``dense_cells``): the sagittal views whose
    window is smaller than the spine tiles' (none without crops)."""
    crops, views = d.get("crops"), d["views"]
    sag = [i for i, (plane, _, _) in enumerate(views) if plane == 0]
    if not crops or not sag:
        return set()
    spine = max(crops[i][2] for i in sag)
    return {i for i in sag if crops[i][2] < spine}


def windows_down(cols: np.ndarray, p: int, side: int, k: int) -> list[tuple[int, int, int]]:
    """k square windows (x0, y0, side) evenly spaced from the first row to the last of a p-px
    slice, each centred on the median of the canal line ``cols`` over its own rows (the spine
    tiles and the canal tiles)."""
    out = []
    for y0 in np.linspace(0, p - side, k).round().astype(int):
        cx = float(np.median(cols[y0 : y0 + side]))
        out.append((round(cx - side / 2), int(y0), int(side)))
    return out


def _to_pixel(series: SeriesData, index: int, p: np.ndarray) -> tuple[float, float] | None:
    """Patient mm -> (column, row) in the preprocessed slice ``index`` of ``series`` (projected
    onto its plane), or None without geometry."""
    g = series.geometry
    if g is None or g.positions is None or g.orientations is None or g.spacing is None:
        return None
    d = np.asarray(p, float) - np.asarray(g.positions[index], float)
    iop = g.orientations[index]
    dy, dx = (float(v) for v in g.spacing)
    col = d @ np.asarray(iop[:3], float) / dx + 0.5
    row = d @ np.asarray(iop[3:], float) / dy + 0.5
    x0, y0, _, _ = g.to_preprocessed([col, row, col, row])
    return x0, y0


def _from_pixel(series: SeriesData, index: int, x: float, y: float) -> np.ndarray | None:
    g = series.geometry
    if g is None or g.positions is None:
        return None
    ox, oy, _, _ = g.to_original([x, y, x, y])
    # to_original clips to the image; the canal is inside it
    p = g.pixel_to_patient(index, ox, oy)
    return None if p is None else np.asarray(p, float)


def axial_blocks(series: SeriesData) -> list[list[int]]:
    """Sorted slice indices of an axial series in blocks: a new block starts where the tilt
    changes or the gap between slices exceeds 1.8x the median gap (stacks planned per disc)."""
    n = len(series.pixels)
    g = series.geometry
    if n < 2 or g is None or g.positions is None or g.orientations is None:
        return [list(range(n))]
    pos = np.asarray(g.positions, float)
    ori = np.asarray(g.orientations, float)
    gaps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    med = float(np.median(gaps)) or 1.0
    blocks, cur = [], [0]
    for k in range(1, n):
        if gaps[k - 1] > 1.8 * med or np.abs(ori[k] - ori[k - 1]).max() > 1e-3:
            blocks.append(cur)
            cur = []
        cur.append(k)
    blocks.append(cur)
    return blocks


def axial_indices(series: SeriesData, cfg: DiagnosisConfig) -> list[int]:
    """The axial slices the head sees: with ``dense_axial: disc`` the middle slice of each block of
    a per-disc stack (one slice per disc level; a contiguous stack falls back to ``all``), else up
    to ``dense_max_axial`` evenly spaced."""
    n = len(series.pixels)
    if cfg.dense_axial == "disc":
        blocks = axial_blocks(series)
        if len(blocks) >= 2:
            return [b[len(b) // 2] for b in blocks]
    return [int(k) for k in np.unique(np.linspace(0, n - 1, min(n, cfg.dense_max_axial)).round().astype(int))]


def study_views(
    study: StudyData, cfg: DiagnosisConfig, crops: list[tuple[int, int, int]] | None = None
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The study's views [V, 3, size, size] in [0, 1] and, per view, (plane index, series
    position, slice index) of the slice it shows (for sagittal: of the T2 reference series).
    With ``dense_crop`` each view is a window around the spine; ``crops`` (if given) receives each
    view's window (x0, y0, side) in its series' preprocessed pixels. With ``dense_canal_mm`` the
    central sagittal slices are cut a second time, into canal tiles (``canal_tiles``)."""
    size = cfg.dense_size
    views: list[np.ndarray] = []
    meta: list[tuple[int, int, int]] = []
    wins: list[tuple[int, int, int]] = []

    ref, chans = _sagittal_channels(study)
    cols = spine_columns(ref, chans) if ref is not None and cfg.dense_crop else None
    if ref is not None:
        n = len(ref.pixels)
        p = ref.pixels.shape[-1]
        tiles: list[tuple[int, int, int] | None] = [None]
        if cols is not None:
            mm = _pre_mm(ref)
            side = min(p, round(cfg.dense_sag_crop_mm / mm) if mm else round(0.55 * p))
            tiles = list(windows_down(cols, p, side, int(np.ceil(p / side))))
        # (windows, central slices); Sequence: the canal tiles' windows are never None
        plan: list[tuple[Sequence[tuple[int, int, int] | None], int]] = [(tiles, cfg.dense_sag_slices)]
        if cols is not None and cfg.dense_canal_mm > 0:
            plan.append((canal_tiles(cols, p, _pre_mm(ref), cfg.dense_canal_mm), cfg.dense_canal_slices))
        for windows, slices in plan:
            m = min(slices, n)
            start = (n - m) // 2
            for k in range(start, start + m):
                rel = k / max(n - 1, 1)
                for win in windows:
                    img = [_fit(s.pixels[round(rel * (len(s.pixels) - 1))], size, win) for s in chans]
                    views.append(np.stack(img))
                    meta.append((0, study.series.index(ref), k))
                    wins.append(win or (0, 0, p))
    mid = len(ref.pixels) // 2 if ref is not None else 0
    for si, s in enumerate(study.series):
        if s.plane != "axial" or not len(s.pixels):
            continue
        p = s.pixels.shape[-1]
        mm = _pre_mm(s)
        side = min(p, round(cfg.dense_ax_crop_mm / mm) if mm else round(0.6 * p))
        for k in axial_indices(s, cfg):
            win = None
            if cfg.dense_crop:
                cx, cy = p / 2, p / 2
                g = s.geometry
                centre = _from_pixel(s, k, p / 2, p / 2) if g is not None else None
                on_sag = None
                if centre is not None and cols is not None and ref is not None:
                    on_sag = _to_pixel(ref, mid, centre)
                if on_sag is not None and cols is not None and ref is not None:
                    row = int(np.clip(round(on_sag[1]), 0, len(cols) - 1))
                    canal = _from_pixel(ref, mid, float(cols[row]) + 0.5, on_sag[1])
                    if canal is not None:  # centre between the vertebral body and the spinous process
                        canal = canal - [0.0, AXIAL_ANTERIOR_MM, 0.0]  # LPS: -y is anterior
                    back = _to_pixel(s, k, canal) if canal is not None else None
                    if back is not None and 0 <= back[0] < p and 0 <= back[1] < p:
                        cx, cy = back
                win = (round(cx - side / 2), round(cy - side / 2), int(side))
            g2 = _fit(s.pixels[k], size, win)
            views.append(np.stack([g2, g2, g2]))
            meta.append((1, si, int(k)))
            wins.append(win or (0, 0, p))
    if crops is not None:
        crops[:] = wins
    if not views:
        return np.zeros((0, 3, size, size), np.float32), []
    return np.stack(views).astype(np.float32), meta
