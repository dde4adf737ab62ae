"""Slice planning and rendering: from the label volume to noisy MR slices.

Each slice is a plane in patient space (DICOM geometry: position of the first pixel,
row and column direction cosines). Rendering samples the tissue signal with the slice's
thickness profile, multiplies a coil bias field and adds Rician noise generated at the
acquisition matrix and interpolated to the reconstruction matrix (as scanners zero-fill).

Sampling is separable and therefore cheap: a sagittal slice is a weighted sum of volume
planes followed by two small interpolation matrices; an axial slice (whose row axis is
the patient x axis, tilted only about x to follow the disc) is, row by row, a bilinear
gather in (z, y) followed by one interpolation matrix along x.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter

from ml.data.synthetic.geometry import Grid

# thickness profile: through-plane sample offsets (fraction of thickness) and weights
_PROFILE = ((-0.33, 0.25), (0.0, 0.5), (0.33, 0.25))


@dataclass
class SliceGeom:
    """One image plane. Pixel (r, c) sits at ``origin + c*dc*row_dir + r*dr*col_dir``."""

    origin: np.ndarray  # (3,) LPS mm, centre of pixel (0, 0)
    row_dir: np.ndarray  # (3,) direction of increasing column index
    col_dir: np.ndarray  # (3,) direction of increasing row index
    rows: int
    cols: int
    dr: float  # row spacing (between rows), mm
    dc: float  # column spacing, mm
    thickness: float
    level: str | None = None  # disc level an axial slice was planned on

    @property
    def normal(self) -> np.ndarray:
        (a0, a1, a2), (b0, b1, b2) = self.row_dir.tolist(), self.col_dir.tolist()
        return np.array([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0])  # row x col

    @property
    def center(self) -> np.ndarray:
        return self.origin + (self.cols - 1) / 2 * self.dc * self.row_dir + (self.rows - 1) / 2 * self.dr * self.col_dir

    def pixel_points(self) -> np.ndarray:
        """Patient coordinates of every pixel centre: (rows, cols, 3)."""
        r = np.arange(self.rows)[:, None, None] * self.dr * self.col_dir
        c = np.arange(self.cols)[None, :, None] * self.dc * self.row_dir
        return self.origin + r + c

    def to_pixel(self, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, col, distance from plane) of patient points p (..., 3)."""
        d = p - self.origin
        return d @ self.col_dir / self.dr, d @ self.row_dir / self.dc, d @ self.normal


@dataclass
class Stack:
    """The planned slices of one series."""

    plane: str
    slices: list[SliceGeom] = field(default_factory=list)


def plan_sagittal(grid: Grid, fov: float, matrix: int, n: int, thickness: float, gap: float, x0: float) -> Stack:
    """n parallel sagittal slices stepping from patient right to left around x0."""
    spacing = thickness + gap
    d = fov / matrix
    yc = grid.origin[2] + (grid.shape[2] - 1) * grid.voxel / 2
    zc = grid.origin[1] + (grid.shape[1] - 1) * grid.voxel / 2
    st = Stack("sagittal")
    for k in range(n):
        x = x0 + (k - (n - 1) / 2) * spacing
        origin = np.array([x, yc - fov / 2 + d / 2, zc + fov / 2 - d / 2])
        st.slices.append(
            SliceGeom(origin, np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0]), matrix, matrix, d, d, thickness)
        )
    return st


def plan_axial(
    centers: list[tuple[str, np.ndarray, np.ndarray]],
    fov: float,
    matrix: int,
    per_level: int,
    thickness: float,
    gap: float,
) -> Stack:
    """``per_level`` slices parallel to each disc. centers: (level, point, disc normal)."""
    d = fov / matrix
    st = Stack("axial")
    for level, p, n in centers:
        n = n / np.linalg.norm(n)
        col = np.array([0.0, n[2], -n[1]])  # in the sagittal plane, points posterior
        row = np.array([1.0, 0.0, 0.0])
        for k in range(per_level):
            c = p + (k - (per_level - 1) / 2) * (thickness + gap) * n
            origin = c - (matrix - 1) / 2 * d * (row + col)
            st.slices.append(SliceGeom(origin, row, col, matrix, matrix, d, d, thickness, level))
    return st


def _lin(coords: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two-tap linear interpolation: indices (i0, i1) and weights (w0, w1), zero outside."""
    i0 = np.floor(coords).astype(np.int64)
    f = (coords - i0).astype(np.float32)
    w0 = np.where((i0 >= 0) & (i0 < n_in), 1 - f, 0).astype(np.float32)
    w1 = np.where((i0 + 1 >= 0) & (i0 + 1 < n_in), f, 0).astype(np.float32)
    return np.clip(i0, 0, n_in - 1), np.clip(i0 + 1, 0, n_in - 1), w0, w1


def resample_rows(a: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Linear interpolation of a along axis 0 at continuous indices coords."""
    i0, i1, w0, w1 = _lin(coords, a.shape[0])
    shape = (-1,) + (1,) * (a.ndim - 1)
    return a[i0] * w0.reshape(shape) + a[i1] * w1.reshape(shape)


def resample_cols(a: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Linear interpolation of a 2-D array along axis 1 at continuous indices coords."""
    i0, i1, w0, w1 = _lin(coords, a.shape[1])
    return a[:, i0] * w0 + a[:, i1] * w1


class VolumeSampler:
    """Samples a voxel-wise quantity on slices.

    ``plane_fn(ix) -> (nz, ny)`` gives the quantity on volume plane ix;
    ``gather_fn(iz, iy) -> (nx, len(iz))`` gives it on the x-lines through integer
    (iz, iy) nodes. Both return float32. Values outside the grid are 0.
    """

    def __init__(
        self,
        grid: Grid,
        plane_fn: Callable[[int], np.ndarray],
        gather_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ) -> None:
        self.grid = grid
        self.plane_fn = plane_fn
        self.gather_fn = gather_fn

    def slice(self, g: SliceGeom, window: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """Thickness-weighted samples on slice g: (rows, cols) float32.

        ``window=(r0, r1, c0, c1)`` samples only those rows and columns; the values are
        identical to the same pixels of the full slice.
        """
        rs, cs = (slice(0, g.rows), slice(0, g.cols)) if window is None else (slice(*window[:2]), slice(*window[2:]))
        if abs(g.row_dir[0]) < 1e-6 and abs(g.col_dir[0]) < 1e-6:
            return self._sagittal(g, rs, cs)
        return self._rowwise(g, rs, cs)

    def _sagittal(self, g: SliceGeom, rs: builtins.slice, cs: builtins.slice) -> np.ndarray:
        grid = self.grid
        nx, nz, ny = grid.shape
        weights: dict[int, float] = {}
        for off, w in _PROFILE:
            fx = float(grid.to_index(g.origin[0] + off * g.thickness * g.normal[0], 0))
            i0 = int(np.floor(fx))
            f = fx - i0
            for i, wt in ((i0, 1 - f), (i0 + 1, f)):
                if 0 <= i < nx and wt > 0:
                    weights[i] = weights.get(i, 0.0) + w * wt
        plane = np.zeros((nz, ny), np.float32)
        for i, wt in weights.items():
            plane += np.float32(wt) * self.plane_fn(i)
        pts_r = g.origin[None, :] + np.arange(g.rows)[:, None] * g.dr * g.col_dir
        pts_c = g.origin[None, :] + np.arange(g.cols)[:, None] * g.dc * g.row_dir
        tmp = resample_rows(plane, grid.to_index(pts_r[rs, 2], 1))  # (rows, ny)
        return resample_cols(tmp, grid.to_index(pts_c[cs, 1], 2))  # (rows, cols)

    def _rowwise(self, g: SliceGeom, rs: builtins.slice, cs: builtins.slice) -> np.ndarray:
        grid = self.grid
        nx, nz, ny = grid.shape
        base = (g.origin[None, :] + np.arange(g.rows)[:, None] * g.dr * g.col_dir)[rs]  # (rows, 3)
        acc = np.zeros((nx, len(base)), np.float32)
        for off, w in _PROFILE:
            p = base + off * g.thickness * g.normal
            fz = grid.to_index(p[:, 2], 1)
            fy = grid.to_index(p[:, 1], 2)
            z0 = np.floor(fz).astype(int)
            y0 = np.floor(fy).astype(int)
            az = (fz - z0).astype(np.float32)
            ay = (fy - y0).astype(np.float32)
            for dz, wz in ((0, 1 - az), (1, az)):
                for dy, wy in ((0, 1 - ay), (1, ay)):
                    iz, iy = z0 + dz, y0 + dy
                    ok = (iz >= 0) & (iz < nz) & (iy >= 0) & (iy < ny)
                    vals = np.zeros((nx, len(base)), np.float32)
                    if ok.any():
                        vals[:, ok] = self.gather_fn(iz[ok], iy[ok])
                    acc += np.float32(w) * (wz * wy)[None, :] * vals
        # along the row direction (patient x): one interpolation matrix
        xs = (g.origin[0] + np.arange(g.cols) * g.dc * g.row_dir[0])[cs]
        return resample_rows(acc, grid.to_index(xs, 0)).T  # (rows, cols)


class Texture:
    """Smooth random field (unit std) on the grid, evaluated lazily on planes and lines.

    Stored at 1/4 resolution and interpolated, so it costs nothing to keep and gives
    identical texture to every sequence of the study.
    """

    def __init__(self, grid: Grid, rng: np.random.Generator, factor: int = 4) -> None:
        shp = tuple(s // factor + 2 for s in grid.shape)
        lr = gaussian_filter(rng.standard_normal(shp).astype(np.float32), 0.8)
        self.lr = lr / (lr.std() + 1e-6)
        self.f = factor
        nx, nz, ny = grid.shape
        # two-tap linear interpolation from the coarse grid to every fine index, per axis
        self.ix = _lin(np.arange(nx) / factor, shp[0])
        self.iz = _lin(np.arange(nz) / factor, shp[1])
        self.iy = _lin(np.arange(ny) / factor, shp[2])
        self._cache: dict[int, np.ndarray] = {}

    def plane(self, ix: int) -> np.ndarray:
        hit = self._cache.get(ix)
        if hit is None:
            i0, i1, w0, w1 = (t[ix] for t in self.ix)
            lrp = self.lr[i0] * w0 + self.lr[i1] * w1  # (nzl, nyl)
            z0, z1, wz0, wz1 = self.iz
            lrp = lrp[z0] * wz0[:, None] + lrp[z1] * wz1[:, None]  # (nz, nyl)
            y0, y1, wy0, wy1 = self.iy
            hit = self._cache[ix] = lrp[:, y0] * wy0 + lrp[:, y1] * wy1  # (nz, ny)
        return hit

    def gather(self, iz: np.ndarray, iy: np.ndarray) -> np.ndarray:
        fz = iz / self.f
        fy = iy / self.f
        z0 = np.floor(fz).astype(int)
        y0 = np.floor(fy).astype(int)
        az = (fz - z0).astype(np.float32)
        ay = (fy - y0).astype(np.float32)
        lr = self.lr
        v = (
            lr[:, z0, y0] * ((1 - az) * (1 - ay))
            + lr[:, z0 + 1, y0] * (az * (1 - ay))
            + lr[:, z0, y0 + 1] * ((1 - az) * ay)
            + lr[:, z0 + 1, y0 + 1] * (az * ay)
        )  # (nxl, R)
        x0, x1, wx0, wx1 = self.ix
        return v[x0] * wx0[:, None] + v[x1] * wx1[:, None]  # (nx, R)


def tissue_sampler(labels: np.ndarray, grid: Grid, lut: np.ndarray, tex_amp: np.ndarray, tex: Texture) -> VolumeSampler:
    """Sampler of the signal lut[label] * (1 + tex_amp[label] * texture)."""

    def plane(ix: int) -> np.ndarray:
        lab = labels[ix]
        return lut[lab] * (1.0 + tex_amp[lab] * tex.plane(ix))

    def gather(iz: np.ndarray, iy: np.ndarray) -> np.ndarray:
        lab = labels[:, iz, iy]
        return lut[lab] * (1.0 + tex_amp[lab] * tex.gather(iz, iy))

    return VolumeSampler(grid, plane, gather)


def mask_sampler(grid: Grid, sl: tuple[slice, slice, slice], m: np.ndarray) -> VolumeSampler:
    """Sampler of a boolean sub-box (a finding's voxels) embedded in the grid."""
    nx, nz, ny = grid.shape
    mf = m.astype(np.float32)

    def plane(ix: int) -> np.ndarray:
        out = np.zeros((nz, ny), np.float32)
        if sl[0].start <= ix < sl[0].stop:
            out[sl[1], sl[2]] = mf[ix - sl[0].start]
        return out

    def gather(iz: np.ndarray, iy: np.ndarray) -> np.ndarray:
        out = np.zeros((nx, len(iz)), np.float32)
        ok = (iz >= sl[1].start) & (iz < sl[1].stop) & (iy >= sl[2].start) & (iy < sl[2].stop)
        if ok.any():
            out[sl[0], ok] = mf[:, iz[ok] - sl[1].start, iy[ok] - sl[2].start]
        return out

    return VolumeSampler(grid, plane, gather)


@dataclass(frozen=True)
class Degradation:
    """Scanner imperfections applied after sampling (vendor-specific values)."""

    noise: float  # Rician sigma relative to the series' reference signal
    bias_len: float  # coil sensitivity decay length from the posterior coil, mm
    bias_poly: float  # amplitude of the random smooth in-plane bias
    acq_frac: float  # acquisition matrix / reconstruction matrix


def degrade(
    img: np.ndarray, g: SliceGeom, deg: Degradation, coil_y: float, ref: float, rng: np.random.Generator
) -> np.ndarray:
    """Bias field (posterior spine coil) and Rician noise at the acquisition matrix."""
    r = np.arange(g.rows, dtype=np.float32)[:, None] * np.float32(g.dr)
    c = np.arange(g.cols, dtype=np.float32)[None, :] * np.float32(g.dc)

    def coord(k: int) -> np.ndarray:  # patient coordinate k of every pixel, broadcastable
        a = np.float32(g.origin[k]) + r * np.float32(g.col_dir[k])  # (rows, 1)
        # planes here are sagittal or axial: each coordinate varies along rows or columns
        # only, so the bias terms stay 1-D until they are combined
        return a if g.row_dir[k] == 0 else a + c * np.float32(g.row_dir[k])

    depth = np.clip(np.float32(coil_y) - coord(1), 0, None)
    bias = 0.25 + 0.75 * np.exp(-depth / np.float32(deg.bias_len))
    cen = g.center
    zc = (coord(2) - np.float32(cen[2])) / np.float32(150.0)
    xc = (coord(0) - np.float32(cen[0])) / np.float32(150.0)
    cf = rng.normal(0, deg.bias_poly, 3).astype(np.float32)
    bias = bias * (1 + cf[0] * zc + cf[1] * zc**2 + cf[2] * xc)
    bias = np.broadcast_to(bias, (g.rows, g.cols)) / np.float32(0.25 + 0.75 * np.exp(-60.0 / deg.bias_len))
    ar = max(8, round(g.rows * deg.acq_frac))
    ac = max(8, round(g.cols * deg.acq_frac))
    n = rng.standard_normal((2, ar, ac), dtype=np.float32)
    rr = np.linspace(0, ar - 1, g.rows)
    cc = np.linspace(0, ac - 1, g.cols)
    nr = resample_cols(resample_rows(n[0], rr), cc)
    ni = resample_cols(resample_rows(n[1], rr), cc)
    # interpolation lowers the noise std; restore it so sigma means what it says
    k = np.float32(deg.noise * ref / (float(nr.std()) + 1e-9))
    # |s + k (nr + i ni)|, in place
    nr *= k
    nr += img * bias
    np.square(nr, out=nr)
    ni *= k
    np.square(ni, out=ni)
    nr += ni
    return np.sqrt(nr, out=nr)
